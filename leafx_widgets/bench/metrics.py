"""LEAF-XBench metrics (METHOD.md, Appendix D), pure numpy on frame maps.

Conventions, used everywhere in the benchmark:

* A *map* ``r`` is a non-negative float array over the valid (non-padding)
  encoder frames of one window, summing to 1. Frame ``s`` covers
  ``[s * frame_s, (s + 1) * frame_s)`` seconds of the window.
* A reference *span* is ``(start_s, end_s)`` in window seconds and becomes the
  half-open frame range ``[floor(start / frame_s), ceil(end / frame_s))``.
* Masking (D-AOPC, insertion, INF) is done by the runner: the two log-Mel frames
  of each masked encoder frame are replaced by the log-Mel of silence. The
  functions here only choose *which* frames and summarise the curves.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DELETION_LEVELS = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50)


def as_map(values: np.ndarray) -> np.ndarray:
    """Non-negative, sum-1 copy of ``values``; uniform when nothing is positive."""
    r = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, None)
    total = r.sum()
    if total <= 0:
        return np.full(r.shape, 1.0 / max(r.size, 1))
    return r / total


def span_frames(span: tuple[float, float], frame_s: float, n_frames: int) -> tuple[int, int]:
    """Half-open encoder-frame range ``[a, b)`` covering ``span`` seconds, clipped to the map."""
    start, end = span
    if end < start:
        raise ValueError(f"span end {end} before start {start}")
    a = int(math.floor(start / frame_s + 1e-9))
    b = int(math.ceil(end / frame_s - 1e-9))
    b = max(b, a + 1)
    return max(0, min(a, n_frames)), max(0, min(b, n_frames))


def pointing_game(r: np.ndarray, span: tuple[float, float], frame_s: float, *, tol_s: float = 0.02) -> float:
    """1.0 when the argmax frame overlaps the span widened by ``tol_s`` on each side."""
    s = int(np.argmax(r))
    frame_start, frame_end = s * frame_s, (s + 1) * frame_s
    return float(frame_end > span[0] - tol_s - 1e-9 and frame_start < span[1] + tol_s + 1e-9)


def topk_iou(r: np.ndarray, span: tuple[float, float], frame_s: float) -> float:
    """IoU between the top-k frames (k = span length in frames) and the span's frames."""
    a, b = span_frames(span, frame_s, len(r))
    k = b - a
    if k <= 0:
        return 0.0
    top = np.argsort(-r, kind="stable")[:k]
    inter = int(np.sum((top >= a) & (top < b)))
    return inter / (2 * k - inter)


def mass_in_span(r: np.ndarray, span: tuple[float, float], frame_s: float) -> float:
    """Share of the map's mass inside the span's frames."""
    a, b = span_frames(span, frame_s, len(r))
    total = float(np.sum(r))
    return float(np.sum(r[a:b]) / total) if total > 0 else 0.0


def sparsity(r: np.ndarray, *, top_frac: float = 0.10) -> float:
    """SPR: share of mass in the top ``top_frac`` of frames (at least one frame)."""
    k = max(1, int(math.ceil(top_frac * len(r) - 1e-9)))
    total = float(np.sum(r))
    if total <= 0:
        return 0.0
    return float(np.sort(r)[::-1][:k].sum() / total)


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) with ties sharing their mean rank, like scipy's default."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.linalg.norm(ra) * np.linalg.norm(rb)
    return float(np.dot(ra, rb) / den) if den > 0 else 0.0


def shift_back(r: np.ndarray, shift_frames: int, n_frames: int) -> np.ndarray:
    """Map of a clip delayed by ``shift_frames`` frames, moved back onto the clean clip's
    ``n_frames`` valid frames (frames shifted in from outside get zero)."""
    out = np.zeros(n_frames, dtype=np.float64)
    src = r[shift_frames:shift_frames + n_frames]
    out[:len(src)] = src
    return out


def topk_frames(r: np.ndarray, frac: float) -> np.ndarray:
    """Indices of the top ``round(frac * n)`` frames (ties broken by position)."""
    k = int(round(frac * len(r)))
    return np.argsort(-r, kind="stable")[:k]


def aopc(ratios: np.ndarray) -> float:
    """Mean of a perturbation curve (ratios p(masked) / p(clean) at each level)."""
    return float(np.mean(ratios))


@dataclass
class Interval:
    low: float
    high: float


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean (resampling the given per-word values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return Interval(float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    return Interval(float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2)))


@dataclass
class PairedDifference:
    mean: float   # mean of a - b over the pairs
    low: float
    high: float
    n: int        # pairs with both values finite


def paired_difference(a, b, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> PairedDifference:
    """Mean of ``a - b`` over aligned pairs and its percentile bootstrap interval.

    ``a[i]`` and ``b[i]`` belong to the same unit (token); pairs where either is NaN/inf
    are dropped. Resampling pairs with replacement and averaging their differences is
    resampling the differences, so the interval is ``bootstrap_ci`` of ``a - b``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    d = a - b
    d = d[np.isfinite(a) & np.isfinite(b)]
    ci = bootstrap_ci(d, n_boot=n_boot, alpha=alpha, seed=seed)
    return PairedDifference(float(d.mean()) if len(d) else float("nan"), ci.low, ci.high, int(len(d)))


def paired_verdict(diff: PairedDifference, higher_is_better: bool, *, min_n: int = 1) -> str:
    """"win" when the interval of (reference - other) excludes 0 on the good side, "loss" on
    the bad side, else "tie" (also when fewer than ``min_n`` pairs or no interval)."""
    if diff.n < min_n or not (math.isfinite(diff.low) and math.isfinite(diff.high)):
        return "tie"
    if diff.low > 0:
        return "win" if higher_is_better else "loss"
    if diff.high < 0:
        return "loss" if higher_is_better else "win"
    return "tie"


def infidelity_optimal(attr: np.ndarray, masks: np.ndarray, drops: np.ndarray) -> float:
    """Yeh et al. 2019 infidelity with the optimal scaling of ``attr``.

    ``masks``: (n_samples, n_frames) 0/1, 1 = frame masked (the perturbation I);
    ``drops``: (n_samples,) f(x) - f(x with I masked). Returns
    ``mean((beta * I.a - drop)^2)`` with ``beta = mean(I.a * drop) / mean((I.a)^2)``,
    the same quantity as ``captum.metrics.infidelity(..., normalize=True)``.
    """
    ia = masks.astype(np.float64) @ np.asarray(attr, dtype=np.float64)
    drops = np.asarray(drops, dtype=np.float64)
    den = float(np.mean(ia * ia))
    beta = float(np.mean(ia * drops)) / den if den > 0 else 0.0
    return float(np.mean((beta * ia - drops) ** 2))


def minmax(values: dict[str, float]) -> dict[str, float]:
    """Min-max normalise one metric across methods (NaN stays NaN; all-equal -> 0)."""
    finite = [v for v in values.values() if np.isfinite(v)]
    if not finite:
        return {k: float("nan") for k in values}
    lo, hi = min(finite), max(finite)
    return {k: (float((v - lo) / (hi - lo)) if hi > lo else 0.0) if np.isfinite(v) else float("nan")
            for k, v in values.items()}
