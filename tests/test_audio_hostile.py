"""Hostile audio: unsigned PCM, headers that lie, truncated and huge-claim files, random arrays and bytes."""
import tempfile
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import event, given, settings
from hypothesis import strategies as st

from leafx_widgets import Audio, AudioError, load_audio

SR = 16000


def tone(seconds=1.0, rate=SR, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * freq * t)


def write_wav(path, pcm: np.ndarray, rate=SR):
    """A plain PCM WAV written by the standard library: (frames,) or (frames, channels)."""
    frames = pcm.reshape(len(pcm), -1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(pcm.dtype.itemsize)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return Path(path)


def peak_mb(fn):
    """Peak memory allocated while ``fn`` runs, in MiB (numpy reports its buffers to tracemalloc)."""
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def refused(source, *args, **kwargs) -> str:
    with pytest.raises(AudioError) as err:
        load_audio(source, *args, **kwargs)
    return str(err.value)


# -- unsigned PCM is centred --------------------------------------------------------------------------
def test_uint8_array_is_centred():
    pcm = np.round(tone() * 127 + 128).astype(np.uint8)
    samples = load_audio(pcm, SR).samples
    assert abs(float(samples.mean())) < 1e-3  # an offset of +0.5 changes the transcript
    np.testing.assert_allclose(samples, tone(), atol=1 / 128)


def test_uint16_stereo_array_is_centred():
    pcm = np.round(np.stack([tone(), tone()], 1) * 32767 + 32768).astype(np.uint16)
    np.testing.assert_allclose(load_audio(pcm, SR).samples, tone(), atol=1e-4)


def test_uint8_wav_file_is_centred(tmp_path):
    path = write_wav(tmp_path / "u8.wav", np.round(tone() * 127 + 128).astype(np.uint8))
    samples = load_audio(path).samples
    assert abs(float(samples.mean())) < 1e-3
    np.testing.assert_allclose(samples, tone(), atol=1 / 64)


# -- truncated files ----------------------------------------------------------------------------------------
def truncated_wav(tmp_path, keep_s=0.45, full_s=2.78):
    """A WAV whose header promises ``full_s`` but whose data stops after ``keep_s`` (a cut download)."""
    full = write_wav(tmp_path / "full.wav", np.round(tone(full_s) * 32767).astype(np.int16))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + int(keep_s * SR) * 2])
    return cut


def test_truncated_wav_is_refused_with_what_is_missing(tmp_path):
    message = refused(truncated_wav(tmp_path))
    assert "truncated" in message and "2.78 s" in message and "0.45 s" in message and "2.33 s missing" in message
    assert "allow_truncated=True" in message


def test_wav_cut_to_almost_nothing_is_called_truncated(tmp_path):
    """Cut after 60 ms: too short to explain, and the reason is the cut, not the recording."""
    message = refused(truncated_wav(tmp_path, keep_s=0.06))
    assert "truncated" in message and "2.78 s" in message and "60 ms are there" in message


def test_truncated_wav_is_read_with_a_warning_when_asked(tmp_path):
    with pytest.warns(UserWarning, match=r"2\.33 s missing.*using the 0\.45 s"):
        audio = load_audio(truncated_wav(tmp_path), allow_truncated=True)
    assert audio.duration_s == pytest.approx(0.45, abs=1e-3)
    np.testing.assert_allclose(audio.samples, tone(0.45), atol=1e-4)


def test_wav_header_claiming_hours_over_one_second_is_truncated_not_long(tmp_path):
    """A data chunk claiming 4 h over 1 s of bytes: refused as truncated, before anything is decoded."""
    path = write_wav(tmp_path / "liar.wav", np.round(tone(1.0) * 32767).astype(np.int16))
    raw = bytearray(path.read_bytes())
    raw[40:44] = (4 * 3600 * SR * 2).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    message = refused(path)
    assert "truncated" in message and "14400.00 s" in message and "1.00 s are there" in message


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000])  # ffmpeg, sox, espeak-ng --stdout
def test_streaming_wav_with_open_size_is_read_whole(tmp_path, size):
    """Writers that stream cannot know the length and leave a size near 2 or 4 GiB: not a truncation."""
    path = write_wav(tmp_path / "stream.wav", np.round(tone(1.0) * 32767).astype(np.int16))
    raw = bytearray(path.read_bytes())
    raw[40:44] = size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert load_audio(path).duration_s == pytest.approx(1.0)


def test_truncated_flac_says_how_much_is_missing(tmp_path):
    path = tmp_path / "t.flac"
    soundfile.write(path, tone(1.0), SR)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    message = refused(path)
    assert "1.00 s its header promises" in message and "missing" in message


