"""Decoding windows, and the few whose model inputs are kept in memory.

A ``Window`` is one stretch of ``window_samples`` the model decoded, starting at any encoder
frame (long-form decoding seeks to the end of the last complete segment). The methods read its
``features`` and ``encoded`` (encoder output) and keep intermediate results in its ``cache``.
Those are large (MBs per window, hundreds for a large model), so a ``WindowStore`` keeps them
for the ``size`` most recently used windows only and recomputes them from the audio for the
others: memory stays flat however long the recording.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

DEFAULT_KEPT_WINDOWS = 4  # windows whose features, encoder output and method cache stay in memory
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value


def keep_heap_flat() -> None:
    """Stop glibc from raising its mmap threshold (from 128 KB towards 32 MB) each time a large block
    is freed: it then serves a window's tensor buffers from its heap, which fragments, and the process
    grew by about 7 MB per window (1.2 GB per hour of audio with tiny.en) although nothing was kept.
    Fixing the threshold at its initial value returns every large buffer to the system when freed.
    A no-op without glibc (macOS, musl), and once per process."""
    global _HEAP_SET
    if _HEAP_SET:
        return
    _HEAP_SET = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


_HEAP_SET = False


@dataclass
class Heavy:
    features: torch.Tensor  # (1, n_mels, T) the model input
    encoded: torch.Tensor  # (1, S, d) encoder output
    cache: dict = field(default_factory=dict)  # methods' intermediate results (leafx.py)


class WindowStore:
    """Model inputs of the ``size`` most recently used windows of one recording, recomputed on demand."""

    def __init__(self, samples: np.ndarray, size: int = DEFAULT_KEPT_WINDOWS):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"kept_windows must be a whole number >= 1, got {size!r}")
        keep_heap_flat()
        self.samples = samples
        self.size = size
        self._entries: OrderedDict[int, Heavy] = OrderedDict()
        self._lock = threading.RLock()  # the widget's worker and the kernel may both ask
        self.recomputed = 0  # windows whose inputs were computed again after eviction (benchmarks)

    def chunk(self, window: "Window") -> np.ndarray:
        return self.samples[window.offset_samples: window.offset_samples + window.adapter.window_samples]

    def get(self, window: "Window") -> Heavy:
        with self._lock:
            entry = self._entries.get(window.index)
            if entry is not None:
                self._entries.move_to_end(window.index)
                return entry
            self.recomputed += 1
            adapter = window.adapter
            features = adapter.features(self.chunk(window))
            with torch.no_grad():
                encoded = adapter.encode(features)
            return self.put(window.index, Heavy(features, encoded))

    def put(self, index: int, entry: Heavy) -> Heavy:
        with self._lock:
            self._entries[index] = entry
            self._entries.move_to_end(index)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
            return entry

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(eq=False)
class Window:
    """One decoding window and what was decoded in it.

    ``ids`` is the decoded continuation the methods teacher-force after ``prompt``: text tokens
    and, in long-form decoding, the timestamp tokens between them (never explained);
    ``text_positions[i]`` is where the window's i-th text token (global index ``tokens[i]``)
    sits in ``ids``.
    """

    index: int
    adapter: object
    offset_frames: int  # first encoder frame of the window in the whole audio
    offset_samples: int
    n_valid: int  # frames of real audio in this window
    prompt: list[int]
    ids: list[int]
    logprobs: list[float]
    store: WindowStore | None = field(default=None, repr=False)  # None: silent, never encoded
    text_positions: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # global token indices, in order
    temperature: float = 0.0  # > 0: decoded under a fallback (sampling at this temperature)
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None

    @property
    def decoded(self) -> bool:
        """False for a silent window, skipped without running the model."""
        return self.store is not None

    @property
    def features(self) -> torch.Tensor | None:
        return self.store.get(self).features if self.store is not None else None

    @property
    def encoded(self) -> torch.Tensor | None:
        return self.store.get(self).encoded if self.store is not None else None

    @property
    def cache(self) -> dict:
        return self.store.get(self).cache if self.store is not None else {}

    def position(self, token_index: int) -> int:
        """Where global token ``token_index`` sits in ``ids``."""
        return self.text_positions[self.tokens.index(token_index)]
