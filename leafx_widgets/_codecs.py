"""Binary codecs for the widget, the Python half of ``js/src/codecs.js``.

Arrays cross to the browser as ``{view, dtype, shape}`` (a memoryview sent as a
binary buffer, an explicit numpy dtype name, and the shape) and never as JSON lists.
Audio travels as int16 PCM, the spectrogram as uint8 codes with their range.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np

from .spilled import SpilledSamples

PCM16_SCALE = 32768.0
PCM16_BLOCK = 1 << 20  # samples converted at a time


def encode_array(a: np.ndarray, dtype: str) -> dict:
    """``{view, dtype, shape}`` for ``a``; ``dtype`` must be what ``a`` already is."""
    a = np.asarray(a)
    if a.dtype != np.dtype(dtype):
        raise ValueError(f"expected a {dtype} array, got {a.dtype}")
    a = np.ascontiguousarray(a)
    return {"view": memoryview(a).cast("B"), "dtype": dtype, "shape": list(a.shape)}


def to_pcm16(audio, *, block: int = PCM16_BLOCK) -> np.ndarray:
    """float audio in [-1, 1] -> int16 PCM (clipped). shape = (n_samples,)

    Converted ``block`` samples at a time, so a long recording costs its int16 PCM and no float
    copy of the whole; ``audio`` may be spilled samples (``spilled.py``), read slice by slice."""
    if not isinstance(audio, SpilledSamples):
        audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"expected float audio, got {audio.dtype}")
    pcm = np.empty(len(audio), np.int16)
    for start in range(0, len(audio), block):
        part = np.nan_to_num(audio[start: start + block], nan=0.0)
        pcm[start: start + len(part)] = np.round(np.clip(part * PCM16_SCALE, -32768, 32767))
    return pcm


def quantize_uint8(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Linear uint8 codes over [min, max] of ``x``; decode as ``lo + code * (hi - lo) / 255``."""
    x = np.asarray(x, dtype=np.float32)
    finite = x[np.isfinite(x)]
    lo = float(finite.min()) if finite.size else 0.0
    hi = float(finite.max()) if finite.size else 1.0
    if hi <= lo:
        hi = lo + 1.0
    codes = np.round((np.nan_to_num(x, nan=lo) - lo) * (255.0 / (hi - lo)))
    return np.clip(codes, 0, 255).astype(np.uint8), lo, hi


def dequantize_uint8(codes: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo + codes.astype(np.float32) * ((hi - lo) / 255.0)).astype(np.float32)


def chunk_ranges(n_total: int, chunk: int) -> Iterator[tuple[int, int]]:
    """[start, stop) ranges that cover n_total items in pieces of at most ``chunk``."""
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    for start in range(0, n_total, chunk):
        yield start, min(start + chunk, n_total)


def minmax_peaks(pcm: np.ndarray, block: int) -> np.ndarray:
    """Waveform summary: (min, max) of each block of samples. shape = (n_blocks, 2), int16"""
    n_blocks = -(-pcm.size // block)
    padded = np.zeros(n_blocks * block, dtype=pcm.dtype)
    padded[: pcm.size] = pcm
    blocks = padded.reshape(n_blocks, block)
    if pcm.size % block:  # the padding must not stand in for real samples
        last = pcm[(n_blocks - 1) * block:]
        blocks[-1, last.size:] = last[-1]
    return np.ascontiguousarray(np.stack([blocks.min(axis=1), blocks.max(axis=1)], axis=1).astype(np.int16))


def float32_map(a: np.ndarray) -> np.ndarray:
    """A 1-D, C-contiguous float32 copy-or-view of an attribution map; rejects NaN/inf."""
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    if a.ndim != 1:
        raise ValueError(f"expected a map of shape (n_frames,), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("map holds NaN or infinite values")
    return a


def row_overview(map_: np.ndarray, start_frame: int, n_frames: int, n_bins: int) -> np.ndarray:
    """One overview row: the map's max per time bin over the whole audio, on a square-root
    scale (a sharp peak must not hide the rest), scaled to 0..255 at the row's peak."""
    row = np.zeros(n_bins, dtype=np.float32)
    if map_.size:
        frames = np.arange(start_frame, start_frame + map_.size)
        bins = np.clip(frames * n_bins // max(n_frames, 1), 0, n_bins - 1)
        np.maximum.at(row, bins, map_)
    row = np.sqrt(np.maximum(row, 0))
    peak = row.max()
    if peak > 0:
        row *= 255.0 / peak
    return np.round(row).astype(np.uint8)


def b64(a: np.ndarray) -> str:
    """base64 of the array's bytes (only for data embedded in a standalone HTML file)."""
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")
