"""Perturbation methods over the log-Mel input with frame-wise feature masks (captum):
Occlusion/SpecMask, LIME, KernelSHAP; and SPES (time-frequency patches and the token prefix).

Masked frames take the log-Mel of digital silence (see ``_common``). Every target
token of a window shares the same perturbed inputs: captum is called once per
token with the same seed, and ``MaskedScorer`` answers repeated inputs from its
cache, so the model cost is per window (the sample count), not per token.
"""
from __future__ import annotations

import numpy as np
import torch

from ._common import MaskedScorer, crop_normalise, frame_groups, mel_to_frames
from .registry import Method, register


def _per_target(window, positions, attribute) -> np.ndarray:
    """Run ``attribute(forward, target_column)`` for each target with one shared scorer."""
    scorer = MaskedScorer(window, positions)
    maps = []
    for j in range(len(positions)):
        attr = attribute(scorer, j)
        maps.append(mel_to_frames(attr, window))
    return np.stack(maps)


def occlusion(window, positions, *, window_frames: int = 10, stride_frames: int = 10) -> np.ndarray:
    """Occlusion / SpecMask: slide a silence patch of ``window_frames`` encoder frames (all mel
    bins) over time with ``stride_frames``; attribution = drop in log p, averaged over the
    patches covering a frame (captum ``Occlusion``)."""
    from captum.attr import Occlusion

    feats = window.features
    n_mels = feats.shape[1]
    floor = float(feats.amin())

    def attribute(scorer, j):
        return Occlusion(scorer).attribute(
            feats, sliding_window_shapes=(n_mels, window.adapter.input_frames_per_frame * window_frames),
            strides=(n_mels, window.adapter.input_frames_per_frame * stride_frames), baselines=floor, target=j,
            perturbations_per_eval=16)

    return crop_normalise(_per_target(window, positions, attribute), window.n_valid)


def _surrogate(kind: str, window, positions, *, n_samples: int, segment_frames: int, seed: int) -> np.ndarray:
    from captum.attr import KernelShap, Lime

    feats = window.features
    floor = float(feats.amin())
    mask = frame_groups(window.n_valid, window.adapter.n_window_frames, segment_frames,
                        window.adapter.input_frames_per_frame, feats.device)

    def attribute(scorer, j):
        torch.manual_seed(seed)  # the same samples for every target: the scorer's cache shares them
        if kind == "lime":
            from captum._utils.models.linear_model import SkLearnRidge
            explainer = Lime(scorer, interpretable_model=SkLearnRidge(alpha=1.0))
        else:
            explainer = KernelShap(scorer)
        return explainer.attribute(feats, baselines=floor, target=j, feature_mask=mask,
                                   n_samples=n_samples, perturbations_per_eval=16)

    return crop_normalise(_per_target(window, positions, attribute), window.n_valid)


def lime(window, positions, *, n_samples: int = 32, segment_frames: int = 5, seed: int = 0) -> np.ndarray:
    """LIME (captum ``Lime``, ridge surrogate) over segments of ``segment_frames`` encoder frames."""
    return _surrogate("lime", window, positions, n_samples=n_samples, segment_frames=segment_frames, seed=seed)


def kernelshap(window, positions, *, n_samples: int = 32, segment_frames: int = 5, seed: int = 0) -> np.ndarray:
    """KernelSHAP (captum ``KernelShap``) over segments of ``segment_frames`` encoder frames."""
    return _surrogate("shap", window, positions, n_samples=n_samples, segment_frames=segment_frames, seed=seed)


