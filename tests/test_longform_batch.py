"""explain_many: recordings decoded in lockstep, batched, give exactly what explain gives each alone."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

import leafx_widgets as lw

RATE = 16000


@pytest.fixture(scope="module")
def sources(librivox_paths, long_audio):
    """Two short clips (one window) and two longer stretches of speech (two windows each, seeking)."""
    short = [soundfile.read(p, dtype="float32")[0] for p in librivox_paths[:2]]
    return [short[0], short[1], long_audio[: 36 * RATE], long_audio[5 * RATE: 40 * RATE]]


@pytest.fixture(scope="module")
def alone(model, sources):
    return [lw.explain(model, s, sample_rate=RATE, progress=False) for s in sources]


def _spy_batches(monkeypatch, model) -> list[int]:
    """Rows of every decode_batch call."""
    sizes, real = [], type(model).decode_batch

    def spy(self, encoded, prompts, **kw):
        sizes.append(len(prompts))
        return real(self, encoded, prompts, **kw)

    monkeypatch.setattr(type(model), "decode_batch", spy)
    return sizes


def _same(alone, batched):
    assert [(w.offset_frames, w.prompt, w.ids) for w in alone.windows] == \
        [(w.offset_frames, w.prompt, w.ids) for w in batched.windows]
    assert batched.text == alone.text and [s.text for s in batched.segments] == [s.text for s in alone.segments]
    for tok in alone.tokens:  # the precomputed maps come from the batch's encoder output
        np.testing.assert_allclose(batched.map(tok.index), alone.map(tok.index), atol=1e-5)
    assert all(w.adapter is alone.model for w in batched.windows)


@pytest.mark.parametrize("batch_size", [2, 3])
def test_batched_tokens_equal_one_file_at_a_time(model, sources, alone, batch_size, monkeypatch):
    sizes = _spy_batches(monkeypatch, model)
    batched = lw.explain_many(model, sources, sample_rate=RATE, batch_size=batch_size)
    assert max(sizes) > 1  # something was really decoded as a batch (the short clips' equal prompts)
    assert len(batched) == len(sources)
    for a, b in zip(alone, batched):
        _same(a, b)


def test_without_conditioning_every_window_batches(model, sources, long_audio, monkeypatch):
    # the third opens its second window on 4 s of digital silence: that window starts where the sound does
    gap = np.concatenate([long_audio[:25 * RATE], np.zeros(4 * RATE, np.float32), long_audio[30 * RATE: 45 * RATE]])
    recordings = [*sources[2:], gap]
    alone = [lw.explain(model, s, sample_rate=RATE, progress=False, condition_on_previous_text=False)
             for s in recordings]
    assert any(w.offset_frames * 320 > 26 * RATE for w in alone[2].windows)  # the lead was skipped
    sizes = _spy_batches(monkeypatch, model)
    batched = lw.explain_many(model, recordings, sample_rate=RATE, batch_size=3, condition_on_previous_text=False)
    # every decoded window went through a batch, the first round with all three recordings
    assert sizes[0] == 3 and sum(sizes) == sum(w.decoded for ex in alone for w in ex.windows)
    for a, b in zip(alone, batched):
        _same(a, b)


def test_decode_batch_with_previous_text_equals_decode(model, long_audio):
    """Conditioned rows (prompts of one length, different text) that end at different steps."""
    import torch

    chunks = [long_audio[:6 * RATE], long_audio[20 * RATE: 32 * RATE]]
    with torch.no_grad():
        encoded = model.encode(torch.cat([model.features(c) for c in chunks]))
    texts = [" It was a bright cold day in April, and the clocks were striking thirteen.",
             " The quick brown fox jumps over the lazy dog again and again."]
    previous = [model.tokenizer.encode(t, add_special_tokens=False).ids[:12] for t in texts]
    assert len(previous[0]) == len(previous[1]) == 12
    one = [model.decode(encoded[i:i + 1], previous=previous[i], timestamps=True) for i in range(2)]
    prompts = [model.prompt(encoded[i:i + 1], previous[i], True) for i in range(2)]
    both = model.decode_batch(encoded, prompts, timestamps=True)
    assert [d.ids for d in both] == [d.ids for d in one] and len(one[0].ids) != len(one[1].ids)
    assert [d.prompt for d in both] == [d.prompt for d in one] and prompts[0] != prompts[1]
    np.testing.assert_allclose([d.no_speech_prob for d in both], [d.no_speech_prob for d in one], atol=1e-6)
    for a, b in zip(both, one):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_decode_batch_refuses_prompts_of_different_lengths(model, long_audio):
    import torch

    with torch.no_grad():
        encoded = model.encode(torch.cat([model.features(long_audio[:RATE])] * 2))
    with pytest.raises(ValueError, match="all of one length"):
        model.decode_batch(encoded, [[model.sot], [model.sot, model.no_timestamps]])


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, None])
def test_batch_size_must_be_a_whole_number(model, bad):
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        lw.explain_many(model, [lw.sample_path()], batch_size=bad)


def test_a_missing_file_is_named_before_any_decoding(model, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(type(model), "encode", lambda self, f: calls.append(1))
    missing = tmp_path / "nowhere.wav"
    with pytest.raises(FileNotFoundError, match=r"sources\[1\]: audio file not found: .*nowhere\.wav"):
        lw.explain_many(model, [lw.sample_path(), missing, lw.sample_path()])
    assert calls == []


def test_one_path_instead_of_a_list_is_refused(model):
    with pytest.raises(TypeError, match="a list of paths or arrays"):
        lw.explain_many(model, str(lw.sample_path()))


def test_no_sources_no_explanations(model):
    assert lw.explain_many(model, []) == []
