"""LEAF-XBench metrics (METHOD.md, Appendix D), pure numpy on frame maps.

Conventions, used everywhere in the benchmark:

* A *map* ``r`` is a non-negative float array over the valid (non-padding)
  encoder frames of one window, summing to 1. Frame ``s`` covers
  ``[s * frame_s, (s + 1) * frame_s)`` seconds of the window.
* A reference *span* is ``(start_s, end_s)`` in window seconds and becomes the
  half-open frame range ``[floor(start / frame_s), ceil(end / frame_s))``.
* Masking (D-AOPC, insertion, INF): the model adapter's ``mask_frames`` sets the
  input columns of each masked frame to silence (``MaskedScorer.masked``); the
  functions here only choose *which* frames (``deletion_masks``, shared with
  ``figures.faithfulness_curves``) and summarise the curves.

The bench's metrics are registered in ``METRICS`` (``Metric``: name, compute, direction,
needs, label); the runner evaluates every registered metric that the run enables and the
report reads labels and directions from the same registry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

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


POINTING_TOL_S = 0.02  # the pointing game's tolerance around the word span, in seconds (a metric setting)


def pointing_game(r: np.ndarray, span: tuple[float, float], frame_s: float, *, tol_s: float = POINTING_TOL_S) -> float:
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


def deletion_masks(r: np.ndarray, levels, n: int | None = None) -> np.ndarray:
    """(len(levels), n) bool: the top ``level`` fraction of the frames of ``r`` (True = masked) per
    level, the deletion perturbations; their complements are insertion's. ``n``: mask width
    (default ``len(r)``)."""
    out = np.zeros((len(levels), len(r) if n is None else n), bool)
    for i, level in enumerate(levels):
        out[i, topk_frames(r, level)] = True
    return out


def ratio_curves(lp0, del_lp, empty, ins_lp) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves p(masked) / p(clean), level 0 first: deletion starts at 1
    (nothing masked), insertion at p(everything masked) / p(clean)."""
    dele = np.concatenate([[1.0], np.exp(del_lp - lp0)])
    ins = np.concatenate([[np.exp(empty - lp0)], np.exp(ins_lp - lp0)])
    return dele, ins


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


def infidelity_captum(attr: np.ndarray, masks: np.ndarray, f_clean: float, f_masked: np.ndarray) -> float:
    """captum.metrics.infidelity on the frame-presence input z = 1 (x) with perturbation I = mask
    (x - I = the masked input); the forward is answered from the already computed log-probs."""
    import torch
    from captum.metrics import infidelity

    table = {masks[i].astype(np.float32).tobytes(): float(f_masked[i]) for i in range(len(masks))}
    ones = np.ones(masks.shape[1], np.float32)

    def forward(z):
        out = []
        for row in z.detach().cpu().numpy().astype(np.float32):
            if np.array_equal(row, ones):
                out.append(f_clean)
            else:
                out.append(table[(1.0 - row).astype(np.float32).tobytes()])
        return torch.tensor(out, dtype=torch.float64)

    def perturb(inputs):
        m = torch.from_numpy(masks.astype(np.float32))[: len(inputs)]
        return m, inputs - m

    value = infidelity(forward, perturb, torch.ones(1, masks.shape[1]), torch.from_numpy(attr[None].astype(np.float32)),
                       n_perturb_samples=len(masks), normalize=True)
    return float(value.item())


# ----------------------------------------------------------------------------- the registry

DIRECTIONS = ("higher", "lower")
# what a metric may need, prepared once per clip by the runner:
NEEDS = {
    "spans": "the reference word span of the token",
    "model_passes": "the window's masked scorer: clean log-probs, masked log-probs, INF's random masks",
    "faith_tokens": "only the faithfulness tokens (faith_per_clip) of the faithfulness methods",
    "perturbed_decodes": "maps of the same token on STAB's perturbed clips (settings.stab)",
}


@dataclass(frozen=True)
class Column:
    """One record key a metric writes and the report shows."""
    key: str
    label: str
    direction: str  # "higher" | "lower": which side is better
    table: bool = True  # a column of the report's raw table (False: head-to-head only)

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"


@dataclass(frozen=True)
class Metric:
    """A bench metric: ``compute(TokenInput) -> {record key: value}`` for one token's map.

    ``name``/``label``/``direction`` describe the main record key (``name``); ``extra`` lists the
    further keys it writes that the report shows. ``needs``: keys of ``NEEDS``."""
    name: str
    compute: Callable[["TokenInput"], dict]
    direction: str
    needs: frozenset = frozenset()
    label: str = ""
    extra: tuple = ()
    table: bool = True

    def __post_init__(self):
        unknown = set(self.needs) - set(NEEDS)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be 'higher' or 'lower', got {self.direction!r}")
        if unknown:
            raise ValueError(f"metric {self.name!r} needs unknown {sorted(unknown)}; known: {sorted(NEEDS)}")

    @property
    def columns(self) -> tuple[Column, ...]:
        return (Column(self.name, self.label or self.name, self.direction, self.table), *self.extra)


