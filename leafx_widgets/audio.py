"""Load and check audio: a path or an array in, 16 kHz mono float32 out, or a clear error.

Everything is read in blocks: the header (or the array's shape) is checked first, a first pass
counts the frames that are really there and looks for NaN, clipping and silence without keeping
anything, and only then is the mono signal built, block by block, and resampled. A file longer than
``SPILL_AFTER_S`` is built into an anonymous temporary file instead of memory (``spilled.py``), its
resampling streamed too: an hour of audio then costs no more memory than a minute.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .spilled import SpilledSamples, can_spill, spill

TARGET_RATE = 16000
MIN_DURATION_S = 0.1
DEFAULT_MAX_DURATION_S = 3 * 3600.0  # a guard against mistaken inputs; pass max_duration_s=None to lift it
MAX_VALUES_PER_S = 2 * 48000  # a file holds at most max_duration_s of 48 kHz stereo (frames x channels)
SILENCE_PEAK = 1e-4  # below this peak amplitude nothing is audible and Whisper only hallucinates
MAX_CHANNELS = 16
MIN_RATE, MAX_RATE = 1000, 384000
BLOCK_FRAMES = 1 << 16  # frames decoded at a time
SPILL_AFTER_S = 300.0  # files longer than this are kept in a temporary file, not in memory
RESAMPLE_QUALITY = "HQ"  # soxr's; librosa.resample's default res_type "soxr_hq" is the same filter
# writers that stream (ffmpeg 0xFFFFFFFF, sox 0x7FFFFFFF, espeak-ng --stdout 0x7FFFF000) cannot know the
# length and write a data size near 2 or 4 GiB: such a WAV is read to its end, not called truncated
STREAMING_DATA_SIZE = 0x7FFF0000


class AudioError(ValueError):
    """The audio cannot be explained; the message says why."""


@dataclass
class Audio:
    samples: np.ndarray | SpilledSamples  # (n,) float32 mono at ``sample_rate``; spilled when read from a long file
    sample_rate: int
    path: str | None = None
    original_rate: int | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class _Source:
    """What the header (or the array's shape) promises, and how to read it block by block."""

    name: str
    rate: int
    channels: int
    frames: int  # frames the header promises
    blocks: Callable[[], Iterator[np.ndarray]]  # (n, channels) float64 in [-1, 1]-ish, in order
    present: int | None = None  # frames really in the file, when the header alone tells (WAV)
    spillable: bool = False  # a file (or audio spilled before), not an array the user holds anyway


def load_audio(source, sample_rate: int | None = None, *, target_rate: int = TARGET_RATE,
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S, allow_truncated: bool = False) -> Audio:
    """Read ``source`` (a path to wav/flac/mp3/ogg, an ``Audio``, or an array with ``sample_rate``).

    Mixes channels to mono, resamples to ``target_rate`` and rejects empty, silent,
    non-finite, truncated, too long or otherwise absurd input with an ``AudioError``.
    ``allow_truncated=True`` reads what a truncated file holds, with a warning saying how much is missing.
    """
    if isinstance(source, Audio) and isinstance(source.samples, SpilledSamples) and source.sample_rate == target_rate:
        # loaded (and checked) before, in a temporary file: reading it again would only copy the file
        _check_header(_array_source(source.samples, source.sample_rate, source.path), max_duration_s)
        return source
    if isinstance(source, Audio):
        src, path = _array_source(source.samples, source.sample_rate, source.path), source.path
    elif isinstance(source, (str, Path)):
        src, path = _file_source(Path(source), max_duration_s), str(source)
        if sample_rate is not None and sample_rate != src.rate:
            raise AudioError(f"{path} is recorded at {src.rate} Hz; do not pass sample_rate={sample_rate} for a file")
    else:
        if sample_rate is None:
            raise AudioError("an audio array needs its sample_rate, e.g. explain(model, samples, sample_rate=16000)")
        src, path = _array_source(source, sample_rate, None), None
    _check_header(src, max_duration_s)
    frames = _scan(src, allow_truncated)
    mono = _mixdown(src, frames)
    if src.spillable and frames / src.rate > SPILL_AFTER_S and can_spill():
        samples = spill(_resample_stream(mono, src.rate, target_rate, frames))
    else:
        samples = _gather(mono, frames)
        if src.rate != target_rate:
            import librosa

            samples = librosa.resample(samples, orig_sr=src.rate, target_sr=target_rate).astype(np.float32)
        samples = np.ascontiguousarray(samples)
    return Audio(samples=samples, sample_rate=target_rate, path=path, original_rate=src.rate)


# -- sources ------------------------------------------------------------------------------------------
def _plausible_rate(rate, name: str) -> int:
    number = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, (bool, np.bool_))
    if not (number and MIN_RATE <= rate <= MAX_RATE and float(rate).is_integer()):  # NaN fails the range test
        raise AudioError(f"sample rate {rate!r} of {name} is not a plausible audio rate "
                         f"(a whole number of Hz, {MIN_RATE}..{MAX_RATE})")
    return int(rate)