# -- sizes are checked from the header, and nothing holds the whole file ---------------------------------
def huge_claim_flac(tmp_path):
    """0.05 s of real 8-channel 384 kHz FLAC whose STREAMINFO claims 2.9 h (8 ch x 384 kHz = 119 GiB of float32)."""
    rate = 384000
    t = np.arange(int(0.05 * rate)) / rate
    path = tmp_path / "claim.flac"
    soundfile.write(path, np.stack([0.3 * np.sin(2 * np.pi * (220 + 50 * c) * t) for c in range(8)], 1), rate)
    raw = bytearray(path.read_bytes())
    head = int.from_bytes(raw[18:26], "big")  # STREAMINFO: rate (20 bits), channels, bits, total samples (36 bits)
    raw[18:26] = ((head >> 36 << 36) | int(2.9 * 3600 * rate)).to_bytes(8, "big")
    path.write_bytes(bytes(raw))
    return path


def test_huge_claim_is_refused_from_the_header(tmp_path):
    path = huge_claim_flac(tmp_path)
    assert soundfile.info(str(path)).duration > 2.8 * 3600
    messages = []
    assert peak_mb(lambda: messages.append(refused(path))) < 20
    assert "8 channels at 384000 Hz" in messages[0] and "read at most" in messages[0]


def test_huge_claim_with_the_limit_lifted_is_read_in_blocks(tmp_path):
    path = huge_claim_flac(tmp_path)
    messages = []
    assert peak_mb(lambda: messages.append(refused(path, max_duration_s=None))) < 50
    assert "missing" in messages[0] and "10440.00 s its header promises" in messages[0]


def test_long_silence_is_refused_without_holding_the_file(tmp_path):
    """30 min of 8 kHz stereo silence (110 MiB as float32) is scanned in blocks and refused."""
    path = tmp_path / "silence.flac"
    with soundfile.SoundFile(path, "w", 8000, 2, format="FLAC") as f:
        for _ in range(30):
            f.write(np.zeros((8000 * 60, 2), np.int16))
    messages = []
    assert peak_mb(lambda: messages.append(refused(path))) < 16
    assert "silent" in messages[0]


def test_duration_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "long.flac"
    soundfile.write(path, np.tile(tone(1.0), 5), SR)
    monkeypatch.setattr(soundfile, "blocks", lambda *a, **k: pytest.fail("decoded before the header check"))
    assert "over the limit" in refused(path, max_duration_s=2.0)


def test_blocks_give_the_same_audio_as_one_read(tmp_path):
    """A 44.1 kHz stereo file of several blocks: the same samples as reading it whole and resampling once."""
    import librosa

    stereo = np.stack([tone(3.0, 44100), tone(3.0, 44100, 330)], 1)
    path = tmp_path / "long.flac"
    soundfile.write(path, stereo, 44100)
    whole = soundfile.read(str(path), dtype="float64")[0].mean(axis=1).astype(np.float32)
    expected = librosa.resample(whole, orig_sr=44100, target_sr=SR)
    np.testing.assert_allclose(load_audio(path).samples, expected, atol=1e-6)


def test_eight_channel_wav_is_mixed_to_mono(tmp_path):
    pcm = np.round(np.stack([tone() * (c + 1) / 8 for c in range(8)], 1) * 32767).astype(np.int16)
    mono = load_audio(write_wav(tmp_path / "8ch.wav", pcm)).samples
    np.testing.assert_allclose(mono, pcm.mean(axis=1) / 32768, atol=1e-6)


# -- property tests -----------------------------------------------------------------------------------------
DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.float16, np.float32, np.float64]
GOOD_RATES = [1000, 8000, 16000, 22050, 44100, 384000, np.int64(8000), np.float32(1000), 16000.0]
BAD_RATES = [0, -16000, 1, 999, 384001, 10**12, 16000.5, float("nan"), float("inf"), True]
RATES = st.one_of(st.sampled_from(GOOD_RATES), st.sampled_from(GOOD_RATES + BAD_RATES), st.integers(-10**6, 10**6))


