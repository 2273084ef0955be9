"""Forced transcripts: explain(model, audio, text=...) teacher-forces a given transcript."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import leafx_widgets as lw


def _forward_logprobs(model, features, prompt, ids):
    """log p of each id straight from transformers' WhisperForConditionalGeneration forward."""
    with torch.no_grad():
        logits = model.model(input_features=features, decoder_input_ids=torch.tensor([prompt + ids])).logits
    logp = torch.log_softmax(logits[0].float(), -1)
    return np.array([float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(ids)])


def test_forcing_the_decoded_text_gives_its_tokens_and_the_models_logprobs(model, sample_explanation):
    ex = sample_explanation
    fx = lw.explain(model, lw.sample_path(), text=ex.text)
    assert [t.id for t in fx.tokens] == [t.id for t in ex.tokens] and fx.text == ex.text
    window = fx.windows[0]
    expected = _forward_logprobs(model, window.features, window.prompt, window.ids)
    np.testing.assert_allclose([t.logprob for t in fx.tokens], expected, atol=1e-4)
    maps = fx.maps()
    assert maps.shape == (len(fx.tokens), fx.n_frames) and np.allclose(maps.sum(1), 1, atol=1e-4)
    assert fx.windows[0].prompt == ex.windows[0].prompt  # the same prompt as decoding


def test_an_alternative_hypothesis_is_scored_and_explained(model):
    text = "And Mrs. John Dashwood had then pleasure to consider how much there might be prudently in his power."
    fx = lw.explain(model, lw.sample_path(), text=text)
    assert fx.text == text
    by_text = {t.text: t.logprob for t in fx.tokens}
    assert by_text[" Mrs"] < -3 and by_text[" pleasure"] < -3 and by_text[" John"] > -0.5
    dashwood = next(w for w in fx.words if w.text == "Dashwood")
    assert 0.96 <= dashwood.peak_s <= 1.60  # forced-alignment span of "Dashwood" (see test_explanation)
    widget = lw.LeafXWidget(fx, background=False)
    assert widget.get_map(3).shape == (fx.tokens[3].n_frames,)


def test_forced_transcript_errors(model, long_audio):
    with pytest.raises(ValueError, match="text must be a non-empty string"):
        lw.explain(model, lw.sample_path(), text="  ")
    with pytest.raises(ValueError, match="needs audio of at most one window .*81.7 s"):
        lw.explain(model, long_audio, sample_rate=16000, text="hello")
    with pytest.raises(ValueError, match="the forced transcript has .* tokens; tiny.en reads at most"):
        lw.explain(model, lw.sample_path(), text="word " * 500)
