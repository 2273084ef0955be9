"""The LEAF-X family: the paper's variants (base, +grad, +causal), their Table 3 ablations and
the "-vn" fix, computed for every token of one decoding window: model passes in, maps out.

``leafx_widgets/leafx.py`` holds the maths; this module only runs the adapter's passes and
feeds the maths, reducing attention layer by layer so memory stays at
O(layers x positions x frames), never O(layers x heads x positions x frames)
for all tokens at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .. import leafx
from ._common import gradient_batches
from .registry import Compute, Method, register

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
    # bound on the +grad tensors held at once, which sets how many tokens share one backward pass;
    # None: 96 MB on CPU (small batches stay in cache: fastest on the 2-core machine), 2 GB on GPUs
    grad_memory_mb: float | None = None

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


CACHE_ENTRIES = 16  # per window: layer maps of this many configurations, and the causal deltas


def leafx_window(adapter, encoded: torch.Tensor, prompt: list[int], ids: list[int], n_valid: int,
                 cfg: LeafxConfig = LeafxConfig(), cache: dict | None = None) -> WindowMaps:
    """LEAF-X maps for all text tokens ``ids`` of one window (encoder output cached by the caller).

    ``cache``: a dict kept with the window (``explanation.Window.cache``). The per-layer maps and
    the causal deltas are stored there, so +causal after +grad (the widget's toggle, the
    benchmark's tau sweep) reuses the gradient pass and the bypass passes.
    """
    layers = leafx.select_layers(adapter.n_layers, cfg.depth)
    rows = adapter.query_rows(prompt, range(len(ids)))
    if not ids:
        empty = torch.zeros(0, n_valid)
        return WindowMaps(maps=empty, layer_maps=torch.zeros(0, len(layers), n_valid), layers=layers)
    cache = {} if cache is None else cache
    maps_key = ("layer_maps", replace(cfg, causal=False))
    if maps_key not in cache:
        vnorm = adapter.value_norms(encoded) if cfg.value_norm else None  # (L, H, S) or None
        compute = _grad_layer_maps if cfg.grad else _base_layer_maps
        _remember(cache, maps_key, compute(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm))
    layer_maps = cache[maps_key]
    result = WindowMaps(maps=layer_maps[:, -1], layer_maps=layer_maps, layers=layers)
    if cfg.causal:
        delta_key = ("causal_deltas", tuple(layers))
        if delta_key not in cache:
            _remember(cache, delta_key, causal_deltas(adapter, encoded, prompt, ids, layers))
        delta = cache[delta_key]
        weights, fallback = leafx.causal_layer_weights(delta, cfg.eps)
        result.maps = leafx.combine_layers(layer_maps, weights, cfg.eps)
        result.layer_weights, result.delta_nll, result.uniform_fallback = weights, delta, fallback
        if bool(fallback.any()):
            result.notes.append(f"{int(fallback.sum())} token(s): no layer's bypass raised the NLL; uniform layer weights")
    return result


def _remember(cache: dict, key, value) -> None:
    while len(cache) >= CACHE_ENTRIES:
        cache.pop(next(iter(cache)))  # oldest first
    cache[key] = value


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


def _operators(selfs: torch.Tensor, cfg: LeafxConfig) -> torch.Tensor:
    """(L', P, P) self-attention -> (L', L', P, P) linear form of ``_propagate`` (before normalising)."""
    if cfg.rollout and cfg.mixing == "rollout":
        return leafx.rollout_operators(selfs, cfg.eps)
    n_layers, n_pos = selfs.shape[0], selfs.shape[-1]
    eye = torch.eye(n_pos, dtype=selfs.dtype, device=selfs.device)
    ops = selfs.new_zeros(n_layers, n_layers, n_pos, n_pos)
    for i in range(n_layers):  # direct path: layers up to i; w/o rollout: layer i alone
        for j in (range(i + 1) if cfg.rollout else [i]):
            ops[i, j] = eye
    return ops


@torch.no_grad()
def _grad_layer_maps(adapter, encoded, prompt, ids, n_valid, layers, rows, cfg, vnorm) -> torch.Tensor:
    """+grad: Eq. 7's dlog p_t / dA for every token t, then Eqs. 2-6 on the modulated attention.

    The adapter's batched backward hands out dA for a batch of tokens, layer by layer
    (``whisper_backward``). The rollout is applied as precomputed linear operators to
    each token's own row, so modulated maps are formed only for the positions that
    reach it, one layer at a time: memory stays O(batch x heads x positions x frames).
    """
    n_frames = n_valid if cfg.frames == "valid" else None  # frames that enter Eqs. 2-4
    gradients = adapter.token_gradients(encoded, prompt, ids)
    ops = _operators(torch.stack([gradients.attention(l)[1].float().mean(dim=0) for l in layers]), cfg)  # (L', L', P, P)
    frames = min(n_frames or adapter.n_window_frames, adapter.n_window_frames)  # S'
    per_token_bytes = 4 * 4 * adapter.n_heads * (rows[-1] + 1) * adapter.n_window_frames  # ~4 live (H, P, S) tensors
    budget_mb = cfg.grad_memory_mb or (96.0 if encoded.device.type == "cpu" else 2048.0)
    chunk = max(1, int(budget_mb * 2**20 // per_token_bytes))
    out = []
    for targets, grads in gradient_batches(gradients, list(range(len(ids))), chunk, layers=layers):
        target_rows = [rows[t] for t in targets]
        acc = torch.zeros(len(targets), len(layers), frames, device=encoded.device)
        for layer, _, d_attn in grads:
            j, n = layers.index(layer), d_attn.shape[-2]
            attn = gradients.attention(layer)[0][:, :n, :frames].float()  # (H, n, S')
            cross = _modulated_heads(attn, d_attn[..., :frames].float(), cfg, _vn(vnorm, layer))
            weights = ops[:, j][:, target_rows, :n].transpose(0, 1)  # (C, L'_out, n)
            acc += torch.einsum("ciq,cqs->cis", weights, cross)
        out.append(leafx.crop_frames(acc, n_valid, cfg.eps))
    return torch.cat(out)  # (N, L', n_valid)


def _modulated_heads(attn, d_attn, cfg: LeafxConfig, value_norm=None) -> torch.Tensor:
    """Eqs. 7 then 2-4, fused for big batches: (H, n, S'), (H, C, n, S') -> (C, n, S').

    The same numbers as ``leafx.gradient_modulate`` followed by ``_reduce_heads``, in
    fewer passes over the (H, C, n, S') tensor: with m = A * relu(dA) and Z = sum_s m,
    the entropy of m / Z is log Z - sum_s m log m / Z, and the weighted head sum is
    sum_h (w_h / Z_h) m_h.
    """
    m = torch.relu(d_attn).mul_(attn[:, None])  # dA itself goes on down the backward pass
    total = m.sum(-1)  # (H, C, n) normaliser of Eq. 7
    sized = m.mul_(value_norm[:, None, None, : m.shape[-1]].float()) if value_norm is not None else m
    sized_total = sized.sum(-1) if value_norm is not None else total
    active = total > 0
    tiny = torch.finfo(m.dtype).tiny  # Z can be ~1e-10 (small gradients): divide by it exactly, no eps
    if cfg.entropy:
        safe = sized_total.clamp_min(tiny)
        m_log_m = sized.clamp_min(tiny).log_().mul_(sized)  # 3x faster than xlogy; m = 0 gives 0
        entropy = safe.log() - m_log_m.sum(-1) / safe
        del m_log_m
        weights = leafx.entropy_weights(entropy.permute(1, 2, 0), cfg.tau, active.permute(1, 2, 0))
        weights = weights.permute(2, 0, 1)  # (H, C, n)
    else:
        weights = active.to(m.dtype)
    scale = weights / total.clamp_min(tiny) / (weights.sum(0) + cfg.eps)
    out = torch.zeros(sized.shape[1:], dtype=sized.dtype, device=sized.device)
    for h in range(sized.shape[0]):  # one pass, no (H, C, n, S') temporary
        out.addcmul_(scale[h].unsqueeze(-1), sized[h])
    return out


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


# -- registrations ------------------------------------------------------------------------------
LEAFX_PARAMS = {"tau": 1.0, "depth": "full", "frames": "valid", "eps": 1e-8}


def _leafx(**switches) -> Compute:
    def compute(window, positions, **params) -> np.ndarray:
        cfg = LeafxConfig(**switches, **params)
        maps = leafx_window(window.adapter, window.encoded, window.prompt, window.ids, window.n_valid, cfg,
                            cache=getattr(window, "cache", None)).maps
        return maps[positions].cpu().numpy().astype(np.float32)

    return compute


def _needs(switches: dict) -> tuple[str, ...]:
    """The adapter passes a LEAF-X variant calls beyond the teacher-forced pass."""
    return tuple(need for switch, need in (("grad", "token_gradients"), ("value_norm", "value_norms"))
                 if switches.get(switch))


for _name, _label, _switches, _desc in [
    ("base", "LEAF-X base", {}, "entropy-weighted heads + multi-layer rollout (Eqs. 2-6)"),
    ("grad", "LEAF-X +grad", {"grad": True}, "base on gradient-modulated attention (adds Eq. 7)"),
    ("causal", "LEAF-X +causal", {"grad": True, "causal": True},
     "+grad with causal layer reweighting (Eqs. 8-10), the paper's Full"),
    ("leafx_no_entropy", "LEAF-X w/o entropy", {"grad": True, "causal": True, "entropy": False},
     "Table 3 ablation: plain head mean instead of entropy weights"),
    ("leafx_no_rollout", "LEAF-X w/o rollout", {"grad": True, "causal": True, "rollout": False},
     "Table 3 ablation: per-layer maps without rollout"),
    ("leafx_no_grad", "LEAF-X w/o grad", {"causal": True},
     "Table 3 ablation: causal reweighting on plain attention"),
    ("leafx_no_causal", "LEAF-X w/o causal", {"grad": True}, "Table 3 ablation: same as +grad"),
    # the fix for Whisper (README "Why the paper's recipe points at the wrong place"): value-norm
    # weighted attention + each query's own layers instead of the self-attention rollout
    ("base-vn", "LEAF-X-VN base", {"value_norm": True, "mixing": "direct"},
     "base with value-norm weighted attention and direct-path layer aggregation"),
    ("grad-vn", "LEAF-X-VN +grad", {"value_norm": True, "mixing": "direct", "grad": True},
     "+grad with value-norm weighting and direct-path aggregation"),
    ("causal-vn", "LEAF-X-VN +causal", {"value_norm": True, "mixing": "direct", "grad": True, "causal": True},
     "+causal with value-norm weighting and direct-path aggregation"),
]:
    register(Method(_name, _label, _leafx(**_switches), family="leafx",
                    cost="slow" if {"grad", "causal"} & set(_switches) else "fast",
                    params=dict(LEAFX_PARAMS), description=_desc, needs=_needs(_switches)))
