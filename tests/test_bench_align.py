"""Word alignment, WER, TextGrid and manifest reading."""
import json

import pytest

from leafx_widgets.bench.align import align_words, fold, fold_words, wer
from leafx_widgets.bench.manifests import load_manifest, read_librivox_transcription, LIBRIVOX_DIR


def test_fold():
    assert fold("Mr.") == "mister"
    assert fold("Hello,") == "hello"
    assert fold("don't") == "don't"
    assert fold_words("well-known  Café!") == ["well", "known", "cafe"]


def test_alignment_ops_and_wer():
    a = align_words(["a", "b", "x", "d", "e"], ["a", "b", "c", "d"])
    assert [o.op for o in a.ops] == ["match", "match", "sub", "match", "ins"]
    assert a.matches() == {0: 0, 1: 1, 3: 3}
    assert a.wer == pytest.approx(2 / 4)
    assert wer("the cat", "the cat sat") == pytest.approx(1 / 3)
    assert wer("", "one two") == 1.0
    assert align_words([], []).wer == 0.0


def test_textgrid_roundtrip_and_manifest(tmp_path):
    pytest.importorskip("praatio")
    from leafx_widgets.bench.textgrid import read_textgrid_words, write_textgrid_words

    words = [{"word": "hi", "start": 0.1, "end": 0.4}, {"word": "there", "start": 0.5, "end": 0.9}]
    write_textgrid_words(tmp_path / "a.TextGrid", words, 1.0)
    assert read_textgrid_words(tmp_path / "a.TextGrid") == words
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(16000, np.float32), 16000)  # 1 s: the spans must lie inside the clip
    (tmp_path / "m.json").write_text(json.dumps([
        {"id": "a", "file": "a.wav", "text": "hi there", "textgrid": "a.TextGrid"},
        {"id": "b", "file": "a.wav", "text": "hi", "words": None}]))
    clips = load_manifest(tmp_path / "m.json")
    assert clips[0].words == words and clips[1].words is None
    assert clips[0].path == (tmp_path / "a.wav").resolve()


def test_librivox_forced_alignment():
    # Debian pocketsphinx-testdata and the pocketsphinx wheel are installed by .ci/run: missing = failure
    assert LIBRIVOX_DIR.exists(), "needs Debian pocketsphinx-testdata (see .ci/run)"
    import soundfile as sf
    from leafx_widgets.bench.manifests import force_align

    texts = read_librivox_transcription()
    assert len(texts) == 5
    key = "sense_and_sensibility_01_austen_64kb-0880"
    pcm, sr = sf.read(LIBRIVOX_DIR / f"{key}.wav", dtype="int16")
    words = force_align(pcm, texts[key])
    assert [w["word"] for w in words] == texts[key].split()
    assert all(0 <= w["start"] < w["end"] <= len(pcm) / sr for w in words)
    assert words[-1]["word"] == "man" and words[-1]["start"] > 2.0


def test_espeak_exact_spans():
    import shutil
    assert shutil.which("espeak-ng"), "needs Debian espeak-ng (see .ci/run)"
    import numpy as np
    from leafx_widgets.bench.manifests import synthesise_sentence, SAMPLE_RATE

    audio, words = synthesise_sentence("one two", "en-us", 160, seed=0)
    assert [w["word"] for w in words] == ["one", "two"]
    for w in words:  # speech exactly inside the spans, zeros in the pauses
        a, b = round(w["start"] * SAMPLE_RATE), round(w["end"] * SAMPLE_RATE)
        assert abs(audio[a]) > 0 and abs(audio[b - 1]) > 0
    gap = audio[round(words[0]["end"] * SAMPLE_RATE) + 1: round(words[1]["start"] * SAMPLE_RATE) - 1]
    assert gap.size > 0 and np.all(gap == 0)


def test_numerals_are_spelled_out():
    from leafx_widgets.bench.align import number_words, spell_numeral

    assert number_words(0) == ["zero"] and number_words(19) == ["nineteen"]
    assert number_words(40) == ["forty"] and number_words(99) == ["ninety", "nine"]
    assert number_words(305) == ["three", "hundred", "five"]
    assert number_words(1_000_001) == ["one", "million", "one"]
    assert spell_numeral("21st") == ["twenty", "first"] and spell_numeral("12th") == ["twelfth"]
    assert spell_numeral("30th") == ["thirtieth"] and spell_numeral("abc1") == ["abc1"]
    assert fold_words("Go forward 10 meters.") == ["go", "forward", "ten", "meters"]
    assert fold_words("1,000 people") == ["one", "thousand", "people"]
    # Whisper's digits now match a spelled-out reference: WER 0 instead of 1/4
    assert align_words(fold_words("go forward 10 meters"), fold_words("go forward ten meters")).wer == 0


def test_word_pieces_map_a_numeral_to_its_first_token():
    from types import SimpleNamespace as NS

    from leafx_widgets.bench.runner import word_pieces

    ex = NS(tokens=[NS(text=" 25"), NS(text=" cold"), NS(text="-"), NS(text="heart"), NS(text="ed")])
    assert word_pieces(ex, NS(text=" 25", tokens=[0])) == [("twenty", 0), ("five", 0)]
    assert word_pieces(ex, NS(text=" cold-hearted", tokens=[1, 2, 3, 4])) == [("cold", 1), ("hearted", 3)]
