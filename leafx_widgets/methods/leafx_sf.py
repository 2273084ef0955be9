"""LEAF-X-SF ("sink-free"): the fixed variant of LEAF-X, the package's default method.

Why the paper's recipe points at the wrong place on Whisper, and how the defaults were
chosen on the development sets: README, "LEAF-X-SF". The recipe, pure tensor maths on
one teacher-forced pass:

    for each selected layer l (default: the last one):
        H[q,h]   = entropy of A[l,h,q,:] over all window frames (Eq. 2, padding included)
        w[q,h]   = softmax_h(-H[q,h] / tau)                          (Eq. 3)
        Abar[q,s]= sum_h w[q,h] A[l,h,q,s] for the real frames s       (Eq. 4, no per-head renorm)
        sink[s]  = mean over the window's text queries q' of Abar[q',s]
        D_l[q,s] = normalise_s( Abar[q,s] / (sink[s] + delta)**desink ) (de-sink)
    r_t = normalise( (mean_l D_l[query(t), :]) ** gamma )

- no decoder self-attention rollout (the query that predicts token t only);
- "de-sink": divide by the frame's average attention over all text tokens of the window,
  which removes frames every token attends to (as openai-whisper's timing.py z-scores
  alignment-head attention over the token axis); desink < 1 divides only part of it out;
- gamma > 1 sharpens the map without changing the ranking of frames.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import leafx
from ._common import crop_normalise, gradient_batches
from .registry import Method, register

# chosen on the development sets by the rule in ``leafx_widgets.bench.tune_sf``
SF_PARAMS = {"tau": 0.5, "delta": 1e-4, "desink": 0.75, "gamma": 1.0, "layers": "last", "grad": False,
             "causal": False}
# the earlier defaults (full de-sink, gamma 1.5): best localisation, but it lost to RAA-last on INF
FULL_DESINK_PARAMS = {**SF_PARAMS, "tau": 1.0, "desink": 1.0, "gamma": 1.5}
ENTROPY_EPS = 1e-8  # inside the log of Eq. 2


def _layers(n_layers: int, layers) -> list[int]:
    """LEAF-X-SF's ``layers`` parameter in ``leafx.select_layers``'s terms, or explicit layer indices."""
    if isinstance(layers, (list, tuple)) and all(isinstance(x, int) and 0 <= x < n_layers for x in layers):
        return list(layers)
    if isinstance(layers, str) and layers in _DEPTH_OF:
        return leafx.select_layers(n_layers, _DEPTH_OF[layers])
    raise ValueError(f"layers must be 'last', 'last_half', 'all' or a list of layer indices, got {layers!r}")


_DEPTH_OF = {"last": "one", "last_half": "last_half", "all": "full"}


def sink_free_maps(cross: torch.Tensor, text_rows: list[int], n_valid: int, *, tau: float = 0.5,
                   delta: float = 1e-4, desink: float = 0.75, gamma: float = 1.0, eps: float = 1e-12,
                   layer_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pure maths of LEAF-X-SF.

    cross: (L', H, P, S) cross-attention probabilities of the selected layers over all S frames.
    text_rows: the query rows that predict the window's text tokens (sink estimate).
    desink: exponent of the sink division, 0 = none, 1 = divide by the sink profile.
    layer_weights: (P, L') weights of each layer's map per query row (rows sum to 1; the causal
    layer weights of Eq. 9), instead of the plain mean over layers.
    returns (P, n_valid) maps for every query row, rows sum to 1.
    """
    if not tau > 0 or not delta > 0 or not gamma > 0 or not desink >= 0:
        raise ValueError(f"tau, delta and gamma must be > 0 and desink >= 0 "
                         f"(got tau={tau}, delta={delta}, gamma={gamma}, desink={desink})")
    # entropy of each head's row as a distribution: a decoder-only model's rows over the audio sum to
    # its audio share, not 1 (Whisper's cross-attention rows already sum to 1)
    shares = cross.sum(-1, keepdim=True).clamp_min(eps)
    entropy = leafx.head_entropy(cross / shares, ENTROPY_EPS)  # (L', H, P)
    w = leafx.entropy_weights(entropy.transpose(1, 2), tau).transpose(1, 2)  # Eq. 3, over heads
    abar = (w.unsqueeze(-1) * cross[..., :n_valid]).sum(1)  # (L', P, n_valid)
    sink = abar[:, text_rows].mean(1, keepdim=True)  # (L', 1, n_valid)
    d = abar / (sink + delta) ** desink
    d = d / (d.sum(-1, keepdim=True) + eps)
    r = d.mean(0) if layer_weights is None else (layer_weights.T.unsqueeze(-1) * d).sum(0)
    r = r ** gamma
    return r / (r.sum(-1, keepdim=True) + eps)


