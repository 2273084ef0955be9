"""Every kind of bad audio gets an error that names the problem."""
import numpy as np
import pytest
import soundfile

from leafx_widgets import AudioError, load_audio, sample_path

SR = 16000


def tone(seconds=1.0, rate=SR):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_bundled_sample_loads_as_16k_mono():
    audio = load_audio(sample_path())
    assert audio.sample_rate == SR and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert 7.0 < audio.duration_s < 7.2


def test_resamples_and_mixes_stereo(tmp_path):
    stereo = np.stack([tone(1.0, 44100), np.zeros(44100, np.float32)], axis=1)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 44100)
    audio = load_audio(path)
    assert audio.sample_rate == SR and audio.original_rate == 44100
    assert abs(len(audio.samples) - SR) <= 1
    assert 0.1 < np.abs(audio.samples).max() < 0.2  # the mix halves the one-sided tone
    # channels-first arrays are accepted too
    assert load_audio(stereo.T, 44100).samples.shape == audio.samples.shape


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_reads_common_formats(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    soundfile.write(path, tone(), SR)
    assert abs(load_audio(path).duration_s - 1.0) < 0.01


def test_reads_mp3(tmp_path):
    path = tmp_path / "tone.mp3"
    soundfile.write(path, tone(), SR, format="MP3")
    assert abs(load_audio(path).duration_s - 1.0) < 0.1


def test_integer_pcm_is_scaled():
    pcm = (tone() * 32767).astype(np.int16)
    assert np.allclose(load_audio(pcm, SR).samples, tone(), atol=1e-3)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"this is not audio at all" * 10), "could not read"),
])
def test_unreadable_files(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message):
        load_audio(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="not found"):
        load_audio("/no/such/clip.wav")


@pytest.mark.parametrize("samples, rate, message", [
    (np.zeros(0, np.float32), SR, "no samples"),
    (np.zeros(SR, np.float32), SR, "silent"),
    (np.full(SR, np.nan, np.float32), SR, "NaN"),
    (np.r_[tone(), [np.inf]].astype(np.float32), SR, "NaN or infinite"),
    (tone() * 30000, SR, "peaks at"),
    (tone(0.01), SR, "at least"),
    (tone(), 10, "not a plausible"),
    (tone(), None, "sample_rate"),
    (np.zeros((2, 2, 2)), SR, "1-D"),
    (np.array(["a", "b"]), SR, "numbers"),
    (np.zeros((SR, 40), np.float32), SR, "channels"),
])
def test_bad_arrays(samples, rate, message):
    with pytest.raises(AudioError, match=message):
        load_audio(samples, rate)


def test_hours_of_audio_are_refused_unless_asked():
    two_seconds = tone(2.0)
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(two_seconds, SR, max_duration_s=1.0)
    assert load_audio(two_seconds, SR, max_duration_s=None).duration_s == 2.0
    hours = np.broadcast_to(np.float32(0.1), (SR * 3600 * 4,))  # 4 h, no copy
    with pytest.raises(AudioError, match="4.0 h"):
        load_audio(hours, SR)


def test_file_with_conflicting_rate(tmp_path):
    path = tmp_path / "t.wav"
    soundfile.write(path, tone(), SR)
    with pytest.raises(AudioError, match="do not pass sample_rate"):
        load_audio(path, 8000)


def test_long_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "long.wav"
    soundfile.write(path, np.tile(tone(1.0), 5), SR)
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(path, max_duration_s=2.0)
