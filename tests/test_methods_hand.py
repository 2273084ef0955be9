"""RAA, attention rollout, SaCo and TA against maps worked out by hand.

A fake model with 2 decoder layers, 2 heads, 3 decoder positions (one prompt token, two
text tokens) and 4 audio frames, whose attention and attention gradients are set here,
is fed through the same method functions the registry runs. The attention rows are
chosen so that a head max, a missing residual or another normalisation gives another map.

Query rows: text token 0 is predicted by position 0, token 1 by position 1.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from leafx_widgets.methods import get_method
from leafx_widgets.models.base import TeacherPass

# cross-attention (layer, head, position, frame); the comments give the head mean of each row
CROSS = torch.tensor([
    [[[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]],          # layer 0, head 0
     [[0, 0, 1, 0], [.5, 0, .5, 0], [0, 0, 0, 1]]],       # head 1. mean: [0,0,1,0] [.75,0,.25,0] [0,0,0,1]
    [[[.5, .5, 0, 0], [0, .5, .5, 0], [0, 0, 0, 1]],      # layer 1, head 0
     [[1, 0, 0, 0], [0, 0, .5, .5], [0, 0, 1, 0]]],       # head 1. mean: [.75,.25,0,0] [0,.25,.5,.25] [0,0,.5,.5]
])
# decoder self-attention (layer, head, query, key), causal
SELF = torch.tensor([
    [[[1, 0, 0], [1, 0, 0], [1, 0, 0]],
     [[1, 0, 0], [0, 1, 0], [0, 0, 1]]],                  # layer 0 mean: [1,0,0] [.5,.5,0] [.5,0,.5]
    [[[1, 0, 0], [0, 1, 0], [0, 1, 0]],
     [[1, 0, 0], [0, 1, 0], [0, 0, 1]]],                  # layer 1 mean: [1,0,0] [0,1,0] [0,.5,.5]
])
# dlog p_t / dA per target token t, constant per (layer, head): (layer, head) -> value
CROSS_GRAD = {0: [[2, -1], [1, 1]],   # token 0: layer 0 only head 0 counts (relu), doubled; layer 1 both
              1: [[1, 1], [0, 2]]}    # token 1: layer 0 both heads; layer 1 only head 1, doubled
SELF_GRAD = {0: [[1, 1], [.5, .5]],
             1: [[1, 0], [0, 0]]}


def _grad(values, shape, row):
    """Gradient tensor (L, H, *shape), zero below query ``row`` (later positions cannot affect the token)."""
    g = torch.tensor(values, dtype=torch.float32)[:, :, None, None].expand(-1, -1, *shape).clone()
    g[:, :, row + 1:] = 0
    return g


class FakeGradients:
    """What ``adapter.token_gradients`` returns: the pass's attention and per-token dA, top layer down."""

    def __init__(self, rows):
        self.rows = rows

    def attention(self, layer):
        return CROSS[layer], SELF[layer]

    def attention_grads(self, targets, lowest=0, self_attention=False):
        n = max(self.rows[t] for t in targets) + 1
        cross = [_grad(CROSS_GRAD[t], CROSS.shape[-2:], self.rows[t]) for t in targets]
        selfs = [_grad(SELF_GRAD[t], SELF.shape[-2:], self.rows[t]) for t in targets]
        for layer in reversed(range(lowest, CROSS.shape[0])):
            yield layer, "cross", torch.stack([g[layer, :, :n] for g in cross], dim=1)  # (H, C, n, S)
            if self_attention:
                yield layer, "self", torch.stack([g[layer, :, :n, :n] for g in selfs], dim=1)  # (H, C, n, n)


class FakeAdapter:
    n_layers, n_heads, n_window_frames = 2, 2, 4

    def teacher_forced(self, encoded, prompt, ids, *, bypass_layer=None, reduce_cross=None, reduce_self=None):
        assert bypass_layer is None
        cross = [reduce_cross(l, a[None]) if reduce_cross else a for l, a in enumerate(CROSS)]
        selfs = [reduce_self(l, a[None]) if reduce_self else a for l, a in enumerate(SELF)]
        return TeacherPass(cross=cross, self_attn=selfs)

    def query_rows(self, prompt, positions):  # next-token decoder: the query before each token
        return [len(prompt) - 1 + p for p in positions]

    def token_gradients(self, encoded, prompt, ids):
        return FakeGradients(rows=self.query_rows(prompt, range(len(ids))))


def _maps(name, n_valid=4):
    window = SimpleNamespace(adapter=FakeAdapter(), encoded=None, prompt=[7], ids=[8, 9], n_valid=n_valid,
                             cache={}, features=None)
    method = get_method(name)
    return method.compute(window, [0, 1], **method.resolve({}))


def test_raa_last_is_the_head_mean_of_the_last_layer():
    # last layer, head means [.75,.25,0,0] and [0,.25,.5,.25]; frame 3 is padding (n_valid 3): dropped, rows renormalised
    np.testing.assert_allclose(_maps("raa_last", n_valid=3), [[3 / 4, 1 / 4, 0], [0, 1 / 3, 2 / 3]], atol=1e-6)


