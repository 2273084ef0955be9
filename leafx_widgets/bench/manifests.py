"""Benchmark manifests: reading, builders for the two development sets and the two test sets.

A manifest is a JSON list of clips::

    {"id": str, "file": path relative to the manifest, "text": reference transcript,
     "words": [{"word": str, "start": s, "end": s}] or null}

``"words"`` may also be given as ``"textgrid": path`` (relative to the manifest),
read with praatio. Builders:

* :func:`build_librivox` - real read speech from Debian's ``pocketsphinx-testdata``
  (LibriVox, public domain; the wav files are copied beside the manifest), word spans from pocketsphinx forced alignment of the
  shipped ``transcription`` (independent of Whisper).
* :func:`build_espeak` - espeak-ng speech synthesised word by word; the trimmed words
  are joined with known pauses, so every word span is exact. Several voices and
  rates, clean and with white noise at 20 dB SNR.

Development manifests (:func:`build_dev_manifests`) are for choosing settings; the
held-out test manifests (:func:`build_test_manifests`, ``--test`` on the command line)
are only for confirming settings already chosen, never for choosing them:

* :func:`build_cards` - real speech from the same Debian package, other recordings:
  the ``cards`` clips and ``goforward.raw``, spans by the same forced alignment.
* :func:`build_espeak_test` - other sentences, voices, rates, noise levels and seeds
  than :func:`build_espeak`.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .validate import ManifestError, check_manifest, read_entries

SAMPLE_RATE = 16000
SPHINX_TEST_DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX_DIR = SPHINX_TEST_DATA / "librivox"
CARDS_DIR = SPHINX_TEST_DATA / "cards"
GOFORWARD_RAW = SPHINX_TEST_DATA / "goforward.raw"
# Not shipped with a transcript file; Whisper tiny.en ("Go forward 10 meters.") and
# pocketsphinx's en-us decoder ("go forward ten meters") agree on it.
GOFORWARD_TEXT = "go forward ten meters"


@dataclass
class Clip:
    id: str
    path: Path               # absolute
    text: str
    words: list[dict] | None  # [{"word", "start", "end"}] in seconds from the clip start


def load_manifest(path: str | Path, *, allow_outside_paths: bool = False) -> list[Clip]:
    """Read and check a manifest; ``file`` and ``textgrid`` resolve relative to the manifest.

    Raises :class:`~leafx_widgets.bench.validate.ManifestError` listing every problem
    (duplicate ids, unreadable audio, non-string text, bad spans, paths outside the
    manifest's folder unless ``allow_outside_paths``).
    """
    return load_manifests([path], allow_outside_paths=allow_outside_paths)[0][1]


def load_manifests(paths, *, allow_outside_paths: bool = False) -> list[tuple[str, list[Clip]]]:
    """``[(dataset name = file stem, clips)]`` for several manifests, all checked before any is used:
    one ManifestError lists the problems of every manifest (and two manifests with one name)."""
    out, problems, names = [], [], {}
    for path in map(Path, paths):
        if path.stem in names:
            problems.append(f"{path}: dataset name {path.stem!r} is already used by {names[path.stem]} "
                            "(records are labelled by the file name; rename one)")
        names.setdefault(path.stem, path)
        try:
            entries = read_entries(path)
        except ManifestError as err:
            problems += err.problems
            continue
        clips, found = check_manifest(path, entries, allow_outside=allow_outside_paths)
        problems += found
        out.append((path.stem, [Clip(*c) for c in clips]))
    if problems:
        raise ManifestError(problems)
    return out


def write_manifest(path: str | Path, clips: list[Clip]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"id": c.id, "file": _relpath(c.path, path.parent), "text": c.text, "words": c.words}
               for c in clips]
    return atomic_write(path, json.dumps(entries, indent=1))


def _relpath(target: Path, start: Path) -> str:
    import os
    return os.path.relpath(Path(target).resolve(), Path(start).resolve())


# ---------------------------------------------------------------- LibriVox (real speech)

def read_librivox_transcription(folder: Path = LIBRIVOX_DIR) -> dict[str, str]:
    """``{file id: text}`` from the sphinx ``transcription`` file (``<s> ... </s> (id)``)."""
    return read_sphinx_transcription(folder / "transcription")


def read_sphinx_transcription(path: Path) -> dict[str, str]:
    """``{file id: text}`` from a sphinx transcription file (lines ``<s> ... </s> (id)``)."""
    out = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*(.*?)\s*\(([^()]+)\)\s*$", line)
        if not m:
            continue
        words = [w for w in m.group(1).split() if w not in ("<s>", "</s>")]
        out[m.group(2)] = " ".join(words)
    return out


def force_align(pcm16: np.ndarray, text: str, *, sample_rate: int = SAMPLE_RATE) -> list[dict]:
    """Word spans of ``text`` in 16-bit mono ``pcm16`` by pocketsphinx forced alignment."""
    from pocketsphinx import Decoder

    if sample_rate != 16000:
        raise ValueError("pocketsphinx's bundled en-us model expects 16 kHz audio")
    decoder = Decoder(samprate=sample_rate, bestpath=False, loglevel="FATAL")
    frate = float(decoder.config["frate"])
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(np.ascontiguousarray(pcm16, dtype=np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    segments = decoder.seg()
    if segments is None:  # no path through the audio for this text
        raise RuntimeError(f"forced alignment found no alignment of {text!r}")
    words = []
    for seg in segments:
        word = re.sub(r"\(\d+\)$", "", seg.word)
        if word.startswith("<") or word.startswith("[") or word.startswith("+"):
            continue
        words.append({"word": word, "start": round(seg.start_frame / frate, 3),
                      "end": round((seg.end_frame + 1) / frate, 3)})
    expected = text.split()
    if [w["word"] for w in words] != expected:
        raise RuntimeError(f"forced alignment lost words: {[w['word'] for w in words]} vs {expected}")
    return words


def _copy_in(source: Path, target: Path) -> Path:
    """A copy of ``source`` beside the manifest: a manifest names files inside its own folder."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def build_librivox(out_dir: str | Path, *, folder: Path = LIBRIVOX_DIR) -> Path:
    """Write ``librivox.json`` (5 clips, 62 words) and copies of the Debian wav files in ``librivox/``."""
    import soundfile as sf

    out_dir = Path(out_dir)
    texts = read_librivox_transcription(folder)
    clips = []
    for file_id, text in sorted(texts.items()):
        wav = _copy_in(folder / f"{file_id}.wav", out_dir / "librivox" / f"{file_id}.wav")
        pcm, sr = sf.read(wav, dtype="int16")
        clips.append(Clip(file_id, wav, text, force_align(pcm, text, sample_rate=sr)))
    return write_manifest(out_dir / "librivox.json", clips)


def build_cards(out_dir: str | Path, *, folder: Path = CARDS_DIR, goforward: Path | None = GOFORWARD_RAW) -> Path:
    """Write ``cards.json`` (test set): the sphinx ``cards`` clips and ``goforward.raw``.

    The wav files are copied to ``out_dir/cards/``; ``goforward.raw`` (16-bit little-endian
    mono 16 kHz PCM) is written out as ``out_dir/cards/goforward.wav``. A clip that forced
    alignment cannot align is left out with a warning, never given made-up spans.
    """
    import soundfile as sf

    out_dir = Path(out_dir)
    sources = [(f"cards-{file_id}", _copy_in(folder / f"{file_id}.wav", out_dir / "cards" / f"{file_id}.wav"), text)
               for file_id, text in sorted(read_sphinx_transcription(folder / "cards.transcription").items())]
    if goforward is not None:
        wav = out_dir / "cards" / "goforward.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, np.fromfile(goforward, dtype="<i2"), SAMPLE_RATE, subtype="PCM_16")
        sources.append(("goforward", wav, GOFORWARD_TEXT))
    clips = []
    for clip_id, wav, text in sources:
        pcm, sr = sf.read(wav, dtype="int16")
        try:
            words = force_align(pcm, text, sample_rate=sr)
        except RuntimeError as e:
            print(f"warning: {clip_id} left out of cards.json: {e}", file=sys.stderr)
            continue
        clips.append(Clip(clip_id, wav, text, words))
    return write_manifest(out_dir / "cards.json", clips)


# ---------------------------------------------------------------- espeak-ng (exact spans)

ESPEAK_SENTENCES = (
    "the quick brown fox jumps over the lazy dog near the river bank",
    "please call stella and ask her to bring these things with her from the store",
    "seven green bottles were standing on the kitchen table this morning",
    "we measured the weather every hour during the long summer holiday",
)
# (voice, words per minute, noise) - several voices and rates, clean and 20 dB SNR.
ESPEAK_SETTINGS = (
    ("en-us", 165, None),
    ("en-gb", 140, 20.0),
    ("en-us+f3", 185, 20.0),
    ("en-gb-x-rp", 150, None),
)


def espeak_word(word: str, voice: str, rate: int) -> np.ndarray:
    """One word synthesised by espeak-ng, resampled to 16 kHz, exact-zero edges trimmed."""
    import librosa
    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", tmp.name, word],
                       check=True, capture_output=True)
        x, sr = sf.read(tmp.name, dtype="float32")
    nz = np.flatnonzero(x)
    if len(nz) == 0:
        raise RuntimeError(f"espeak-ng produced silence for {word!r}")
    x = x[nz[0]:nz[-1] + 1]
    y = librosa.resample(x, orig_sr=sr, target_sr=SAMPLE_RATE)
    # resampling rings a little past the edges; keep the exact-length word.
    return y.astype(np.float32)


