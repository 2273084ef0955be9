"""LEAF-X for every token of one decoding window: model passes in, maps out.

``leafx.py`` holds the maths; this module only runs the adapter's passes and
feeds the maths, reducing attention layer by layer so memory stays at
O(layers x positions x frames), never O(layers x heads x positions x frames)
for all tokens at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import leafx

FRAMES = ("valid", "all")
MIXING = ("rollout", "direct")


@dataclass(frozen=True)
class LeafxConfig:
    """The paper's knobs (Sec. 4.1 and Tables 3, 6, 7)."""

    tau: float = 1.0  # entropy temperature (Eq. 3)
    eps: float = 1e-8  # stabiliser (Eqs. 4, 6, 9)
    depth: str | int = "full"  # rollout depth: which layers enter (Table 7)
    entropy: bool = True  # False = ablation "w/o entropy weighting" (plain head mean)
    rollout: bool = True  # False = ablation "w/o rollout" (last selected layer only)
    grad: bool = False  # gradient modulation (Eq. 7)
    causal: bool = False  # causal layer reweighting (Eqs. 8-10)
    # entropy over the real audio only ("valid", default) or over the whole 30 s window
    # with its padding ("all"); maps are always renormalised over the real audio
    frames: str = "valid"
    # the "-vn" fix (see leafx.value_weighted / direct_path): weight attention by the size of what
    # each head writes, and aggregate each query's own layers instead of the self-attention rollout
    value_norm: bool = False
    mixing: str = "rollout"  # "rollout" (Eq. 5 as written) or "direct"
    grad_memory_mb: float = 512.0  # bound on the gradient tensors held at once (sets the target chunk)

    def __post_init__(self):
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.frames not in FRAMES:
            raise ValueError(f"frames must be one of {FRAMES}, got {self.frames!r}")
        if self.mixing not in MIXING:
            raise ValueError(f"mixing must be one of {MIXING}, got {self.mixing!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


@dataclass
class WindowMaps:
    """LEAF-X output for the N text tokens of one window over its n_valid real frames."""

    maps: torch.Tensor  # (N, n_valid) final maps, rows sum to 1
    layer_maps: torch.Tensor  # (N, L', n_valid) r^(l) after each selected layer
    layers: list[int]  # the decoder layers that entered (rollout depth)
    layer_weights: torch.Tensor | None = None  # (N, L') lambda of Eq. 9 (+causal only)
    delta_nll: torch.Tensor | None = None  # (N, L') Delta of Eq. 8 (+causal only)
    uniform_fallback: torch.Tensor | None = None  # (N,) bool: no layer mattered, lambda uniform
    notes: list[str] = field(default_factory=list)


def _query_rows(n_prompt: int, n_ids: int) -> list[int]:
    # text token i is predicted by the query one position before it
    return [n_prompt - 1 + i for i in range(n_ids)]


def _reduce_heads(attn: torch.Tensor, n_valid: int, cfg: LeafxConfig, value_norm=None) -> torch.Tensor:
    """(..., H, P, S) attention -> (..., P, S') entropy-weighted over heads (Eqs. 2-4).

    ``value_norm`` (H, S) of this layer, for the "-vn" variants."""
    attn = attn.float()
    if cfg.frames == "valid":
        attn = leafx.crop_frames(attn, n_valid, cfg.eps)
    if value_norm is not None:
        attn = leafx.value_weighted(attn, value_norm[:, : attn.shape[-1]].float())
    return leafx.entropy_weighted_attention(attn.transpose(-3, -2), cfg.tau, cfg.eps, cfg.entropy)


def _propagate(self_attn: torch.Tensor, cross: torch.Tensor, cfg: LeafxConfig) -> torch.Tensor:
    """(..., L', P, P), (..., L', P, S') -> (..., L', P, S') map after each layer."""
    if cfg.rollout and cfg.mixing == "direct":
        return leafx.direct_path(cross, cfg.eps)
    if cfg.rollout:
        return leafx.rollout(self_attn, cross, cfg.eps)
    return leafx.normalise(cross, eps=cfg.eps)  # w/o rollout: each layer's own map, the last one is used


def leafx_window(adapter, encoded: torch.Tensor, prompt: list[int], ids: list[int], n_valid: int,
                 cfg: LeafxConfig = LeafxConfig()) -> WindowMaps:
    """LEAF-X maps for all text tokens ``ids`` of one window (encoder output cached by the caller)."""
    layers = leafx.select_layers(adapter.n_layers, cfg.depth)
    rows = _query_rows(len(prompt), len(ids))
    vnorm = adapter.value_norms(encoded) if cfg.value_norm else None  # (L, H, S) or None
    if not ids:
        empty = torch.zeros(0, n_valid)
        return WindowMaps(maps=empty, layer_maps=torch.zeros(0, len(layers), n_valid), layers=layers)
    if cfg.grad:
        layer_maps = _grad_layer_maps(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm)
    else:
        layer_maps = _base_layer_maps(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm)
    result = WindowMaps(maps=layer_maps[:, -1], layer_maps=layer_maps, layers=layers)
    if cfg.causal:
        delta = causal_deltas(adapter, encoded, prompt, ids, layers)
        weights, fallback = leafx.causal_layer_weights(delta, cfg.eps)
        result.maps = leafx.combine_layers(layer_maps, weights, cfg.eps)
        result.layer_weights, result.delta_nll, result.uniform_fallback = weights, delta, fallback
        if bool(fallback.any()):
            result.notes.append(f"{int(fallback.sum())} token(s): no layer's bypass raised the NLL; uniform layer weights")
    return result


def _finish(per_layer: torch.Tensor, rows: list[int], n_valid: int, eps: float) -> torch.Tensor:
    """(..., L', P, S') -> (..., L', N, n_valid) rows of the predicting queries, real frames only."""
    return leafx.crop_frames(per_layer[..., rows, :], n_valid, eps)


def _vn(vnorm, layer):
    return None if vnorm is None else vnorm[layer]


@torch.no_grad()
def _base_layer_maps(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm) -> torch.Tensor:
    wanted = set(layers)
    tp = adapter.teacher_forced(
        encoded, prompt, ids,
        reduce_cross=lambda l, a: _reduce_heads(a[0], n_valid, cfg, _vn(vnorm, l)) if l in wanted else None,
        reduce_self=lambda l, a: a[0].float().mean(dim=0) if l in wanted else None,
    )
    cross = torch.stack([tp.cross[l] for l in layers])  # (L', P, S')
    selfs = torch.stack([tp.self_attn[l] for l in layers])  # (L', P, P)
    per_layer = _finish(_propagate(selfs, cross, cfg), rows, n_valid, cfg.eps)  # (L', N, n_valid)
    return per_layer.transpose(0, 1).contiguous()


def _grad_layer_maps(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm) -> torch.Tensor:
    """+grad: one teacher-forced forward, then batched backward passes (a chunk of targets at a time).

    The backward pass stops at each layer's head outputs o_hq = sum_s A_hqs v_hs, and
    dlog p / dA_hqs = <dlog p / do_hq, v_hs> is formed one layer at a time, so the
    (targets x heads x positions x frames) gradient never exists for all layers at once.
    """
    wanted = set(layers)
    n_frames = n_valid if cfg.frames == "valid" else None  # frames whose gradient is needed
    with torch.enable_grad():
        tp = adapter.teacher_forced(
            encoded.detach(), prompt, ids,
            reduce_cross=lambda l, a: a[0, :, :, :n_frames].detach().float() if l in wanted else None,
            reduce_self=lambda l, a: a[0].detach().float().mean(dim=0) if l in wanted else None,
            keep_head_outputs=True,
        )
        mixed = [tp.head_outputs[l] for l in layers]  # (1, P, H * dh) each, in the graph
        attn = [tp.cross[l] for l in layers]  # (H, P, S') each, detached
        values = [adapter.value_vectors(encoded, l)[:, :n_frames].float() for l in layers]  # (H, S', dh)
        selfs = torch.stack([tp.self_attn[l] for l in layers])  # (L', P, P)
        n = len(ids)
        heads, positions, frames = attn[0].shape
        per_target_bytes = 4 * heads * positions * frames * 3  # one layer's gradient, modulated and cropped
        chunk = max(1, min(n, int(cfg.grad_memory_mb * 2**20 // per_target_bytes)))
        out = []
        for start in range(0, n, chunk):
            targets = list(range(start, min(n, start + chunk)))
            pick = torch.zeros(len(targets), n, dtype=tp.logprobs.dtype, device=tp.logprobs.device)
            pick[range(len(targets)), targets] = 1.0
            grads = torch.autograd.grad(tp.logprobs, mixed, grad_outputs=pick, retain_graph=True,
                                        is_grads_batched=True)  # each (C, 1, P, H * dh)
            with torch.no_grad():
                cross = []
                for l, a, g, v in zip(layers, attn, grads, values):
                    g = g[:, 0].float().unflatten(-1, (heads, -1))  # (C, P, H, dh)
                    grad_attn = torch.einsum("cqhk,hsk->chqs", g, v)  # (C, H, P, S')
                    modulated = leafx.gradient_modulate(a, grad_attn, cfg.eps)
                    cross.append(_reduce_heads(modulated, n_valid, cfg, _vn(vnorm, l)))  # (C, P, S')
                    del grad_attn, modulated
                per_layer = _propagate(selfs, torch.stack(cross, dim=1), cfg)  # (C, L', P, S')
                for c, t in enumerate(targets):  # each target keeps its own query row: (L', n_valid)
                    out.append(leafx.crop_frames(per_layer[c, :, rows[t], :], n_valid, cfg.eps))
    return torch.stack(out)  # (N, L', n_valid)


@torch.no_grad()
def causal_deltas(adapter, encoded, prompt, ids, layers) -> torch.Tensor:
    """Eq. 8 for every token at once: one bypassed pass per layer.  -> (N, L')"""
    full = adapter.teacher_forced(encoded, prompt, ids, reduce_cross=_drop, reduce_self=_drop).logprobs
    deltas = []
    for layer in layers:
        bypassed = adapter.teacher_forced(encoded, prompt, ids, bypass_layer=layer,
                                          reduce_cross=_drop, reduce_self=_drop).logprobs
        deltas.append(full - bypassed)  # NLL(bypassed) - NLL(full)
    return torch.stack(deltas, dim=-1).float()


def _drop(layer, attn):
    return None