def _to_unit(block: np.ndarray) -> np.ndarray:
    """Samples of any numeric dtype as float64 around 0: integer PCM scaled, unsigned PCM centred."""
    if block.dtype.kind == "f":
        return block.astype(np.float64, copy=False)
    half = float(2 ** (8 * block.dtype.itemsize - 1))
    if block.dtype.kind == "u":  # unsigned PCM (8-bit WAV, uint8 arrays) has its zero at mid-range
        return (block.astype(np.float64) - half) / half
    return block.astype(np.float64) / half


def _array_source(source, rate, name) -> _Source:
    name = name or "the audio array"
    spilled = isinstance(source, SpilledSamples)  # an Audio loaded before: read back block by block
    try:
        arr = source if spilled else np.asarray(source)
    except Exception as err:
        raise AudioError(f"audio must be an array of samples, got {type(source).__name__}: {err}") from None
    if arr.dtype.kind not in "iuf":
        raise AudioError(f"audio samples must be numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise AudioError(f"{name} holds no samples")
    if arr.ndim == 1:
        arr = arr if spilled else arr[:, None]
    elif arr.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (channels), got shape {arr.shape}")
    elif arr.shape[0] < arr.shape[1]:  # accept (samples, channels) and (channels, samples): channels is the short side
        arr = arr.T
    rate = _plausible_rate(rate, name)

    def blocks():
        for start in range(0, arr.shape[0], BLOCK_FRAMES):
            block = arr[start : start + BLOCK_FRAMES]
            yield _to_unit(block if block.ndim == 2 else block[:, None])

    return _Source(name=name, rate=rate, channels=arr.shape[1] if arr.ndim == 2 else 1, frames=arr.shape[0],
                   blocks=blocks, spillable=spilled)


def check_path(path: Path) -> None:
    """The checks before any reader opens ``path``: it exists, is not a folder, is not empty."""
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")


def _file_source(path: Path, max_duration_s: float | None) -> _Source:
    check_path(path)
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as sf_err:
        return _fallback_source(path, max_duration_s, sf_err)
    name = str(path)
    rate = _plausible_rate(info.samplerate, name)

    def blocks():
        yield from soundfile.blocks(str(path), blocksize=BLOCK_FRAMES, dtype="float64", always_2d=True)

    frames, present = int(info.frames), None
    claimed = _wav_claimed_frames(path)
    if claimed is not None and claimed > frames:  # libsndfile quietly reads a short data chunk
        frames, present = claimed, int(info.frames)
    return _Source(name=name, rate=rate, channels=int(info.channels), frames=frames, blocks=blocks, present=present,
                   spillable=True)


def _wav_claimed_frames(path: Path) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header promises (None: not a WAV, or a streaming header)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"fmt ":
                fmt = f.read(min(size, 16))
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                f.seek(size - len(fmt) + (size & 1), 1)
            elif kind == b"data":
                if not block_align or size == 0 or size >= STREAMING_DATA_SIZE:  # a length left open
                    return None
                return size // block_align
            else:
                f.seek(size + (size & 1), 1)


def _fallback_source(path: Path, max_duration_s, sf_err) -> _Source:
    """Formats soundfile lacks go through librosa (audioread/ffmpeg); the duration is still checked first."""
    import librosa

    unreadable = AudioError(f"could not read {path} as audio (wav, flac, mp3 or ogg expected): {sf_err}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            duration = librosa.get_duration(path=str(path))
            if max_duration_s is not None and duration > max_duration_s:
                raise AudioError(f"{path} lasts {duration / 3600:.1f} h, over the limit of "
                                 f"{max_duration_s / 3600:.1f} h; cut it, or pass max_duration_s=None if you mean it")
            samples, rate = librosa.load(str(path), sr=None, mono=False)  # this path cannot stream
    except AudioError:
        raise
    except Exception:
        raise unreadable from None
    src = _array_source(np.atleast_2d(samples), rate, str(path))
    src.spillable = True  # the decoded array is dropped once the recording is built
    return src


# -- checks ---------------------------------------------------------------------------------------------
def _check_header(src: _Source, max_duration_s: float | None) -> None:
    """Everything the header promises, before a single sample is decoded."""
    name, frames = src.name, src.present if src.present is not None else src.frames
    if not 1 <= src.channels <= MAX_CHANNELS:
        raise AudioError(f"{name} has {src.channels} channels; 1 to {MAX_CHANNELS} are mixed to mono")
    if frames == 0:
        raise AudioError(f"{name} holds no samples")
    duration = frames / src.rate
    if duration < MIN_DURATION_S:
        if src.present is not None and src.present < src.frames:  # say why: a cut-off download, a crashed writer
            raise AudioError(f"{name} is truncated: its header promises {src.frames / src.rate:.2f} s but only "
                             f"{duration * 1000:.0f} ms are there, under the {MIN_DURATION_S * 1000:.0f} ms needed")
        raise AudioError(f"{name} lasts {duration * 1000:.0f} ms; at least {MIN_DURATION_S * 1000:.0f} ms are needed")
    if max_duration_s is None:
        return
    if duration > max_duration_s:
        raise AudioError(f"{name} lasts {duration / 3600:.1f} h, over the limit of {max_duration_s / 3600:.1f} h; "
                         "cut it, or pass max_duration_s=None if you mean it")
    budget = max_duration_s * MAX_VALUES_PER_S
    if frames * src.channels > budget:
        raise AudioError(f"{name} holds {frames * src.channels:.2e} samples ({duration / 3600:.1f} h x "
                         f"{src.channels} channels at {src.rate} Hz), over the {budget:.2e} read at most "
                         f"({max_duration_s / 3600:.1f} h of 48 kHz stereo); pass max_duration_s=None if you mean it")


def _scan(src: _Source, allow_truncated: bool) -> int:
    """First pass, nothing kept: the frames really there, NaN, clipping and silence. Returns the frames to read."""
    name, count, peak, bad, error = src.name, 0, 0.0, 0, None
    try:
        for block in src.blocks():
            block = block[: src.frames - count]
            if block.size:
                lo, hi = float(block.min()), float(block.max())  # NaN and inf show up here: one cheap pass
                if not math.isfinite(lo - hi):
                    finite = np.isfinite(block)
                    bad += int(block.size - np.count_nonzero(finite))
                    lo, hi = (float(block[finite].min()), float(block[finite].max())) if finite.any() else (0, 0)
                peak = max(peak, -lo, hi)
            count += len(block)
            if count >= src.frames:
                break
    except Exception as err:  # a decoder that loses its way mid-file: what came before is all there is
        error = err
    if count < src.frames:
        _truncated(src, count, error, allow_truncated)
    if bad:
        raise AudioError(f"{name} contains {bad} NaN or infinite samples")
    if count / src.rate < MIN_DURATION_S:
        raise AudioError(f"{name} lasts {count / src.rate * 1000:.0f} ms; at least {MIN_DURATION_S * 1000:.0f} ms "
                         "are needed")
    if peak > 1.5:
        raise AudioError(f"{name} peaks at {peak:.1f}; float samples must lie in [-1, 1] "
                         "(integer PCM given as floats? divide by 32768)")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name} is silent (peak amplitude {peak:.1e}); there is no speech to explain")
    return count


def _truncated(src: _Source, count: int, error, allow_truncated: bool) -> None:
    promised, there = src.frames / src.rate, count / src.rate
    if error is None:
        what = (f"{src.name} is truncated: its header promises {promised:.2f} s but only {there:.2f} s "
                f"are there ({promised - there:.2f} s missing)")
    else:
        what = (f"{src.name} cannot be decoded past {there:.2f} s of the {promised:.2f} s its header promises "
                f"({promised - there:.2f} s missing: {error})")
    if not allow_truncated:
        raise AudioError(f"{what}; pass allow_truncated=True to use what is there")
    warnings.warn(f"{what}; using the {there:.2f} s that are there", stacklevel=4)


def _mixdown(src: _Source, frames: int) -> Iterator[np.ndarray]:
    """Second pass: the mono signal as float32 blocks, one block of channels at a time."""
    at = 0
    for block in src.blocks():
        block = block[: frames - at]
        yield block.mean(axis=1).astype(np.float32)
        at += len(block)
        if at >= frames:  # stop where the first pass stopped, before any decoder error it met
            break
    if at < frames:
        raise AudioError(f"{src.name} changed while it was read ({at} of {frames} frames the second time)")


def _gather(blocks: Iterator[np.ndarray], frames: int) -> np.ndarray:
    """The blocks in one array of ``frames`` samples (no second copy: filled in place)."""
    mono, at = np.empty(frames, dtype=np.float32), 0
    for block in blocks:
        mono[at : at + len(block)] = block
        at += len(block)
    return mono


def _resample_stream(blocks: Iterator[np.ndarray], rate: int, target_rate: int, frames: int) -> Iterator[np.ndarray]:
    """The blocks at ``target_rate``, streamed through soxr; as long as ``librosa.resample`` makes the
    whole signal (``ceil(frames * ratio)`` samples: cut, or zero-padded at the end)."""
    if rate == target_rate:
        yield from blocks
        return
    import soxr

    stream = soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    want, made = int(np.ceil(frames * (float(target_rate) / rate))), 0
    for block, last in _with_last(blocks):
        out = stream.resample_chunk(block, last=last)[: want - made]
        made += len(out)
        yield out
    if made < want:
        yield np.zeros(want - made, np.float32)


def _with_last(blocks: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Each block with whether it is the last one (soxr flushes its filter on the last)."""
    previous = None
    for block in blocks:
        if previous is not None:
            yield previous, False
        previous = block
    if previous is not None:
        yield previous, True
