"""Long files are kept in a temporary file, not in memory (``spilled.py``): the same samples as the
in-memory load (exactly at 16 kHz, within float tolerance when resampled), slices that behave like
numpy's, reads safe from many threads, and the same transcript from ``lw.explain``.

The threshold is lowered per test (``SPILL_AFTER_S``) so that the files stay a few seconds long.
"""
from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile

import leafx_widgets as lw
from leafx_widgets import audio, spilled
from leafx_widgets.audio import Audio, AudioError, load_audio
from leafx_widgets.spilled import SpilledSamples, spill

SR = 16000


def speechlike(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise shaped by a slow envelope, in [-1, 1]: every sample differs, so an offset shows."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    envelope = 0.5 + 0.4 * np.sin(2 * np.pi * 0.7 * np.arange(n) / rate)
    return (rng.uniform(-0.6, 0.6, (n, channels)) * envelope[:, None]).squeeze()


def load_both(path, monkeypatch, spill_after_s: float = 2.0):
    """(spilled load, in-memory load) of ``path``."""
    monkeypatch.setattr(audio, "SPILL_AFTER_S", float("inf"))
    in_memory = load_audio(path)
    monkeypatch.setattr(audio, "SPILL_AFTER_S", spill_after_s)
    return load_audio(path), in_memory


def test_16k_wav_spills_with_exactly_the_in_memory_samples(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    soundfile.write(path, speechlike(5.3, SR), SR, subtype="PCM_16")
    spilt, in_memory = load_both(path, monkeypatch)
    assert isinstance(spilt.samples, SpilledSamples) and isinstance(in_memory.samples, np.ndarray)
    assert spilt.samples.shape == in_memory.samples.shape and spilt.samples.dtype == np.float32
    assert spilt.duration_s == in_memory.duration_s and spilt.original_rate == SR
    whole = np.asarray(spilt.samples)
    assert whole.dtype == np.float32 and np.array_equal(whole, in_memory.samples)
    # more than one block of frames was decoded, so the blocks were written in order
    assert len(whole) > audio.BLOCK_FRAMES


def test_short_files_and_arrays_stay_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "SPILL_AFTER_S", 2.0)
    short, long = tmp_path / "short.wav", speechlike(5.0, SR).astype(np.float32)
    soundfile.write(short, speechlike(1.5, SR), SR, subtype="PCM_16")
    assert isinstance(load_audio(short).samples, np.ndarray)
    assert isinstance(load_audio(long, SR).samples, np.ndarray)  # the user holds the array anyway


def test_spilled_audio_loaded_again_stays_spilled(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    soundfile.write(path, speechlike(4.0, SR), SR, subtype="PCM_16")
    spilt, in_memory = load_both(path, monkeypatch)
    again = load_audio(Audio(spilt.samples, SR, path="again"))  # e.g. explain(model, ex_audio_object)
    assert isinstance(again.samples, SpilledSamples)
    assert np.array_equal(np.asarray(again.samples), in_memory.samples)
    assert load_audio(spilt).samples is spilt.samples  # the CLI's load then explain: one temporary file, not two
    with pytest.raises(AudioError, match="over the limit"):
        load_audio(spilt, max_duration_s=1.0)


@pytest.mark.parametrize("rate, channels, fmt", [(44100, 2, "flac"), (8000, 1, "wav"), (22050, 1, "wav")])
def test_resampled_file_streams_to_the_in_memory_samples(tmp_path, monkeypatch, rate, channels, fmt):
    path = tmp_path / f"long.{fmt}"
    soundfile.write(path, speechlike(4.2, rate, channels), rate, subtype="PCM_16")
    spilt, in_memory = load_both(path, monkeypatch)
    assert isinstance(spilt.samples, SpilledSamples) and spilt.original_rate == rate
    assert len(spilt.samples) == len(in_memory.samples)  # librosa's length: ceil(frames * ratio)
    whole = np.asarray(spilt.samples)
    np.testing.assert_allclose(whole, in_memory.samples, rtol=0, atol=1e-6)  # measured: equal
    assert np.abs(whole).max() > 0.1  # not two silences agreeing


# -- the array-like ------------------------------------------------------------------------------------
@pytest.fixture
def pair(monkeypatch):
    """(spilled samples, the same as an ndarray), 1000 samples; stepped slices read 64 at a time."""
    monkeypatch.setattr(spilled, "READ_BLOCK", 64)
    ref = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    return spill(ref[i: i + 300] for i in range(0, len(ref), 300)), ref


SLICES = [slice(None), slice(10, 20), slice(-100, None), slice(None, -5), slice(None, None, 3),
          slice(None, None, -1), slice(5, 1), slice(100, 10, -7), slice(-3, -1000, -2), slice(1010, None),
          slice(-1005, 5), slice(0, 0), slice(990, 2000), slice(3, 900, 131), slice(None, None, -333),
          slice(999, None), slice(-1, -2, -1), slice(None, 10**9, 7), slice(-(10**9), None, 250)]


@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slices_behave_like_numpy(pair, key):
    samples, ref = pair
    got = samples[key]
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.flags.writeable
    assert got.shape == ref[key].shape and np.array_equal(got, ref[key])
    got[...] = 7.0  # a fresh array: writing to it leaves the recording alone
    assert np.array_equal(samples[key], ref[key])


@pytest.mark.parametrize("key", [0, 1, -1, 999, -1000, np.int64(500), np.int32(-7)])
def test_ints_behave_like_numpy(pair, key):
    samples, ref = pair
    got = samples[key]
    assert type(got) is np.float32 and got == ref[key]


def test_bad_indices_fail_like_numpy(pair):
    samples, ref = pair
    for key in (1000, -1001, 10**12):
        with pytest.raises(IndexError, match="out of bounds"):
            samples[key]
        with pytest.raises(IndexError):
            ref[key]
    with pytest.raises(ValueError, match="zero"):
        samples[::0]
    for key in (np.abs(ref) > 1, [1, 2], (slice(None),), 1.5, True):
        with pytest.raises(TypeError, match="np.asarray"):
            samples[key]
    with pytest.raises(TypeError):
        samples[0] = 1.0  # read-only


def test_array_protocol_and_attributes(pair):
    samples, ref = pair
    assert len(samples) == samples.size == 1000 and samples.shape == (1000,) and samples.ndim == 1
    assert samples.dtype == np.float32 and samples.nbytes == ref.nbytes
    assert np.array_equal(np.asarray(samples), ref) and np.array_equal(np.abs(samples), np.abs(ref))
    as64 = np.asarray(samples, dtype=np.float64)
    assert as64.dtype == np.float64 and np.array_equal(as64, ref.astype(np.float64))
    with pytest.raises(ValueError, match="copy"):
        np.asarray(samples, copy=False)
    back = pickle.loads(pickle.dumps(samples))  # another process gets the samples as an array
    assert isinstance(back, np.ndarray) and np.array_equal(back, ref)


def test_concurrent_reads_from_threads_see_their_own_slices(monkeypatch):
    ref = np.random.default_rng(2).standard_normal(200_000).astype(np.float32)
    samples = spill([ref[:70_000], ref[70_000:]])
    rng = np.random.default_rng(3)
    keys = [slice(int(a), int(a) + int(n), int(s)) for a, n, s in
            zip(rng.integers(0, 200_000, 2000), rng.integers(1, 20_000, 2000), rng.choice([1, 1, 2, 5], 2000))]

    def check(chunk):
        return all(np.array_equal(samples[k], ref[k]) for k in chunk)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(check, [keys[i::8] for i in range(8)]))


# -- explaining a spilled recording --------------------------------------------------------------------
def test_explain_on_a_spilled_recording_gives_the_same_tokens(model, librivox_paths, tmp_path, monkeypatch):
    """Two windows of LibriVox speech (about 50 s) from a 16-bit WAV, spilled and in memory."""
    from leafx_widgets.widget import protocol

    pieces = []
    for _ in range(2):
        for p in librivox_paths:
            pieces += [soundfile.read(p, dtype="float32")[0], np.zeros(8000, np.float32)]
    path = tmp_path / "speech.wav"
    soundfile.write(path, np.concatenate(pieces), SR, subtype="PCM_16")
    monkeypatch.setattr(audio, "SPILL_AFTER_S", float("inf"))
    in_memory = lw.explain(model, path, progress=False)
    monkeypatch.setattr(audio, "SPILL_AFTER_S", 10.0)
    # one window kept and no maps computed while decoding: a map of the first window reads its audio again
    ex = lw.explain(model, path, progress=False, kept_windows=1, precompute=())
    assert isinstance(ex.audio, SpilledSamples) and isinstance(in_memory.audio, np.ndarray)
    assert len(ex.windows) == len(in_memory.windows) >= 2
    assert [t.id for t in ex.tokens] == [t.id for t in in_memory.tokens] and ex.text == in_memory.text
    assert len(ex.tokens) > 50
    first = ex.tokens[1].index  # a token of the evicted first window
    np.testing.assert_allclose(ex.map(first), in_memory.map(first), rtol=1e-5, atol=1e-7)
    assert ex.windows[0].store.recomputed == 1
    # the widget's waveform: the same PCM, converted block by block
    assert np.array_equal(protocol.audio_payload(ex)[0]["pcm"], protocol.audio_payload(in_memory)[0]["pcm"])
