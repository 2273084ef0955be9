"""Whisper base (multilingual, from PyPI): language detection, forcing a language, translation.

Speech is espeak-ng's German, Spanish and French voices, synthesised word by word so that every
source word's span is exact (``bench.manifests.synthesise_sentence``)."""
from __future__ import annotations

import numpy as np
import pytest

import leafx_widgets as lw
from leafx_widgets.bench.manifests import synthesise_sentence

SENTENCES = {
    "de": "guten morgen wie geht es ihnen heute ich möchte gerne einen kaffee und ein stück kuchen bestellen",
    "es": "buenos días cómo está usted hoy quisiera un café con leche y una tostada por favor",
    "fr": "bonjour comment allez vous aujourd'hui je voudrais un café et un croissant s'il vous plaît",
}
# an English word of the translation -> the source word it translates
TRANSLATED = {"de": {"coffee": "kaffee", "cake": "kuchen", "morning": "morgen"},
              "es": {"coffee": "café", "milk": "leche", "toast": "tostada"},
              "fr": {"coffee": "café"}}
TOLERANCE_S = 0.1  # a peak this close to the source word's span counts as inside (one pause)


@pytest.fixture(scope="module")
def base():
    return lw.load_model("base")


@pytest.fixture(scope="module")
def speech():
    return {lang: synthesise_sentence(text, lang, 130, pause_s=(0.02, 0.06)) for lang, text in SENTENCES.items()}


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_language_is_detected(base, speech, lang):
    audio, _ = speech[lang]
    ex = lw.explain(base, audio, sample_rate=16000, precompute=())
    probs = ex.language_probs
    assert ex.language == lang and next(iter(probs)) == lang
    assert abs(sum(probs.values()) - 1) < 1e-4 and list(probs.values()) == sorted(probs.values(), reverse=True)
    assert ex.windows[0].prompt[1] == base.language_ids[lang]  # <|sot|> <|de|> <|transcribe|> <|notimestamps|>
    assert ex.windows[0].prompt[2] == base.transcribe


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_translation_maps_rest_on_the_source_word(base, speech, lang):
    audio, words = speech[lang]
    ex = lw.explain(base, audio, sample_rate=16000, task="translate")
    assert ex.task == "translate" and ex.windows[0].prompt[2] == base.translate
    assert ex.text.isascii() and "coffee" in ex.text.lower()
    spans = {w["word"]: (w["start"], w["end"]) for w in words}
    found = 0
    for word in ex.words:
        english = word.text.lower().strip(".,!?")
        if english in TRANSLATED[lang]:
            start, end = spans[TRANSLATED[lang][english]]
            assert start - TOLERANCE_S <= word.peak_s <= end + TOLERANCE_S, (english, word.peak_s, (start, end))
            found += 1
    assert found >= 1
    maps = ex.maps()
    assert maps.shape == (len(ex.tokens), ex.n_frames) and np.allclose(maps.sum(1), 1, atol=1e-4)


def test_a_language_can_be_forced(base, speech):
    audio, _ = speech["de"]
    ex = lw.explain(base, audio, sample_rate=16000, language="es", precompute=())
    assert ex.language == "es" and ex.language_probs is None
    assert ex.windows[0].prompt[1] == base.language_ids["es"]
    pinned = lw.load_model("base", language="de")
    assert lw.explain(pinned, audio, sample_rate=16000, precompute=()).language == "de"


def test_language_errors(base, model):
    with pytest.raises(ValueError, match="unknown language 'xx' for base; known: .*de"):
        lw.explain(base, lw.sample_path(), language="xx")
    with pytest.raises(ValueError, match="task must be 'transcribe' or 'translate'"):
        lw.explain(base, lw.sample_path(), task="summarise")
    with pytest.raises(ValueError, match="tiny.en is English-only and cannot translate"):
        lw.explain(model, lw.sample_path(), task="translate")
    with pytest.raises(ValueError, match="tiny.en is English-only and cannot transcribe 'de'"):
        lw.explain(model, lw.sample_path(), language="de")
    assert lw.explain(model, lw.sample_path(), precompute=()).language == "en"


def test_base_is_assembled_once_into_the_cache(tmp_path, monkeypatch):
    from leafx_widgets.models import whisper_base

    monkeypatch.setenv("LEAFX_WIDGETS_CACHE", str(tmp_path))
    folder = whisper_base.get_model_path()
    part1, part2 = whisper_base._part_files()
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size == part1.stat().st_size + part2.stat().st_size
    with open(model_bin, "rb") as joined, open(part2, "rb") as second:
        joined.seek(part1.stat().st_size)
        assert joined.read(1 << 16) == second.read(1 << 16)
    stamp = model_bin.stat().st_mtime_ns
    assert whisper_base.get_model_path() == folder and model_bin.stat().st_mtime_ns == stamp  # not rebuilt
    model_bin.write_bytes(b"half")  # a broken copy is rebuilt
    assert whisper_base.get_model_path().joinpath("model.bin").stat().st_size > 1 << 20


def test_a_missing_extra_is_named(monkeypatch):
    from leafx_widgets import models

    monkeypatch.setitem(models.BUNDLED, "base", ("not_installed_module_xyz", "base"))
    with pytest.raises(ValueError, match=r"model 'base' is not installed .*pip install \"leafx-widgets\[base\]\""):
        lw.load_model("base")
