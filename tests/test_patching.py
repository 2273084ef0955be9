"""Activation patching on real tiny.en decoding of the bundled LibriVox clip ("and mister john dashwood ...",
"john" spoken at 0.63-0.98 s in the dev manifest's word spans)."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from leafx_widgets import patching

import inside_checks

JOHN_S = (0.63, 0.98)


@pytest.fixture(scope="module")
def john(sample_explanation):
    return next(t.index for t in sample_explanation.tokens if t.text == " John")


def test_nothing_restored_is_corrupted_and_the_encoder_restored_is_clean(model, sample_explanation, john):
    ex, w = sample_explanation, sample_explanation.windows[0]
    assert patching.DEFAULT_SNR_DB == -10.0
    inside_checks.check_restoring_nothing_or_everything(model, ex, john)  # "noise" at -10 dB and "silence"
    at = w.position(john)
    other = ex.audio[::-1].copy()  # another recording of the same length
    assert abs(ex.patch(john, other) - inside_checks.corrupted_logprobs(model, w, other)[at]) < 1e-4
    clean = inside_checks.own_logprobs(model, w)[at]
    assert abs(ex.patch(john, other, restore=("encoder",)) - clean) < 1e-4
    # the residual of every decoder layer restored: clean too (the last one alone already is)
    assert abs(ex.patch(john, other, restore=tuple(f"dec.{l}" for l in range(model.n_layers))) - clean) < 1e-4
    assert ex.patch(john, "silence") < clean - 1.0  # the corruption matters


def test_all_heads_of_a_layer_are_the_layers_cross_attention(model, sample_explanation, john):
    ex = sample_explanation
    inside_checks.check_heads_make_the_cross_site(model, ex, john)
    one = ex.patch(john, "silence", restore=("dec.3.cross.0",))
    assert abs(one - ex.patch(john, "silence", restore=("dec.3.cross",))) > 1e-3  # one head is not the block


def test_patching_over_time_finds_the_word(sample_explanation, john):
    ex = sample_explanation
    result = ex.patching(john, "silence", over="time", n_spans=30)
    assert result.over == "time" and len(result.sites) == len(result.effect) == 30
    assert result.start_s[0] == 0.0 and np.allclose(result.start_s[1:], result.end_s[:-1])
    assert result.end_s[-1] == pytest.approx(ex.tokens[john].n_frames * ex.frame_s)
    best = int(np.nanargmax(result.effect))
    assert result.start_s[best] < JOHN_S[1] and result.end_s[best] > JOHN_S[0], result.sites[best]
    restored = ex.patch(john, "silence", restore=(("time", result.start_s[best], result.end_s[best]),))
    assert restored == pytest.approx(result.logprob[best])
    assert np.allclose(result.effect, (result.logprob - result.corrupt_logprob)
                       / (result.clean_logprob - result.corrupt_logprob))
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert {"effect", "sites", "start_s", "end_s", "clean_logprob", "corrupt_logprob"} <= set(doc)


def test_patching_over_layers_and_heads(model, sample_explanation, john):
    ex = sample_explanation
    inside_checks.check_over_layers(model, ex, john)
    heads = ex.patching(john, "silence", over="heads")
    assert len(heads.sites) == model.n_layers * model.n_heads and heads.start_s is None


def test_encoder_layer_sites_rerun_the_layers_above(model, sample_explanation, john):
    ex = sample_explanation
    clean = ex.patch(john, "silence", restore=("encoder",))
    assert ex.patch(john, "silence", restore=("enc.1",)) == pytest.approx(clean, abs=1e-4)  # all above is clean again
    part = ex.patch(john, "silence", restore=(("enc.1", *JOHN_S),))
    assert ex.patch(john, "silence") < part < clean


def test_time_spans_are_seconds_of_the_recording(sample_explanation):
    w = dataclasses.replace(sample_explanation.windows[0], offset_frames=1500)  # as if it were a second window
    spans = patching.spans(w, 4)
    assert spans[0][0] == pytest.approx(30.0) and spans[-1][1] == pytest.approx(30.0 + w.n_valid * 0.02)
    assert patching.parse_site(("time", 30.5, 31.0), w).frames == (25, 50)
    with pytest.raises(ValueError, match="outside the token's window"):
        patching.parse_site(("time", 0.5, 1.0), w)


@pytest.mark.parametrize("kwargs, error", [
    ({"restore": ("dec.9",)}, r"decoder layer 9 does not exist \(the model has 4"),
    ({"restore": ("attention",)}, "unknown site 'attention'"),
    ({"restore": ("dec.1.cross.6",)}, "head 6 does not exist"),
    ({"restore": (("time", 2.0, 1.0),)}, "t0 < t1"),
    ({"corrupt": "static"}, "corrupt must be 'noise', 'silence' or a recording"),
    ({"corrupt": np.zeros(100, np.float32)}, "as long as the clean one"),
])
def test_bad_input_is_one_sentence(sample_explanation, kwargs, error):
    with pytest.raises(ValueError, match=error) as info:
        sample_explanation.patch(0, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_over_and_token(sample_explanation):
    with pytest.raises(ValueError, match="over must be one of"):
        sample_explanation.patching(0, "silence", over="frames")
    with pytest.raises(IndexError, match="out of range"):
        sample_explanation.patching(10_000, "silence")


def test_patching_figure(sample_explanation, john):
    from bokeh.models import Plot

    from leafx_widgets import figures

    ex = sample_explanation
    fig = figures.patching_figure(ex, ex.patching(john, "silence", over="time"), spans=[("john", *JOHN_S)])
    assert isinstance(fig, Plot) and fig.x_range.end == pytest.approx(ex.tokens[john].n_frames * ex.frame_s)
    with pytest.raises(ValueError, match="over time"):
        figures.patching_figure(ex, ex.patching(john, "silence", over="layers"))
