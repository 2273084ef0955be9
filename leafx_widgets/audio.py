"""Load and check audio: a path or an array in, 16 kHz mono float32 out, or a clear error."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_RATE = 16000
MIN_DURATION_S = 0.1
DEFAULT_MAX_DURATION_S = 3 * 3600.0  # a guard against mistaken inputs; pass max_duration_s=None to lift it
SILENCE_PEAK = 1e-4  # below this peak amplitude nothing is audible and Whisper only hallucinates
MAX_CHANNELS = 16


class AudioError(ValueError):
    """The audio cannot be explained; the message says why."""


@dataclass
class Audio:
    samples: np.ndarray  # (n,) float32 mono at ``sample_rate``
    sample_rate: int
    path: str | None = None
    original_rate: int | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def load_audio(source, sample_rate: int | None = None, *, target_rate: int = TARGET_RATE,
               max_duration_s: float | None = DEFAULT_MAX_DURATION_S) -> Audio:
    """Read ``source`` (a path to wav/flac/mp3/ogg, an ``Audio``, or an array with ``sample_rate``).

    Mixes channels to mono, resamples to ``target_rate`` and rejects empty, silent,
    non-finite, too long or otherwise absurd input with an ``AudioError``.
    """
    if isinstance(source, Audio):
        samples, rate, path = source.samples, source.sample_rate, source.path
    elif isinstance(source, (str, Path)):
        samples, rate = _read_file(Path(source), max_duration_s)
        path = str(source)
        if sample_rate is not None and sample_rate != rate:
            raise AudioError(f"{path} is recorded at {rate} Hz; do not pass sample_rate={sample_rate} for a file")
    else:
        if sample_rate is None:
            raise AudioError("an audio array needs its sample_rate, e.g. explain(model, samples, sample_rate=16000)")
        samples, rate, path = _as_array(source), sample_rate, None
    return _check(samples, rate, path, target_rate, max_duration_s)


def _read_file(path: Path, max_duration_s: float | None) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes)")
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:
        info = None
    if info is not None and max_duration_s is not None and info.duration > max_duration_s:
        raise AudioError(f"{path} lasts {info.duration / 3600:.1f} h, over the limit of {max_duration_s / 3600:.1f} h; "
                         "cut it, or pass max_duration_s=None if you mean it")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return samples, int(rate)
    except Exception as sf_err:  # soundfile lacks some codecs; librosa falls back to audioread/ffmpeg
        try:
            import warnings

            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                samples, rate = librosa.load(str(path), sr=None, mono=False)
            return np.atleast_2d(samples).T, int(rate)
        except Exception:
            raise AudioError(f"could not read {path} as audio (wav, flac, mp3 or ogg expected): {sf_err}") from None


def _as_array(source) -> np.ndarray:
    try:
        arr = np.asarray(source)
    except Exception as err:
        raise AudioError(f"audio must be an array of samples, got {type(source).__name__}: {err}") from None
    if arr.dtype.kind in "iu":  # integer PCM: scale to [-1, 1]
        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max)
    elif arr.dtype.kind != "f":
        raise AudioError(f"audio samples must be numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        return arr[:, None]
    if arr.ndim != 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (channels), got shape {arr.shape}")
    # accept (samples, channels) and (channels, samples): channels is the short side
    return arr if arr.shape[0] >= arr.shape[1] else arr.T


def _check(samples: np.ndarray, rate: int, path, target_rate, max_duration_s) -> Audio:
    name = path or "the audio array"
    if not isinstance(rate, (int, np.integer)) or not 1000 <= rate <= 384000:
        raise AudioError(f"sample rate {rate!r} of {name} is not a plausible audio rate (1000..384000 Hz)")
    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        raise AudioError(f"{name} holds no samples")
    # duration first: refuse hours of audio before touching every sample
    duration = len(samples) / rate
    if duration < MIN_DURATION_S:
        raise AudioError(f"{name} lasts {duration * 1000:.0f} ms; at least {MIN_DURATION_S * 1000:.0f} ms are needed")
    if max_duration_s is not None and duration > max_duration_s:
        raise AudioError(f"{name} lasts {duration / 3600:.1f} h, over the limit of {max_duration_s / 3600:.1f} h; "
                         "cut it, or pass max_duration_s=None if you mean it")
    if samples.ndim == 2:
        if samples.shape[1] > MAX_CHANNELS:
            raise AudioError(f"{name} has {samples.shape[1]} channels; at most {MAX_CHANNELS} are mixed to mono")
        samples = samples.mean(axis=1)
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"{name} contains {bad} NaN or infinite samples")
    peak = float(np.abs(samples).max())
    if peak > 1.5:
        raise AudioError(f"{name} peaks at {peak:.1f}; float samples must lie in [-1, 1] "
                         "(integer PCM given as floats? divide by 32768)")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name} is silent (peak amplitude {peak:.1e}); there is no speech to explain")
    if rate != target_rate:
        import librosa

        samples = librosa.resample(samples, orig_sr=rate, target_sr=target_rate).astype(np.float32)
    return Audio(samples=np.ascontiguousarray(samples), sample_rate=target_rate, path=path, original_rate=int(rate))