def synthesise_sentence(text: str, voice: str, rate: int, *, seed: int = 0,
                        pause_s: tuple[float, float] = (0.06, 0.16), lead_s: float = 0.3,
                        snr_db: float | None = None) -> tuple[np.ndarray, list[dict]]:
    """Word-by-word synthesis joined with random pauses; returns (audio, exact word spans)."""
    rng = np.random.default_rng(seed)
    pieces = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)]
    words, t = [], len(pieces[0])
    for word in text.split():
        y = espeak_word(word, voice, rate)
        words.append({"word": word, "start": round(t / SAMPLE_RATE, 4),
                      "end": round((t + len(y)) / SAMPLE_RATE, 4)})
        pieces.append(y)
        t += len(y)
        gap = np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32)
        pieces.append(gap)
        t += len(gap)
    pieces.append(np.zeros(int(lead_s * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    audio = 0.5 * audio / max(float(np.abs(audio).max()), 1e-9)
    if snr_db is not None:
        audio = add_noise(audio, snr_db, seed=seed + 1, reference=audio[np.abs(audio) > 0])
    return audio.astype(np.float32), words


def add_noise(audio: np.ndarray, snr_db: float, *, seed: int = 0,
              reference: np.ndarray | None = None) -> np.ndarray:
    """White Gaussian noise at ``snr_db`` relative to the power of ``reference`` (default: audio)."""
    ref = audio if reference is None or len(reference) == 0 else reference
    power = float(np.mean(np.square(ref, dtype=np.float64)))
    noise = np.random.default_rng(seed).standard_normal(len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (audio + noise).astype(np.float32)


# Test set: none of these sentences, settings or seeds is in the development set.
ESPEAK_TEST_SENTENCES = (
    "my sister bought a new bicycle and rides it to work every day",
    "the old library closes early on sundays so we should leave soon",
    "after dinner the children played games by the fire until it was dark",
    "the train to the city was late because of snow on the tracks",
    "she wrote a short letter to her grandmother and posted it on friday",
)
ESPEAK_TEST_SETTINGS = (
    ("en-us+m3", 130, None),
    ("en-gb-scotland", 175, 20.0),
    ("en-us+f1", 155, 10.0),  # f1: no echo (f2-f5 and m2 add echo tails that would stretch the spans)
    ("en-029", 160, None),
    ("en-gb-x-gbclan", 145, 15.0),
)
ESPEAK_TEST_SEED = 100  # clip i uses seed 100 + i (pauses) and 101 + i (noise); the dev set uses 0-4


def build_espeak(out_dir: str | Path, *, sentences=ESPEAK_SENTENCES, settings=ESPEAK_SETTINGS) -> Path:
    """Write ``espeak.json`` and its wav files (one clip per sentence/setting pair)."""
    return _build_synthetic(out_dir, "espeak", sentences, settings, seed=0)


def build_espeak_test(out_dir: str | Path, *, sentences=ESPEAK_TEST_SENTENCES, settings=ESPEAK_TEST_SETTINGS,
                      seed: int = ESPEAK_TEST_SEED) -> Path:
    """Write ``espeak_test.json`` and ``espeak_test/*.wav`` (test set; one clip per sentence/setting pair)."""
    if len(sentences) != len(settings):
        raise ValueError(f"{len(sentences)} sentences but {len(settings)} settings")
    return _build_synthetic(out_dir, "espeak_test", sentences, settings, seed=seed)


def _build_synthetic(out_dir, name: str, sentences, settings, *, seed: int) -> Path:
    """``out_dir/name.json`` and ``out_dir/name/*.wav``; clip i is synthesised with seed ``seed + i``."""
    import soundfile as sf

    out_dir = Path(out_dir)
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    prefix = name.replace("_", "-")
    clips = []
    for i, (text, (voice, rate, snr)) in enumerate(zip(sentences, settings)):
        audio, words = synthesise_sentence(text, voice, rate, seed=seed + i, snr_db=snr)
        clip_id = f"{prefix}-{i:02d}-{voice.replace('+', '_')}-{rate}wpm-{'clean' if snr is None else f'snr{snr:g}'}"
        wav = out_dir / name / f"{clip_id}.wav"
        sf.write(wav, audio, SAMPLE_RATE, subtype="FLOAT")
        clips.append(Clip(clip_id, wav, text, words))
    return write_manifest(out_dir / f"{name}.json", clips)


def build_dev_manifests(out_dir: str | Path) -> list[Path]:
    """Both development manifests under ``out_dir`` (for choosing settings)."""
    return [build_librivox(out_dir), build_espeak(out_dir)]


def build_test_manifests(out_dir: str | Path) -> list[Path]:
    """Both held-out test manifests under ``out_dir`` (only for confirming chosen settings)."""
    return [build_cards(out_dir), build_espeak_test(out_dir)]


if __name__ == "__main__":  # python -m leafx_widgets.bench.manifests OUT_DIR [--test]
    import argparse

    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.manifests",
                                     description="Build LEAF-XBench manifests (default: the development set).",
                                     formatter_class=HelpFormatter, epilog="""examples:
  python -m leafx_widgets.bench.manifests bench_data          # librivox.json, espeak.json
  python -m leafx_widgets.bench.manifests bench_data --test   # cards.json, espeak_test.json""")
    parser.add_argument("out_dir", nargs="?", default="bench_data",
                        help="folder for the manifests and their audio files")
    parser.add_argument("--test", action="store_true",
                        help="build the held-out test manifests (cards.json, espeak_test.json) instead")
    args = parser.parse_args()
    for p in (build_test_manifests if args.test else build_dev_manifests)(args.out_dir):
        print(p)
