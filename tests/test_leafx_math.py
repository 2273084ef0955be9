"""Each LEAF-X equation against a case small enough to compute by hand."""
import math

import pytest
import torch

from leafx_widgets import leafx

T = torch.tensor


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), atol=tol)


def test_head_entropy_eq2():
    attn = T([[0.5, 0.5], [1.0, 0.0]])  # two heads over two frames
    assert close(leafx.head_entropy(attn), [math.log(2), 0.0])


def test_entropy_weights_eq3_lower_entropy_weighs_more():
    w = leafx.entropy_weights(T([0.0, math.log(2)]), tau=1.0)
    assert close(w, [2 / 3, 1 / 3])  # softmax([0, -ln 2]) = [1, 1/2] / 1.5
    w_hot = leafx.entropy_weights(T([0.0, math.log(2)]), tau=0.5)
    assert close(w_hot, [4 / 5, 1 / 5])  # softmax([0, -2 ln 2]) = [1, 1/4] / 1.25
    with pytest.raises(ValueError, match="tau"):
        leafx.entropy_weights(T([0.0]), tau=0.0)


def test_entropy_weighted_attention_eq4():
    attn = T([[1.0, 0.0], [0.5, 0.5]])  # head 0 sharp (H=0), head 1 flat (H=ln2)
    out = leafx.entropy_weighted_attention(attn, tau=1.0)
    assert close(out, [2 / 3 * 1 + 1 / 3 * 0.5, 1 / 3 * 0.5])  # [5/6, 1/6]
    mean = leafx.entropy_weighted_attention(attn, use_entropy=False)
    assert close(mean, [0.75, 0.25])  # ablation: plain head mean


def test_all_zero_head_gets_no_weight():
    # after gradient modulation a head can be all zero: entropy 0 must not make it the top head
    attn = T([[0.0, 0.0], [0.5, 0.5]])
    assert close(leafx.entropy_weighted_attention(attn), [0.5, 0.5])
    assert close(leafx.entropy_weights(T([0.0, 1.0]), active=T([False, False])), [0.0, 0.0])


def test_gradient_modulation_eq7():
    attn = T([0.5, 0.3, 0.2])
    grad = T([1.0, -1.0, 2.0])  # relu -> [1, 0, 2]; A * relu(g) = [0.5, 0, 0.4]
    assert close(leafx.gradient_modulate(attn, grad, eps=0.0), [5 / 9, 0.0, 4 / 9])


def test_rollout_eq5_two_layers_by_hand():
    a_self = T([[1.0, 0.0], [0.5, 0.5]])
    cross = torch.eye(2)  # query 0 reads frame 0, query 1 reads frame 1
    maps = leafx.rollout(torch.stack([a_self, a_self]), torch.stack([cross, cross]), eps=0.0)
    # layer 1: R_tt = I + A I = [[2,0],[.5,1.5]]; R_ta = rownorm(R_tt) I = [[1,0],[.25,.75]]
    assert close(maps[0], [[1.0, 0.0], [0.25, 0.75]])
    # layer 2: R_tt = [[4,0],[1.75,2.25]]; R_ta = [[2,0],[.875,1.125]] + [[1,0],[.4375,.5625]]
    assert close(maps[1], [[1.0, 0.0], [1.3125 / 3, 1.6875 / 3]])


def test_rollout_batches_over_leading_dims():
    a_self = torch.softmax(torch.randn(3, 4, 4).tril(), -1)
    cross = torch.softmax(torch.randn(2, 3, 4, 5), -1)  # two targets share the self-attention
    batched = leafx.rollout(a_self, cross)
    assert batched.shape == (2, 3, 4, 5)
    assert close(batched[1], leafx.rollout(a_self, cross[1]))
    assert close(batched.sum(-1), torch.ones(2, 3, 4), tol=1e-5)


def test_causal_layer_weights_eq9_and_fallback():
    w, fallback = leafx.causal_layer_weights(T([[0.2, -0.1, 0.6], [-0.3, 0.0, -1.0]]), eps=0.0)
    assert close(w[0], [0.25, 0.0, 0.75])
    assert close(w[1], [1 / 3, 1 / 3, 1 / 3]) and fallback.tolist() == [False, True]


def test_combine_layers_eq10():
    maps = T([[1.0, 0.0], [0.0, 1.0]])  # r^(1), r^(2)
    assert close(leafx.combine_layers(maps, T([0.25, 0.75]), eps=0.0), [0.25, 0.75])


def test_select_layers_rollout_depth():
    assert leafx.select_layers(4, "full") == [0, 1, 2, 3]
    assert leafx.select_layers(4, "last_half") == [2, 3]
    assert leafx.select_layers(4, "middle_half") == [1, 2]
    assert leafx.select_layers(4, "one") == [3]
    assert leafx.select_layers(32, "middle_half") == list(range(8, 24))
    assert leafx.select_layers(4, 2) == [2, 3]
    for bad in ("deep", 0, 5):
        with pytest.raises(ValueError, match="depth"):
            leafx.select_layers(4, bad)


def test_value_weighting_and_direct_path():
    attn = T([[[0.9, 0.1]], [[0.5, 0.5]]])  # (H=2, P=1, S=2)
    norms = T([[0.1, 1.0], [1.0, 1.0]])  # head 0's frame 0 is a sink with a tiny value vector
    weighted = leafx.value_weighted(attn, norms)
    assert close(weighted, [[[0.09, 0.1]], [[0.5, 0.5]]])
    layers = T([[[1.0, 0.0]], [[0.0, 3.0]]])  # (L=2, P=1, S=2) unnormalised layer contributions
    assert close(leafx.direct_path(layers, eps=0.0), [[[1.0, 0.0]], [[0.25, 0.75]]])


def test_crop_frames_drops_padding():
    assert close(leafx.crop_frames(T([0.2, 0.2, 0.6]), 2, eps=0.0), [0.5, 0.5])


def test_gradients_flow_through_the_maths():
    attn = torch.softmax(torch.randn(3, 4, 6), -1).requires_grad_()
    out = leafx.entropy_weighted_attention(attn.transpose(0, 1), tau=1.0)
    out[0, 2].backward()
    assert attn.grad is not None and torch.isfinite(attn.grad).all() and attn.grad.abs().sum() > 0


def test_rollout_operators_are_the_linear_form_of_the_rollout():
    torch.manual_seed(0)
    n_layers, n_pos, n_frames = 3, 5, 7
    selfs = torch.softmax(torch.randn(n_layers, n_pos, n_pos).masked_fill(
        torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1), -math.inf), dim=-1)
    cross = torch.softmax(torch.randn(n_layers, n_pos, n_frames), dim=-1)
    ops = leafx.rollout_operators(selfs)
    assert ops.shape == (n_layers, n_layers, n_pos, n_pos)
    assert close(ops[0, 1], torch.zeros(n_pos, n_pos))  # a layer never reaches the layers below it
    by_ops = leafx.normalise(torch.einsum("ijpq,jqs->ips", ops, cross))
    assert close(by_ops, leafx.rollout(selfs, cross), tol=1e-6)
    # one layer by hand: R_tt = I + A, the operator is its row-normalised form
    assert close(ops[0, 0], leafx.normalise(torch.eye(n_pos) + selfs[0]))