@torch.no_grad()
def leafx_sf(window, positions, *, tau: float = 0.5, delta: float = 1e-4, desink: float = 0.75,
             gamma: float = 1.0, layers="last", grad: bool = False, causal: bool = False) -> np.ndarray:
    chosen = _layers(window.adapter.n_layers, layers)
    cross, text_rows = layer_cross_attention(window, chosen)
    if grad:
        cross = _gradient_modulated(window, cross, chosen, text_rows)
    weights = _causal_weights(window, chosen, text_rows, cross.shape[2]) if causal else None
    maps = sink_free_maps(cross, text_rows, window.n_valid, tau=tau, delta=delta, desink=desink, gamma=gamma,
                          layer_weights=weights)
    return crop_normalise(maps[window.adapter.query_rows(window.prompt, positions)].numpy(), window.n_valid)


@torch.no_grad()
def layer_cross_attention(window, chosen: list[int]) -> tuple[torch.Tensor, list[int]]:
    """(L', H, P, S) float cross-attention of the chosen layers from one teacher-forced pass, and
    the query rows of the window's text tokens."""
    wanted = set(chosen)
    tp = window.adapter.teacher_forced(window.encoded, window.prompt, window.ids,
                                       reduce_cross=lambda l, a: a[0].float() if l in wanted else None,
                                       reduce_self=lambda l, a: None)
    return torch.stack([tp.cross[l] for l in chosen]), window.adapter.query_rows(window.prompt, range(len(window.ids)))


def _causal_weights(window, chosen: list[int], text_rows: list[int], n_rows: int) -> torch.Tensor:
    """(P, L') Eq. 9 layer weights for the text rows (one bypassed pass per layer, Eq. 8); uniform for
    the prompt rows and for tokens no bypass hurts."""
    from .leafx import causal_deltas

    weights = torch.full((n_rows, len(chosen)), 1.0 / len(chosen))
    if text_rows:
        deltas = causal_deltas(window.adapter, window.encoded, window.prompt, window.ids, chosen)  # (N, L')
        weights[text_rows] = leafx.causal_layer_weights(deltas)[0].cpu()
    return weights


def _gradient_modulated(window, cross, chosen, text_rows, chunk: int = 16):
    """Eq. 7 on each text token's own query row: A * relu(dlog p_t / dA), renormalised over frames."""
    out = cross.clone()
    gradients = window.adapter.token_gradients(window.encoded, window.prompt, window.ids)
    for targets, grads in gradient_batches(gradients, list(range(len(text_rows))), chunk, layers=chosen):
        for layer, _, d_attn in grads:
            j = chosen.index(layer)
            for c, t in enumerate(targets):
                row = text_rows[t]
                out[j, :, row] = leafx.gradient_modulate(cross[j, :, row], d_attn[:, c, row].float())
    return out


register(Method("leafx_sf", "LEAF-X-SF (sink-free)", leafx_sf, family="leafx", cost="fast",
                params=dict(SF_PARAMS),
                description="fixed LEAF-X: last-layer entropy-weighted heads, no self-attention rollout, "
                            "frames divided by (their mean attention over the window's tokens)^0.75"))
register(Method("leafx_sf_full", "LEAF-X-SF, full de-sink", leafx_sf, family="leafx", cost="fast",
                params=dict(FULL_DESINK_PARAMS),
                description="LEAF-X-SF with the whole sink division and gamma 1.5 (sharper, loses INF to RAA)"))
register(Method("leafx_sf_grad", "LEAF-X-SF +grad", leafx_sf, family="leafx", cost="fast",
                params={**SF_PARAMS, "grad": True},
                needs=("token_gradients",),
                description="LEAF-X-SF on gradient-modulated attention (Eq. 7 on each token's own query)"))
register(Method("leafx_sf_causal", "LEAF-X-SF +causal", leafx_sf, family="leafx", cost="slow",
                params={**SF_PARAMS, "grad": True, "causal": True, "layers": "all"},
                needs=("token_gradients", "bypass"),
                description="LEAF-X-SF +grad on every layer, the layers' maps weighted by how much bypassing "
                            "each one raises the token's NLL (Eqs. 8-10) instead of the last layer alone"))