def test_raa_mean_averages_heads_and_layers():
    # token 0: ([0,0,1,0] + [.75,.25,0,0]) / 2 = [3/8, 1/8, 1/2, 0]
    # token 1: ([.75,0,.25,0] + [0,.25,.5,.25]) / 2 = [3/8, 1/8, 3/8, 1/8] -> crop to 3 frames, / 7/8
    np.testing.assert_allclose(_maps("raa_mean", n_valid=3), [[3 / 8, 1 / 8, 1 / 2], [3 / 7, 1 / 7, 3 / 7]],
                               atol=1e-6)


def test_plain_rollout():
    # R_tt = (I + A1)(I + A0) with A the head-mean self-attention; rows sum to 4, and
    # R_ta = (I + A1)(I + A0) C0 / 2 + (I + A1)(I + A0) C1 / 4, so row q is proportional to
    # [(I + A1)(I + A0)]_q (2 C0 + C1), C the head-mean cross-attention.
    #   (I + A1)(I + A0): row 0 = [4, 0, 0], row 1 = [1, 3, 0]
    #   2 C0 + C1:        row 0 = [.75, .25, 2, 0], row 1 = [1.5, .25, 1, .25]
    # token 0: 4 [.75,.25,2,0] = [3, 1, 8, 0] / 12;  token 1: [.75,.25,2,0] + 3 [1.5,.25,1,.25] = [5.25, 1, 5, .75] / 12
    np.testing.assert_allclose(_maps("rollout"), [[1 / 4, 1 / 12, 2 / 3, 0], [7 / 16, 1 / 12, 5 / 12, 1 / 16]],
                               atol=1e-6)


def test_saco():
    # X_l = E_h[relu(dA * A)] of the target; S_l = 0.5 I + 0.5 A_l (head-mean self-attention);
    # R_ta = S1 S0 (X0 + X1), with S1 S0: row 0 = [1, 0, 0], row 1 = [.25, .75, 0] (the overall scale of S
    # cancels in the normalisation; the residual's share does not: S = A gives row 1 = [.5, .5, 0]).
    # token 0: X0 row 0 = (2 [0,0,1,0] + relu(-1 ...)) / 2 = [0,0,1,0]; X1 row 0 = head mean [.75,.25,0,0]
    #          -> [.75, .25, 1, 0] / 2
    # token 1: X0 = head mean, rows [0,0,1,0] and [.75,0,.25,0]; X1 = head 1's rows [1,0,0,0] and [0,0,.5,.5]
    #          -> .25 [1,0,1,0] + .75 [.75,0,.75,.5] = [.8125, 0, .8125, .375] / 2
    np.testing.assert_allclose(_maps("saco"), [[3 / 8, 1 / 8, 1 / 2, 0], [13 / 32, 0, 13 / 32, 3 / 16]], atol=1e-6)


def test_ta():
    # B_l = E_h[relu(dA * A)] of the self-attention, X_l of the cross-attention (as for SaCo);
    # per layer R_tt += B R_tt, R_ts += B R_ts, R_ts += (rownorm(R_tt - I) + I) X.
    # token 0: B0 row 0 = [1,0,0], B1 row 0 = [.5,0,0]. Layer 0: R_tt row 0 = [2,0,0], R-hat row 0 = [2,0,0],
    #          R_ts row 0 = 2 X0 = [0,0,2,0]. Layer 1: R_tt row 0 = [3,0,0], R_ts row 0 = 1.5 [0,0,2,0]
    #          + 2 X1 row 0 = [0,0,3,0] + [1.5,.5,0,0] -> [1.5, .5, 3, 0] / 5
    # token 1: B0 = .5 head 0 = rows [.5,0,0], [.5,0,0]; B1 = 0. R-hat rows 0-1 = [2,0,0], [1,1,0] in both
    #          layers, so R_ts row 1 = (X0 + X1) rows 0 + 1 = [.75,0,1.25,0] + [1,0,.5,.5] -> [1.75, 0, 1.75, .5] / 4
    np.testing.assert_allclose(_maps("ta"), [[.3, .1, .6, 0], [7 / 16, 0, 7 / 16, 1 / 8]], atol=1e-6)


@pytest.mark.parametrize("name", ["raa_last", "raa_mean", "rollout", "saco", "ta"])
def test_one_token_at_a_time_gives_the_same_map(name):
    """Computing a token alone (as the widget may) gives the row computed with the others."""
    window = SimpleNamespace(adapter=FakeAdapter(), encoded=None, prompt=[7], ids=[8, 9], n_valid=4,
                             cache={}, features=None)
    compute = get_method(name).compute
    both = compute(window, [0, 1])
    np.testing.assert_allclose(np.concatenate([compute(window, [0]), compute(window, [1])]), both, atol=1e-7)
