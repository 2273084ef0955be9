"""Logit lens and encoder lens on real tiny.en decoding of the bundled LibriVox clip."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from leafx_widgets import lens

import inside_checks


def test_last_layer_is_the_models_own_log_prob(model, sample_explanation):
    inside_checks.check_last_lens_layer_is_the_models_output(model, sample_explanation)


def test_rank_and_top_agree_with_the_log_probs(sample_explanation):
    ex = sample_explanation
    john = next(t.index for t in ex.tokens if t.text == " John")
    lensed = ex.logit_lens(john, k=3)
    # tiny.en is sure of " John" only at its last layer; the lower layers rank it far down
    assert lensed.rank[-1] == 0 and lensed.rank[0] > 100
    assert lensed.top[-1][0][0] == " John" and abs(lensed.top[-1][0][1] - np.exp(lensed.logprob[-1])) < 1e-5
    for layer, rank, lp in zip(lensed.top, lensed.rank, lensed.logprob):
        probs = [p for _, p in layer]
        assert len(layer) == 3 and probs == sorted(probs, reverse=True)
        if rank >= 3:  # the token is not among the alternatives, which all beat it
            assert min(probs) > np.exp(lp)
    doc = json.loads(json.dumps(lensed.to_json(), allow_nan=False))
    assert set(doc) == {"token", "text", "layers", "logprob", "rank", "top"}
    assert doc["top"][-1][0] == [" John", pytest.approx(float(np.exp(lensed.logprob[-1])), abs=1e-5)]


def test_encoder_lens_reads_the_transcript_only_from_the_top(model, sample_explanation):
    ex = sample_explanation
    inside_checks.check_encoder_lens_top_is_the_transcript(model, ex)
    top = ex.encoder_lens(model.n_encoder_layers - 1)
    assert top.text == ex.text and top.to_json()["layer"] == model.n_encoder_layers - 1
    assert ex.encoder_lens(-1).text == top.text
    bottom = ex.encoder_lens(0)
    assert len(bottom.ids) < 5 and "Dashwood" not in bottom.text  # layer 0 decodes nothing of the words
    assert len(top.logprobs) == len(top.tokens) == len(top.ids)


def test_bad_input_is_one_sentence(model, sample_explanation):
    ex = sample_explanation
    with pytest.raises(IndexError, match="out of range"):
        ex.logit_lens(len(ex.tokens))
    with pytest.raises(ValueError, match=r"encoder layer in \[0, 4\)"):
        ex.encoder_lens(4)
    with pytest.raises(ValueError, match="k .* must be a whole number"):
        ex.logit_lens(0, k=0)
    with pytest.raises(IndexError, match="window 3"):
        ex.encoder_lens(0, window=3)


def test_a_model_without_the_capability_says_so(model, sample_explanation):
    class NoInside(type(model)):
        supports = frozenset()

    bare = copy.copy(model)
    bare.__class__ = NoInside
    w = dataclasses.replace(sample_explanation.windows[0], adapter=bare)
    with pytest.raises(ValueError, match="does not support the logit lens"):
        lens.logit_lens(w, w.text_positions[0], 0)
    with pytest.raises(ValueError, match="does not support the encoder lens"):
        lens.encoder_lens(w, 0)


def test_lens_figure(sample_explanation):
    from bokeh.models import Plot

    from leafx_widgets import figures

    fig = figures.lens_figure(sample_explanation.logit_lens(3))
    assert isinstance(fig, Plot) and list(fig.y_range.factors) == ["dec.0", "dec.1", "dec.2", "dec.3"]
