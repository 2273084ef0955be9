"""A long recording kept in an anonymous temporary file instead of memory, read back slice by slice.

``load_audio`` writes recordings longer than ``audio.SPILL_AFTER_S`` here block by block, so memory does
not grow with the audio: decoding, maps and the widget read one window at a time. ``SpilledSamples``
behaves like a read-only 1-D float32 array for ``len``, ``shape``, ``[int]`` and ``[slice]`` (each slice
a fresh ndarray); ``np.asarray(samples)`` reads the whole recording for code that really needs it.
"""
from __future__ import annotations

import os
import tempfile
from typing import Iterable

import numpy as np

DTYPE = np.dtype(np.float32)
READ_BLOCK = 1 << 20  # samples read at a time by a stepped slice


class SpilledSamples:
    """Read-only float32 samples in a temporary file; reads use ``os.pread``, so threads never share a
    file position. The file is deleted by the system when this object is gone (it has no name)."""

    def __init__(self, file, n: int):
        self._file = file  # kept open: its descriptor is what is read
        self._fd = file.fileno()
        self._n = int(n)

    @property
    def shape(self) -> tuple[int]:
        return (self._n,)

    dtype, ndim = DTYPE, 1
    size = property(lambda self: self._n)
    nbytes = property(lambda self: self._n * DTYPE.itemsize)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"SpilledSamples({self._n} float32 samples in a temporary file)"

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self._slice(range(*key.indices(self._n)))
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key) + (self._n if key < 0 else 0)
            if not 0 <= i < self._n:
                raise IndexError(f"index {int(key)} is out of bounds for axis 0 with size {self._n}")
            return self._read(i, i + 1)[0]
        raise TypeError(f"spilled samples take an int or a slice, not {type(key).__name__}; "
                        "np.asarray(samples) reads the whole recording for other indexing")

    def __reduce__(self):  # another process cannot share the file: it gets the samples as an array
        return np.asarray, (self.__array__(),)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("spilled samples live in a file: an array of them is always a copy")
        whole = self._read(0, self._n)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _slice(self, r: range) -> np.ndarray:
        if r.step == 1:
            return self._read(r.start, r.stop) if len(r) else np.empty(0, DTYPE)
        forward = r if r.step > 0 else r[::-1]  # read in file order, in blocks, then turn around
        out, per_read = np.empty(len(r), DTYPE), max(1, READ_BLOCK // forward.step)
        for i in range(0, len(forward), per_read):
            part = forward[i: i + per_read]
            out[i: i + len(part)] = self._read(part.start, part[-1] + 1)[:: forward.step]
        return out if r.step > 0 else out[::-1].copy()

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``start:stop`` (within bounds) as a new writable array."""
        out = np.empty(max(stop - start, 0), DTYPE)
        view, offset, at = memoryview(out).cast("B"), start * DTYPE.itemsize, 0
        while at < len(view):
            got = os.preadv(self._fd, [view[at:]], offset + at)
            if got == 0:
                raise OSError(f"the temporary file of the recording ended at byte {offset + at} "
                              f"of {self._n * DTYPE.itemsize}")
            at += got
        return out


def spill(blocks: Iterable[np.ndarray]) -> SpilledSamples:
    """Write 1-D blocks, in order, as float32 into a new anonymous temporary file."""
    file = tempfile.TemporaryFile()
    n = 0
    try:
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=DTYPE)
            file.write(memoryview(block).cast("B"))
            n += block.size
        file.flush()
    except BaseException:
        file.close()
        raise
    return SpilledSamples(file, n)


def can_spill() -> bool:
    """Positional reads are what keep threads apart; a system without them keeps recordings in memory."""
    return hasattr(os, "preadv")
