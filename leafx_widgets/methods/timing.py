"""Whisper's own word timing (openai-whisper ``timing.find_alignment``) as a reference map."""
from __future__ import annotations

import numpy as np
import torch

from ._common import crop_normalise, raw_attention
from .registry import Method, register


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over the last axis with reflect padding (openai-whisper's ``median_filter``)."""
    if width <= 1:
        return x
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost monotonic path through ``cost`` (N, M), openai-whisper's ``dtw_cpu``.
    Returns (text_indices, time_indices) along the path."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = -np.ones((n + 1, m + 1), dtype=np.int8)
    acc[0, 0] = 0
    for j in range(1, m + 1):
        for i in range(1, n + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 < c1 and c0 < c2:
                c, t = c0, 0
            elif c1 < c0 and c1 < c2:
                c, t = c1, 1
            else:
                c, t = c2, 2
            acc[i, j] = cost[i - 1, j - 1] + c
            trace[i, j] = t
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j = n, m
    text, time = [], []
    while i > 0 or j > 0:
        text.append(i - 1)
        time.append(j - 1)
        t = trace[i, j]
        if t == 0:
            i, j = i - 1, j - 1
        elif t == 1:
            i -= 1
        else:
            j -= 1
    return np.array(text[::-1]), np.array(time[::-1])


def whisper_dtw(window, positions, *, medfilt_width: int = 7, **params) -> np.ndarray:
    """Whisper's own word timing (openai-whisper ``timing.find_alignment``) as a map.

    The alignment heads' cross-attention over the real frames (softmax restricted to them),
    z-scored over the token axis, median-filtered over time, averaged over heads; DTW on its
    negative gives each token a run of frames. The map is uniform over the token's frames.
    """
    adapter = window.adapter
    cross, _ = raw_attention(window)
    heads = adapter.timing_heads
    nv = window.n_valid
    w = torch.stack([cross[l, h, :, :nv] for l, h in heads])  # (K, P, nv)
    w = w / w.sum(-1, keepdim=True)
    std, mean = torch.std_mean(w, dim=-2, keepdim=True, unbiased=False)
    w = ((w - mean) / (std + 1e-10)).numpy()
    w = median_filter(w, medfilt_width)
    matrix = w.mean(0)
    rows = window.adapter.query_rows(window.prompt, range(len(window.ids) + 1))  # each text token, then <|eot|>
    matrix = matrix[rows[0]:rows[-1] + 1]
    text_idx, time_idx = dtw(-matrix.astype(np.float64))
    maps = np.zeros((len(positions), nv))
    for k, p in enumerate(positions):
        frames = time_idx[text_idx == p]
        if frames.size == 0:  # cannot happen on a full DTW path; keep a defined output anyway
            frames = np.array([int(np.argmax(matrix[p]))])
        maps[k, frames] = 1.0
    return crop_normalise(maps, nv)


register(Method("whisper_dtw", "Whisper DTW timing", whisper_dtw, family="reference", params={"medfilt_width": 7},
                description="openai-whisper alignment heads + median filter + DTW; uniform over the token's frames",
                needs=("dtw_timing",)))