@torch.no_grad()
def spes_scores(window, positions, *, n_samples: int = 32, patch_frames: int = 5, patch_mels: int = 16,
                p_mask: float = 0.5, p_text: float = 0.5, n_text_samples: int | None = None, seed: int = 0,
                batch_size: int = 8):
    """SPES (Fucci et al. 2025): explanations of each token over the spectrogram and over the
    previously generated tokens, both RISE estimates E[p(y_t) | feature kept] - E[p(y_t)].

    Spectrogram: ``n_samples`` random masks silence each time-frequency patch (``patch_frames``
    encoder frames x ``patch_mels`` mel bins) with probability ``p_mask``, teacher-forced on the
    true prefix. Prefix: ``n_text_samples`` (default ``n_samples``) random masks drop each earlier
    text token (its input embedding zeroed) with probability ``p_text`` on the clean audio (one
    encoder pass for all of them); ``n_text_samples=0`` skips this part.

    Returns (frames (T, n_valid) positive patch saliency summed over frequency,
    prefix (T, n_ids) saliency of each earlier text token, NaN at and after t).
    """
    adapter = window.adapter
    feats = window.features
    n_mels, n_mel_frames = feats.shape[1], feats.shape[2]
    nv = window.n_valid
    n_t = (nv + patch_frames - 1) // patch_frames
    n_f = (n_mels + patch_mels - 1) // patch_mels
    rng = np.random.default_rng(seed)
    keep = rng.random((n_samples, n_f, n_t)) >= p_mask  # True = kept
    ids = list(window.ids[: max(positions) + 1])
    floor = feats.amin()
    probs = []
    for start in range(0, n_samples, batch_size):
        k = torch.from_numpy(keep[start:start + batch_size])
        # expand patches to (B, n_mels, n_mel_frames); frames past the real audio stay as they are
        kk = k.repeat_interleave(patch_mels, 1)[:, :n_mels].repeat_interleave(patch_frames * adapter.input_frames_per_frame, 2)
        full = torch.ones(len(k), n_mels, n_mel_frames, dtype=torch.bool)
        width = min(kk.shape[2], adapter.input_frames_per_frame * nv)
        full[:, :, :width] = kk[:, :, :width]
        x = torch.where(full.to(feats.device), feats.expand(len(k), -1, -1), floor)
        probs.append(adapter.score(x, window.prompt, ids)[:, positions].float().exp().cpu())
    probs = torch.cat(probs).numpy().astype(np.float64)  # (n_samples, T)
    frames = _rise(probs, keep.reshape(n_samples, -1)).clip(0, None).reshape(len(positions), n_f, n_t).sum(1)
    frames = np.repeat(frames, patch_frames, axis=1)[:, :nv]

    n_text = n_samples if n_text_samples is None else n_text_samples
    prefix = np.zeros((len(positions), len(ids)))  # (T, n_ids)
    if n_text:
        keep_text = rng.random((n_text, len(ids))) >= p_text
        text_probs = [adapter.score(feats, window.prompt, ids, keep_tokens=torch.from_numpy(keep_text[i:i + batch_size]))
                      [:, positions].float().exp().cpu() for i in range(0, n_text, batch_size)]
        prefix = _rise(torch.cat(text_probs).numpy().astype(np.float64), keep_text)
    for i, p in enumerate(positions):
        prefix[i, p:] = np.nan  # token p itself and later ones cannot influence y_p
    return frames, prefix


def _rise(probs: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """E[p | feature kept] - E[p] for every (target, feature): (N, T), (N, K) bool -> (T, K)."""
    kept = kept.astype(np.float64)
    n_kept = kept.sum(0)
    conditional = (probs.T @ kept) / np.where(n_kept > 0, n_kept, 1.0)
    return np.where(n_kept > 0, conditional - probs.mean(0)[:, None], 0.0)


def spes(window, positions, *, n_samples: int = 32, patch_frames: int = 5, patch_mels: int = 16,
         p_mask: float = 0.5, seed: int = 0, batch_size: int = 8) -> np.ndarray:
    """SPES's spectrogram explanation as a frame map; its explanation over the earlier tokens
    is ``spes_scores(...)[1]`` (not a map over frames)."""
    frames, _ = spes_scores(window, positions, n_samples=n_samples, patch_frames=patch_frames, patch_mels=patch_mels,
                            p_mask=p_mask, n_text_samples=0, seed=seed, batch_size=batch_size)
    return crop_normalise(frames, window.n_valid)


register(Method("occlusion", "Occlusion / SpecMask", occlusion, family="perturbation", cost="slow",
                requires=("captum",), params={"window_frames": 10, "stride_frames": 10},
                description="captum Occlusion: silence 200 ms time patches",
))
register(Method("lime", "LIME", lime, family="perturbation", cost="slow", requires=("captum", "sklearn"),
                params={"n_samples": 32, "segment_frames": 5, "seed": 0},
                description="captum Lime over 100 ms segments, ridge surrogate",
))
register(Method("kernelshap", "KernelSHAP", kernelshap, family="perturbation", cost="slow",
                requires=("captum", "sklearn"), params={"n_samples": 32, "segment_frames": 5, "seed": 0},
                description="captum KernelShap over 100 ms segments",
))
register(Method("spes", "SPES", spes, family="perturbation", cost="slow",
                params={"n_samples": 32, "patch_frames": 5, "patch_mels": 16, "p_mask": 0.5, "seed": 0,
                        "batch_size": 8},
                description="time-frequency patch perturbation (RISE estimate): SPES's spectrogram explanation; "
                            "its explanation over earlier tokens is methods.perturbation.spes_scores",
))
