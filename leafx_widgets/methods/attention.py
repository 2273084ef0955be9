"""Attention-based baselines: RAA, plain rollout, SaCo, TA (Chefer et al. 2021).

All take the window's cached encoder output and run teacher-forced decoder passes
only (no encoder pass), so they cost milliseconds per token on tiny.en.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import leafx
from ._common import crop_normalise, gradient_batches, raw_attention
from .leafx import LeafxConfig, leafx_window
from .registry import Method, register


def raa(window, positions, *, layers: str = "last") -> np.ndarray:
    """Raw attention alignment: head-mean cross-attention of the predicting query,
    last layer (``layers="last"``) or mean over all layers (``"mean"``)."""
    cross, _ = raw_attention(window)
    rows = window.adapter.query_rows(window.prompt, positions)
    picked = cross[-1:] if layers == "last" else cross
    if layers not in ("last", "mean"):
        raise ValueError(f"layers must be 'last' or 'mean', got {layers!r}")
    return crop_normalise(picked[:, :, rows].mean(dim=(0, 1)).numpy(), window.n_valid)


def raa_last(window, positions, **params):
    return raa(window, positions, layers="last")


def raa_mean(window, positions, **params):
    return raa(window, positions, layers="mean")


def plain_rollout(window, positions, **params) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) through the decoder: head-mean attention,
    no entropy weighting, no gradients; the same residual rollout rule as LEAF-X (Eqs. 5-6)."""
    cfg = LeafxConfig(entropy=False)
    maps = leafx_window(window.adapter, window.encoded, window.prompt, window.ids, window.n_valid, cfg).maps
    return maps[positions].cpu().numpy().astype(np.float32)


def _gradient_weighted(window, positions, with_self: bool, chunk: int = 16):
    """Per target t and layer: Abar = E_h[relu(dlogp_t/dA (.) A)] of the cross-attention
    (and of the self-attention with ``with_self``), from the adapter's batched per-token
    backward. Returns (head-mean self-attention (L, P, P), an iterator of (position,
    cross (L, P, S), self (L, P, P) or None) one target at a time: memory holds one chunk)."""
    adapter = window.adapter
    gradients = adapter.token_gradients(window.encoded, window.prompt, window.ids)
    attention = [gradients.attention(l) for l in range(adapter.n_layers)]
    n_pos, n_frames = attention[0][1].shape[-1], attention[0][0].shape[-1]

    def per_target():
        for targets, grads in gradient_batches(gradients, positions, chunk, self_attention=with_self):
            cross = torch.zeros(len(targets), adapter.n_layers, n_pos, n_frames)
            selfs = torch.zeros(len(targets), adapter.n_layers, n_pos, n_pos) if with_self else None
            for layer, kind, grad in grads:
                n = grad.shape[2]
                probs = attention[layer][0 if kind == "cross" else 1][:, None, :n, : grad.shape[3]].float()
                weighted = torch.relu(grad.float() * probs).mean(0)  # (C, n, S or n)
                (cross if kind == "cross" else selfs)[:, layer, :n, : grad.shape[3]] = weighted
            for c, position in enumerate(targets):
                yield position, cross[c], None if selfs is None else selfs[c]

    return torch.stack([a[1].float().mean(0) for a in attention]), per_target()


def _relevance_rollout(a_cross: torch.Tensor, step, mix) -> torch.Tensor:
    """Token-to-frame relevance through the decoder layers, the recurrence SaCo and TA share.

    From R_tt = I (tokens) and R_ta = 0 (frames), per layer l:
        R_tt <- step(l, R_tt),   R_ta <- step(l, R_ta) + mix(R_tt) a_cross[l]
    ``step`` applies layer l's self-attention rule, ``mix`` normalises the token relevance.
    (L, P, S) -> (P, S), rows are decoder queries.
    """
    n_pos = a_cross.shape[-2]
    r_tt, r_ta = torch.eye(n_pos), torch.zeros(n_pos, a_cross.shape[-1])
    for l in range(a_cross.shape[0]):
        r_tt = step(l, r_tt)
        r_ta = step(l, r_ta) + mix(r_tt) @ a_cross[l]
    return r_ta


def saco(window, positions, **params) -> np.ndarray:
    """Salience-guided, gradient-weighted attention rollout.

    Per layer the cross-attention is weighted by the positive gradient of the target's
    log-prob, mean over heads: Ā_x = E_h[relu(dlogp/dA ⊙ A)]; the decoder self-attention
    (head mean) carries it through the layers with the residual rule 0.5 I + 0.5 A
    (Abnar & Zuidema); the map is the target query's row.
    """
    mean_self, targets = _gradient_weighted(window, list(positions), with_self=False)
    eye = torch.eye(mean_self.shape[-1])
    a_self = 0.5 * eye + 0.5 * mean_self  # (L, P, P), the same for every target
    rows = dict(zip(positions, window.adapter.query_rows(window.prompt, positions)))
    out = [_relevance_rollout(a_cross, lambda l, x: a_self[l] @ x, lambda r: r)[rows[position]].numpy()
           for position, a_cross, _ in targets]
    return crop_normalise(np.stack(out), window.n_valid)


def ta(window, positions, **params) -> np.ndarray:
    """Transformer attribution for encoder-decoder models (Chefer et al. 2021, "Generic
    attention-model explainability", decoder-side rules).

    Ā = E_h[relu(∇A ⊙ A)] for self- and cross-attention (gradient of the target's log-prob).
    R_tt starts at I and R_ts at 0; per decoder layer
        R_tt += Ā_self R_tt,  R_ts += Ā_self R_ts,  R_ts += R̂_tt Ā_cross R_ss
    with R̂_tt = rownorm(R_tt - I) + I (Chefer's normalisation) and R_ss = I: relevance is not
    propagated through the encoder's own self-attention, a stated simplification that keeps TA
    free of encoder backward passes. Rows are decoder queries; the map is the target's row.
    """
    mean_self, targets = _gradient_weighted(window, list(positions), with_self=True)
    eye = torch.eye(mean_self.shape[-1])
    rows = dict(zip(positions, window.adapter.query_rows(window.prompt, positions)))
    out = []
    for position, a_cross, a_selfs in targets:
        r_ts = _relevance_rollout(a_cross, lambda l, x: x + a_selfs[l] @ x,
                                  lambda r: leafx.normalise(r - eye) + eye)  # Chefer's normalisation of R_tt
        out.append(r_ts[rows[position]].numpy())
    return crop_normalise(np.stack(out), window.n_valid)


register(Method("raa_last", "RAA (last layer)", raa_last, family="attention",
                description="head-mean cross-attention of the last decoder layer"))
register(Method("raa_mean", "RAA (all layers)", raa_mean, family="attention",
                description="head- and layer-mean cross-attention"))
register(Method("rollout", "Attention rollout", plain_rollout, family="attention",
                description="head-mean attention rollout through the decoder (no entropy, no gradient)"))
register(Method("saco", "SaCo", saco, family="gradient",
                description="gradient-weighted cross-attention rolled out with 0.5 I + 0.5 A self-attention",
                needs=("token_gradients",)))
register(Method("ta", "TA (Chefer 2021)", ta, family="gradient",
                description="Chefer et al. 2021 encoder-decoder relevance rules, decoder side",
                needs=("token_gradients",)))