@st.composite
def arrays(draw):
    """(array, frames): random dtype, layout, length, channels and content, built with numpy (fast)."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = draw(st.one_of(st.sampled_from([6000, 1600, 801, 100, 99, 1, 0]), st.integers(100, 6000)))
    ch = draw(st.one_of(st.sampled_from([1, 2, 8, 16, 17]), st.integers(1, 20)))
    content = draw(st.sampled_from(["tone", "noise", "silence", "loud", "nan", "inf", "extremes"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = {"tone": lambda: np.sin(np.arange(n * ch).reshape(n, ch) / 7.0) * 0.5,
         "noise": lambda: rng.uniform(-1, 1, (n, ch)),
         "silence": lambda: np.zeros((n, ch)),
         "loud": lambda: rng.uniform(-1e6, 1e6, (n, ch)),
         "nan": lambda: np.where(rng.random((n, ch)) < 0.01, np.nan, 0.5),
         "inf": lambda: np.where(rng.random((n, ch)) < 0.01, -np.inf, 0.5),
         "extremes": lambda: rng.choice([-1.0, 1.0], (n, ch))}[content]()
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            arr = x.astype(dtype)
    else:
        info = np.iinfo(dtype)
        half = (int(info.max) + 1 - (int(info.min) if info.min else 0)) / 2  # unsigned PCM sits around mid-range
        centre = 0 if info.min else half
        arr = np.clip(np.nan_to_num(x, posinf=1, neginf=-1) * half + centre, info.min, info.max).astype(dtype)
    layout = draw(st.sampled_from(["frames-first", "mono", "channels-first", "3-D", "empty"]))
    if layout == "mono":
        return arr[:, 0], n
    if layout == "channels-first":
        return arr.T, max(n, ch)
    if layout == "3-D":
        return arr.reshape(1, n, ch), None
    if layout == "empty":
        return arr[:0], 0
    return arr, max(n, ch)  # frames are the long side, whichever way round


@settings(max_examples=200, deadline=None)
@given(arrays(), RATES)
def test_any_array_gives_16k_mono_float32_or_an_audio_error(case, rate):
    arr, frames = case
    try:
        out = load_audio(arr, rate)
    except AudioError as err:
        event(f"refused: {str(err).replace('the audio array', '<array>')[:40]}")
        return
    event("read")
    assert isinstance(out, Audio) and out.sample_rate == SR and out.samples.dtype == np.float32
    assert out.samples.ndim == 1 and np.isfinite(out.samples).all() and np.abs(out.samples).max() >= 1e-4
    assert abs(len(out.samples) - frames * SR / int(rate)) <= 1


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES), st.integers(1, 16), st.integers(1000, 48000), st.floats(0.1, 0.5),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_plausible_arrays_are_read(dtype, ch, rate, seconds, channels_first, seed):
    n = max(int(np.ceil(seconds * rate)), ch + 1, rate // 10 + 1)
    x = np.random.default_rng(seed).uniform(-0.9, 0.9, (n, ch))
    kind, half = np.dtype(dtype).kind, 2.0 ** (8 * np.dtype(dtype).itemsize - 1)
    arr = x.astype(dtype) if kind == "f" else np.round(x * half + (half if kind == "u" else 0)).astype(dtype)
    out = load_audio(arr.T if channels_first else arr, rate)
    assert out.sample_rate == SR and out.samples.dtype == np.float32 and np.isfinite(out.samples).all()
    assert abs(len(out.samples) - n * SR / rate) <= 1


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([np.uint8, np.uint16, np.int16, np.int32]), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_integer_pcm_at_16k_is_the_centred_scaled_mean(dtype, ch, seed):
    info = np.iinfo(dtype)
    pcm = np.random.default_rng(seed).integers(info.min, int(info.max) + 1, (SR // 5, ch), dtype=dtype)
    half = 2.0 ** (8 * np.dtype(dtype).itemsize - 1)
    expected = ((pcm.astype(np.float64) - (half if info.min == 0 else 0)) / half).mean(axis=1)
    np.testing.assert_allclose(load_audio(pcm, SR).samples, expected, atol=1e-6)


def valid_wav_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_wav(Path(tmp) / "v.wav", np.round(tone(0.3) * 32767).astype(np.int16)).read_bytes()


VALID_WAV = valid_wav_bytes()


@settings(max_examples=60, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), min_size=1, max_size=6)  # header bytes overwritten
    .map(lambda edits: bytes(_edit(VALID_WAV, edits))),
    st.integers(0, len(VALID_WAV)).map(lambda cut: VALID_WAV[:cut])))
def test_any_file_gives_16k_mono_float32_or_an_audio_error(blob):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.wav"
        path.write_bytes(blob)
        try:
            out = load_audio(path)
        except AudioError as err:
            event(f"refused: {str(err).replace(str(path), '<file>')[:40]}")
            return
    event("read")
    assert out.sample_rate == SR and out.samples.dtype == np.float32 and out.samples.ndim == 1
    assert np.isfinite(out.samples).all() and out.duration_s >= 0.1


def _edit(raw: bytes, edits) -> bytearray:
    out = bytearray(raw)
    for at, value in edits:
        out[at] = value
    return out