@dataclass
class TokenInput:
    """What a metric sees for one (method, token): the map and what its needs prepared."""
    r: np.ndarray  # the map over the window's valid frames, sum 1
    span: tuple[float, float]  # reference span, window seconds
    frame_s: float
    settings: object  # runner.Settings
    runtime_s: float = float("nan")  # seconds per map of this method on this clip
    clean_logp: float = float("nan")  # log p(token | clean input)
    masked_logp: Callable | None = None  # (B, n_valid) bool masks -> (B,) log p of the token
    inf: tuple | None = None  # (masks, log p under each) of INF's random perturbations
    perturbed: dict | None = None  # {kind: (map or None, frames shifted)}; None: no STAB here
    n_valid: int | None = None  # mask width (the window's valid frames)


def _faithfulness(inp: TokenInput) -> dict:
    levels = inp.settings.levels
    dm = deletion_masks(inp.r, levels, inp.n_valid)
    lp = inp.masked_logp(np.concatenate([dm, ~dm, np.ones((1, dm.shape[1]), bool)]))
    lp0 = inp.clean_logp
    del_lp, ins_lp = lp[: len(levels)], lp[len(levels):-1]
    del_ratio, ins_ratio = ratio_curves(lp0, del_lp, float(lp[-1]), ins_lp)
    return {"daopc": aopc(del_ratio), "del_curve": del_ratio.tolist(), "del_logp_drop": (lp0 - del_lp).tolist(),
            "mean_logp_drop": float(np.mean(lp0 - del_lp)), "ins_auc": aopc(ins_ratio),
            "ins_curve": ins_ratio.tolist()}


def _infidelity(inp: TokenInput) -> dict:
    masks, lp_masked = inp.inf
    return {"inf": infidelity_captum(inp.r, masks, inp.clean_logp, lp_masked)}


def _stability(inp: TokenInput) -> dict:
    if inp.perturbed is None:
        return {}
    out, cos = {}, []
    clean = inp.r
    for kind, (pr, shift_frames) in inp.perturbed.items():
        if pr is None:  # decoded differently: no pair
            continue
        moved = shift_back(pr, shift_frames, len(clean)) if shift_frames else pr[: len(clean)]
        if len(moved) < len(clean):
            moved = np.pad(moved, (0, len(clean) - len(moved)))
        out[f"stab_{kind}_cos"] = cosine(clean, moved)
        out[f"stab_{kind}_spearman"] = spearman(clean, moved)
        cos.append(out[f"stab_{kind}_cos"])
    out["stab"] = float(np.mean(cos)) if cos else float("nan")
    return out


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to the bench (evaluated by the runner, shown by the report)."""
    keys = {c.key for m in METRICS.values() for c in m.columns}
    clash = keys & {c.key for c in metric.columns}
    if metric.name in METRICS or clash:
        raise ValueError(f"metric {metric.name!r} is already registered (or writes {sorted(clash)})")
    METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    if name not in METRICS:
        raise ValueError(f"no bench metric {name!r}; registered: {', '.join(METRICS)}")
    del METRICS[name]


def columns() -> list[Column]:
    """Every reported record key of the registered metrics, in registry order."""
    return [c for m in METRICS.values() for c in m.columns]


def column(key: str) -> Column:
    for c in columns():
        if c.key == key:
            return c
    raise ValueError(f"no bench metric writes {key!r}")


_SPAN = frozenset({"spans"})
for _m in (
    Metric("pointing", lambda i: {"pointing": pointing_game(i.r, i.span, i.frame_s)}, "higher", _SPAN, "PG"),
    Metric("iou", lambda i: {"iou": topk_iou(i.r, i.span, i.frame_s)}, "higher", _SPAN, "IoU"),
    Metric("mass", lambda i: {"mass": mass_in_span(i.r, i.span, i.frame_s)}, "higher", _SPAN, "Mass"),
    Metric("spr", lambda i: {"spr": sparsity(i.r)}, "higher", frozenset(), "SPR"),
    Metric("daopc", _faithfulness, "lower", frozenset({"model_passes", "faith_tokens"}), "D-AOPC",
           extra=(Column("mean_logp_drop", "Δlogp del", "higher"), Column("ins_auc", "Ins AUC", "higher"))),
    Metric("inf", _infidelity, "lower", frozenset({"model_passes"}), "INF"),
    Metric("stab", _stability, "higher", frozenset({"perturbed_decodes"}), "STAB cos",
           extra=(Column("stab_noise_spearman", "STAB ρ noise", "higher"),
                  Column("stab_shift_spearman", "STAB ρ shift", "higher"),
                  Column("stab_noise_cos", "STAB cos noise", "higher", table=False),
                  Column("stab_shift_cos", "STAB cos shift", "higher", table=False))),
    Metric("runtime_s", lambda i: {"runtime_s": i.runtime_s}, "lower", frozenset(), "s/token"),
):
    register_metric(_m)
