"""LEAF-X maths (paper Eqs. 2-10) as pure tensor functions: no models, hooks or traits.

Shapes are written as (..., H, S): any leading batch dims, then heads, then audio
frames. Every function is differentiable and runs on any device/dtype.
"""
from __future__ import annotations

import torch

DEPTHS = ("full", "last_half", "middle_half", "one")


def normalise(x: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """x / (sum(x) + eps) along ``dim``: rows become distributions (all-zero rows stay zero)."""
    return x / (x.sum(dim=dim, keepdim=True) + eps)


def head_entropy(attn: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 2: H = -sum_s A_s log(A_s + eps).  (..., H, S) -> (..., H)"""
    return -(attn * torch.log(attn + eps)).sum(dim=-1)


def entropy_weights(entropy: torch.Tensor, tau: float = 1.0, active: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 3: w = softmax_h(-H / tau), lower entropy -> higher weight.  (..., H) -> (..., H)

    ``active`` (..., H) bool: heads left out get weight 0. LEAF-X uses it for heads
    whose gradient-modulated attention is all zero: their entropy is 0, which
    Eq. 3 would otherwise read as the most confident head of all.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    logits = -entropy / tau
    if active is not None:
        logits = logits.masked_fill(~active, float("-inf"))
        # a row with no active head at all gets zero weights, not NaN
        return torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)
    return torch.softmax(logits, dim=-1)


def entropy_weighted_attention(attn: torch.Tensor, tau: float = 1.0, eps: float = 1e-8,
                               use_entropy: bool = True) -> torch.Tensor:
    """Eq. 4: Abar = sum_h w_h A_h / (sum_h w_h + eps).  (..., H, S) -> (..., S)

    ``use_entropy=False`` is the ablation "w/o entropy weighting": a plain head mean.
    If ``attn`` rows are not distributions (``value_weighted`` output), entropies are
    taken of the normalised rows and the weighted sum keeps the magnitudes.
    """
    active = attn.sum(dim=-1) > 0
    if use_entropy:
        # entropy of each head's distribution; ``attn`` itself may carry magnitudes (value_weighted)
        weights = entropy_weights(head_entropy(normalise(attn, eps=eps), eps), tau, active)
    else:
        weights = active.to(attn.dtype)
    return (weights.unsqueeze(-1) * attn).sum(dim=-2) / (weights.sum(dim=-1, keepdim=True) + eps)


def gradient_modulate(attn: torch.Tensor, grad: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 7: A~ = A * relu(dlog p / dA), renormalised over frames per head.  Same shape in and out."""
    return normalise(attn * torch.relu(grad), dim=-1, eps=eps)


def rollout(self_attn: torch.Tensor, cross_attn: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eqs. 5-6: propagate token->frame attribution through the decoder layers.

    self_attn:  (..., L, P, P) head-averaged causal self-attention per layer
    cross_attn: (..., L, P, S) (entropy-weighted) attention over frames per layer
    returns     (..., L, P, S) the normalised map r^(l) of every query after layer l

    With residual connections: R_tt starts as I and R_ta as 0; per layer
    R_tt += A_self R_tt, R_ta += A_self R_ta, then R_ta += rownorm(R_tt) A_cross.
    """
    n_pos = self_attn.shape[-1]
    batch = torch.broadcast_shapes(self_attn.shape[:-3], cross_attn.shape[:-3])
    r_tt = torch.eye(n_pos, dtype=cross_attn.dtype, device=cross_attn.device).expand(*batch, n_pos, n_pos)
    r_ta = torch.zeros(*batch, n_pos, cross_attn.shape[-1], dtype=cross_attn.dtype, device=cross_attn.device)
    maps = []
    for layer in range(cross_attn.shape[-3]):
        a_self = self_attn[..., layer, :, :]
        r_tt = r_tt + a_self @ r_tt
        r_ta = r_ta + a_self @ r_ta
        r_ta = r_ta + normalise(r_tt, eps=eps) @ cross_attn[..., layer, :, :]
        maps.append(normalise(r_ta, eps=eps))
    return torch.stack(maps, dim=-3)


def rollout_operators(self_attn: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eqs. 5-6 as linear operators: (L, P, P) self-attention -> (L, L, P, P) ``ops``.

    The rollout is linear in the cross-attention maps: the unnormalised R_ta after
    layer i is sum_{j <= i} ops[i, j] @ cross[j], with
    ops[i, j] = (I + A_i) ... (I + A_{j+1}) rownorm(R_tt after layer j), so
    ``rollout(self_attn, cross)[i] == normalise(sum_j ops[i, j] @ cross[j])``.
    +grad uses this form: the operators do not depend on the token whose gradient
    modulates the maps, so they are built once for all tokens.
    """
    n_layers, n_pos = self_attn.shape[0], self_attn.shape[-1]
    eye = torch.eye(n_pos, dtype=self_attn.dtype, device=self_attn.device)
    ops = self_attn.new_zeros(n_layers, n_layers, n_pos, n_pos)
    r_tt = eye
    for j in range(n_layers):
        r_tt = r_tt + self_attn[j] @ r_tt
        op = normalise(r_tt, eps=eps)
        ops[j, j] = op
        for i in range(j + 1, n_layers):
            op = op + self_attn[i] @ op
            ops[i, j] = op
    return ops


def value_weighted(attn: torch.Tensor, value_norm: torch.Tensor) -> torch.Tensor:
    """Norm-based attention (Kobayashi et al. 2020): A_hs * ||v_s W_o^h||.  (..., H, P, S) x (H, S)

    What a head writes into the residual stream from frame s is A_hs v_s W_o^h, so
    its size, not A alone, is the evidence. Attention sinks (a head parked on one
    frame, often the audio/padding border) have small value vectors and fade out.
    """
    return attn * value_norm.unsqueeze(-2)


def direct_path(cross_attn: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Layer aggregation without decoder self-attention mixing.  (..., L, P, S) -> (..., L, P, S)

    r^(l) = normalise(sum_{l' <= l} Abar^(l')): each query keeps its own evidence,
    layers weighted by how much they write (with value-weighted inputs). Used by the
    "-vn" variants because Whisper's decoder self-attention parks on the first
    prompt token, so the rollout of Eq. 5 hands every token that token's map.
    """
    return normalise(torch.cumsum(cross_attn, dim=-3), eps=eps)


def select_layers(n_layers: int, depth: str | int = "full") -> list[int]:
    """Which decoder layers enter the rollout (the paper's Table 7 "rollout depth").

    "full" all layers; "last_half" the deepest half; "middle_half" the central half;
    "one" the last layer; an int k the deepest k layers.
    """
    if isinstance(depth, int) and not isinstance(depth, bool):
        if not 1 <= depth <= n_layers:
            raise ValueError(f"rollout depth must be in 1..{n_layers}, got {depth}")
        return list(range(n_layers - depth, n_layers))
    half = max(1, n_layers // 2)
    if depth == "full":
        return list(range(n_layers))
    if depth == "last_half":
        return list(range(n_layers - half, n_layers))
    if depth == "middle_half":
        start = (n_layers - half) // 2
        return list(range(start, start + half))
    if depth == "one":
        return [n_layers - 1]
    raise ValueError(f"unknown rollout depth {depth!r}; choose one of {DEPTHS} or a number of layers")


def causal_layer_weights(delta: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 9: lambda_l = relu(Delta_l) / (sum relu(Delta) + eps).  (..., L) -> ((..., L), (...) bool)

    Delta_l = NLL with layer l's cross-attention bypassed minus the full NLL (Eq. 8).
    Where no layer hurts when bypassed (all Delta <= 0) the weights fall back to
    uniform; the second output flags those tokens.
    """
    positive = torch.relu(delta)
    total = positive.sum(dim=-1, keepdim=True)
    fallback = total[..., 0] <= 0
    uniform = torch.full_like(delta, 1.0 / delta.shape[-1])
    weights = torch.where(fallback.unsqueeze(-1), uniform, positive / (total + eps))
    return weights, fallback


def combine_layers(layer_maps: torch.Tensor, weights: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 10: r = normalise(sum_l lambda_l r^(l)).  ((..., L, S), (..., L)) -> (..., S)"""
    return normalise((weights.unsqueeze(-1) * layer_maps).sum(dim=-2), eps=eps)


def crop_frames(attn: torch.Tensor, n_valid: int, eps: float = 1e-8) -> torch.Tensor:
    """Keep the first ``n_valid`` frames (the real audio) and renormalise: padding gets nothing."""
    return normalise(attn[..., :n_valid], eps=eps)
