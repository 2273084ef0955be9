"""Held-out LEAF-XBench test manifests (bench.manifests): cards (real speech) and espeak_test."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import soundfile as sf

from leafx_widgets.bench.manifests import (CARDS_DIR, ESPEAK_SENTENCES, ESPEAK_SETTINGS, ESPEAK_TEST_SEED,
                                           ESPEAK_TEST_SENTENCES, ESPEAK_TEST_SETTINGS, GOFORWARD_RAW,
                                           build_cards, build_espeak_test, load_manifest)


def assert_spans_valid(clip):
    """One span per reference word, in order, not overlapping, inside the audio."""
    duration = sf.info(clip.path).duration
    assert [w["word"] for w in clip.words] == clip.text.split(), clip.id
    for w in clip.words:
        assert 0.0 <= w["start"] < w["end"] <= duration + 1e-6, (clip.id, w, duration)
    for a, b in zip(clip.words, clip.words[1:]):
        assert a["end"] <= b["start"] + 1e-6, (clip.id, a, b)


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    if not CARDS_DIR.is_dir() or not GOFORWARD_RAW.exists():
        pytest.fail("Debian package pocketsphinx-testdata is not installed (see .ci/run)")
    return load_manifest(build_cards(tmp_path_factory.mktemp("cards")))


def test_cards_clips_and_spans(cards):
    assert [c.id for c in cards] == ["cards-001", "cards-002", "cards-003", "cards-004", "cards-005", "goforward"]
    assert cards[0].text == "ten of clubs" and cards[-1].text == "go forward ten meters"
    assert sum(len(c.words) for c in cards) == 25
    for clip in cards:
        assert_spans_valid(clip)
        assert all(w["end"] - w["start"] >= 0.05 for w in clip.words), clip.id  # no collapsed word


def test_goforward_wav_is_the_raw_pcm(cards):
    clip = cards[-1]
    wav, sr = sf.read(clip.path, dtype="int16")
    raw = np.fromfile(GOFORWARD_RAW, dtype="<i2")
    assert sr == 16000 and np.array_equal(wav, raw)
    # pocketsphinx puts "go" after the leading silence, not at 0 s
    assert clip.words[0]["start"] > 0.2


def test_cards_leaves_out_a_clip_that_does_not_align(tmp_path, capsys):
    folder = tmp_path / "cards"
    folder.mkdir()
    for file_id in ("001", "002"):
        (folder / f"{file_id}.wav").symlink_to(CARDS_DIR / f"{file_id}.wav")
    # 002 is 2 s of "four queen of clubs": fourteen words cannot be aligned to it
    (folder / "cards.transcription").write_text(
        "<s> ten of clubs  </s> (001)\n"
        "<s> the quick brown fox jumps over the lazy dog near the river bank please call  </s> (002)\n")
    clips = load_manifest(build_cards(tmp_path / "out", folder=folder, goforward=None))
    assert [c.id for c in clips] == ["cards-001"]
    assert "cards-002" in capsys.readouterr().err


def test_espeak_test_is_disjoint_from_dev():
    assert not set(ESPEAK_TEST_SENTENCES) & set(ESPEAK_SENTENCES)
    assert not set(ESPEAK_TEST_SETTINGS) & set(ESPEAK_SETTINGS)
    assert not {v for v, _, _ in ESPEAK_TEST_SETTINGS} & {v for v, _, _ in ESPEAK_SETTINGS}
    # dev clip i uses seeds i (pauses) and i + 1 (noise)
    dev_seeds = set(range(len(ESPEAK_SENTENCES) + 1))
    test_seeds = set(range(ESPEAK_TEST_SEED, ESPEAK_TEST_SEED + len(ESPEAK_TEST_SENTENCES) + 1))
    assert not dev_seeds & test_seeds
    assert 4 <= len(ESPEAK_TEST_SENTENCES) == len(ESPEAK_TEST_SETTINGS) <= 6
    assert all(10 <= len(s.split()) <= 15 for s in ESPEAK_TEST_SENTENCES)
    assert len(set(ESPEAK_TEST_SENTENCES)) == len(ESPEAK_TEST_SENTENCES)


def test_espeak_test_voices_exist():
    """espeak-ng quietly falls back for an unknown voice variant, so check each name."""
    languages = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    variants = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    language_names = {line.split()[1] for line in languages.splitlines()[1:] if line.split()}
    variant_files = set(re.findall(r"!v/(\S+)", variants))
    for voice, _, _ in ESPEAK_TEST_SETTINGS:
        language, _, variant = voice.partition("+")
        assert language in language_names, voice
        assert not variant or variant in variant_files, voice


def test_espeak_test_builds_and_loads(tmp_path):
    path = build_espeak_test(tmp_path, sentences=ESPEAK_TEST_SENTENCES[2:3], settings=ESPEAK_TEST_SETTINGS[2:3])
    assert path.name == "espeak_test.json"
    (clip,) = load_manifest(path)
    assert clip.id == "espeak-test-00-en-us_f1-155wpm-snr10"
    assert clip.path.parent == (tmp_path / "espeak_test").resolve() and clip.path.exists()
    assert clip.text == ESPEAK_TEST_SENTENCES[2]
    assert_spans_valid(clip)
    audio, sr = sf.read(clip.path, dtype="float32")
    assert sr == 16000
    # 10 dB SNR: the pauses between words hold noise, not digital silence
    a, b = clip.words[0]["end"], clip.words[1]["start"]
    assert np.std(audio[int(a * sr) + 1:int(b * sr) - 1]) > 0.005
    with pytest.raises(ValueError):
        build_espeak_test(tmp_path, sentences=ESPEAK_TEST_SENTENCES[:2], settings=ESPEAK_TEST_SETTINGS[:1])
