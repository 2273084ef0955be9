"""The ``leafx-explanation/1`` JSON document: read it, check every field, refuse what it does not back.

Each problem is a ``ValueError`` that names the field, e.g.
``tokens[3].maps.base: length 1499, expected n_frames 1500``.

Sizes must be backed by the document's own content: every frame that a stored map covers
carries a number, so those frames are backed; frames no map covers (windows where nothing was
said) are accepted up to as many again as are covered, plus ``UNBACKED_S`` seconds. A longer
claim needs the recording itself (``Explanation.from_json(..., audio=...)``), whose length then backs it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = "leafx-explanation/1"
MAP_SUM_TOLERANCE = 1e-3  # maps are written rounded to 7 decimals: a 30 s window adds up to 1 within 1e-4
UNBACKED_S = 300.0  # seconds of frames without any stored map that a document may claim beyond those it covers
FRAME_S_RANGE = (0.005, 0.1)  # seconds per encoder frame (Whisper: 0.02)
SAMPLE_RATE_RANGE = (1000, 48000)  # rate of the explained samples (Whisper: 16000)
MAX_FRAMES = 10**9  # no document comes near; keeps every later sum in float range
LOGPROB_SLACK = 1e-4  # a log probability is <= 0; float rounding may leave a hair above
MAX_TEMPERATURE = 100.0  # a sampling temperature (Whisper's fallback goes up to 1.0)
TIME_SLACK_S = 0.05  # a segment may end this far past the audio's duration (frame rounding)


@dataclass
class Document:
    """A checked document: plain values, maps as read-only float32 arrays."""

    model: str
    text: str
    frame_s: float
    n_frames: int
    audio_path: str | None
    duration_s: float
    sample_rate: int
    params: dict
    tokens: list[dict]  # index, id, text, word, logprob, window, start_frame, n_frames, temperature, segment
    words: list[dict]  # index, text, tokens, peak_s
    segments: list[dict] = field(default_factory=list)  # index, start, end, text, tokens, window, temperature
    maps: list[dict[str, np.ndarray]] = field(default_factory=list)  # per token: variant -> (n_frames,)
    peak_method: str | None = None  # the stored variant the words' peak_s come from (older documents: None)


def read(data):
    """The parsed JSON of ``data``: a dict as is, JSON text (a string starting with ``{``, ``[`` or ``"``,
    or bytes), or a path to a JSON file."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"document: not UTF-8 text ({err})") from None
        return _loads(data, "document")
    if isinstance(data, str) and data.lstrip()[:1] in ("{", "[", '"'):
        return _loads(data, "document")
    if isinstance(data, str) and not data.strip():
        raise ValueError("document: an empty string, expected JSON text or a path")
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"explanation file not found: {path}")
        if path.is_dir():
            raise ValueError(f"{path}: a folder, expected a JSON file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not UTF-8 text ({err})") from None
        return _loads(text, str(path))
    return data


def _loads(text: str, name: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{name}: nested too deeply to be a {SCHEMA} document") from None
    except ValueError as err:
        raise ValueError(f"{name}: not valid JSON ({err})") from None


def parse(doc, *, backed_by_audio: bool = False) -> Document:
    """Check ``doc`` (parsed JSON) field by field. ``backed_by_audio``: the caller checks ``n_frames``
    against the recording, so frames without maps need no backing here."""
    doc = _object(doc, "document")
    schema = _get(doc, "schema", "")
    if schema != SCHEMA:
        raise ValueError(f"schema: {_show(schema)}, expected {SCHEMA!r} (not a LEAF-X explanation document)")
    model, text = _text(_get(doc, "model", ""), "model"), _text(_get(doc, "text", ""), "text")
    frame_s = _real(_get(doc, "frame_s", ""), "frame_s", *FRAME_S_RANGE)
    n_frames = _whole(_get(doc, "n_frames", ""), "n_frames", 1, MAX_FRAMES)
    audio = _object(_get(doc, "audio", ""), "audio")
    path = audio.get("path")
    if path is not None:
        _text(path, "audio.path")
    duration_s = _real(_get(audio, "duration_s", "audio."), "audio.duration_s", 0.0)
    sample_rate = _whole(_get(audio, "sample_rate", "audio."), "audio.sample_rate", *SAMPLE_RATE_RANGE)
    if abs(duration_s / frame_s - n_frames) > 1 + 1e-6 * n_frames:
        raise ValueError(f"n_frames: {n_frames} frames of {frame_s} s cover {n_frames * frame_s:.2f} s, "
                         f"but audio.duration_s is {duration_s:.2f} s")
    params = _params(doc.get("params", {}))
    raw_tokens = _array(_get(doc, "tokens", ""), "tokens")
    raw_words = _array(_get(doc, "words", ""), "words")
    tokens, maps = _tokens(raw_tokens, n_frames, len(raw_words))
    words = _words(raw_words, tokens)
    segments = _segments(_array(doc.get("segments", []), "segments"), tokens, n_frames * frame_s)
    if not backed_by_audio:
        _check_backing(tokens, maps, n_frames, frame_s)
    peak_method = doc.get("peak_method")
    if peak_method is not None:
        _text(peak_method, "peak_method")
        if maps and peak_method not in maps[0]:
            raise ValueError(f"peak_method: {peak_method!r} is not among the stored maps ({', '.join(maps[0])})")
    return Document(model=model, text=text, frame_s=frame_s, n_frames=n_frames, audio_path=path,
                    duration_s=duration_s, sample_rate=sample_rate, params=params, tokens=tokens, words=words,
                    segments=segments, maps=maps, peak_method=peak_method)


# -- parts ---------------------------------------------------------------------------------------------------
def _tokens(raw: list, n_frames: int, n_words: int) -> tuple[list[dict], list[dict]]:
    tokens, maps, windows, variants = [], [], {}, None
    window_of_start: dict[int, int] = {}  # for documents written before tokens carried their window
    for i, item in enumerate(raw):
        at = f"tokens[{i}]"
        t = _object(item, at)
        index = _whole(_get(t, "index", at + "."), at + ".index", 0, len(raw) - 1)
        if index < i:  # every earlier token holds its own position
            raise ValueError(f"{at}.index: {index} repeats tokens[{index}].index (token indices must be unique)")
        if index != i:
            raise ValueError(f"{at}.index: {index}, expected {i} (tokens are listed in order, from 0)")
        word = _whole(_get(t, "word", at + "."), at + ".word", 0)
        if word >= n_words:
            raise ValueError(f"{at}.word: {word}, but the document has {n_words} words")
        start = _whole(_get(t, "start_frame", at + "."), at + ".start_frame", 0, n_frames - 1)
        stored = _object(_get(t, "maps", at + "."), at + ".maps")
        for name in stored:
            _text(name, f"{at}.maps key")
            if not name or any(c.isspace() for c in name):  # registry names never hold spaces
                raise ValueError(f"{at}.maps: {name!r} is not a method name (non-empty, without spaces)")
        if variants is None:
            variants = sorted(stored)
        elif sorted(stored) != variants:
            raise ValueError(f"{at}.maps: holds {sorted(stored)}, but tokens[0].maps holds {variants} "
                             "(every token stores the same variants)")
        length = t.get("n_frames")
        if length is None:  # documents written before tokens carried n_frames: as their window's first token
            first = next(iter(stored.values()), None)
            if start in window_of_start:
                length = windows[window_of_start[start]][1]
            else:
                length = len(first) if isinstance(first, list) and first else n_frames - start
        length = _whole(length, at + ".n_frames", 1, n_frames)
        if start + length > n_frames:
            raise ValueError(f"{at}.n_frames: frames {start}..{start + length} run past n_frames {n_frames}")
        window = t.get("window")
        if window is None:  # older documents: windows are the distinct start frames, in order
            window = window_of_start.setdefault(start, len(window_of_start))
        window = _whole(window, at + ".window", 0, MAX_FRAMES)
        if window in windows and windows[window] != (start, length):
            raise ValueError(f"{at}.window: window {window} spans frames {windows[window][0]}.."
                             f"{sum(windows[window])} in earlier tokens, but {start}..{start + length} here")
        if tokens and window < tokens[-1]["window"]:
            raise ValueError(f"{at}.window: {window} after window {tokens[-1]['window']} (tokens are in time order)")
        windows[window] = (start, length)
        tokens.append({"index": index, "id": _whole(_get(t, "id", at + "."), at + ".id", 0, 2**31 - 1),
                       "text": _text(_get(t, "text", at + "."), at + ".text"), "word": word,
                       "logprob": _real(_get(t, "logprob", at + "."), at + ".logprob", None, LOGPROB_SLACK),
                       "window": window, "start_frame": start, "n_frames": length,
                       # documents written before long-form decoding: greedy, no segments
                       "temperature": _real(t.get("temperature", 0.0), at + ".temperature", 0.0, MAX_TEMPERATURE),
                       "segment": _whole(t.get("segment", -1), at + ".segment", -1, MAX_FRAMES)})
        maps.append({name: _distribution(values, f"{at}.maps.{name}", length) for name, values in stored.items()})
    return tokens, maps


def _words(raw: list, tokens: list[dict]) -> list[dict]:
    words, listed = [], {}
    for j, item in enumerate(raw):
        at = f"words[{j}]"
        w = _object(item, at)
        index = _whole(_get(w, "index", at + "."), at + ".index", 0, len(raw) - 1)
        if index != j:
            raise ValueError(f"{at}.index: {index}, expected {j} (words are listed in order, from 0)")
        members = _array(_get(w, "tokens", at + "."), at + ".tokens")
        if not members:
            raise ValueError(f"{at}.tokens: empty (a word has at least one token)")
        for k, t in enumerate(members):
            if not tokens:
                raise ValueError(f"{at}.tokens[{k}]: {_show(t)}, but the document has no tokens")
            t = _whole(t, f"{at}.tokens[{k}]", 0, len(tokens) - 1)
            if t in listed:
                raise ValueError(f"{at}.tokens[{k}]: token {t} is already listed by words[{listed[t]}]")
            if tokens[t]["word"] != j:
                raise ValueError(f"{at}.tokens[{k}]: token {t} belongs to word {tokens[t]['word']} "
                                 f"(tokens[{t}].word)")
            listed[t] = j
        peak = w.get("peak_s")
        words.append({"index": index, "text": _text(_get(w, "text", at + "."), at + ".text"),
                      "tokens": [int(t) for t in members],
                      "peak_s": None if peak is None else _real(peak, at + ".peak_s", 0.0)})
    for t in tokens:
        if t["index"] not in listed:
            raise ValueError(f"tokens[{t['index']}].word: words[{t['word']}] does not list token {t['index']}")
    return words


def _segments(raw: list, tokens: list[dict], duration_s: float) -> list[dict]:
    """Segments list their tokens in order, each token once, from one window; times within the audio."""
    segments, last_token = [], -1
    for k, item in enumerate(raw):
        at = f"segments[{k}]"
        s = _object(item, at)
        index = _whole(_get(s, "index", at + "."), at + ".index", 0, len(raw) - 1)
        if index != k:
            raise ValueError(f"{at}.index: {index}, expected {k} (segments are listed in order, from 0)")
        start = _real(_get(s, "start", at + "."), at + ".start", 0.0, duration_s + TIME_SLACK_S)
        end = _real(_get(s, "end", at + "."), at + ".end", 0.0, duration_s + TIME_SLACK_S)
        if end < start:
            raise ValueError(f"{at}.end: {end}, before its start {start}")
        window = _whole(_get(s, "window", at + "."), at + ".window", 0, MAX_FRAMES)
        members = _array(_get(s, "tokens", at + "."), at + ".tokens")
        for j, t in enumerate(members):
            if not tokens:
                raise ValueError(f"{at}.tokens[{j}]: {_show(t)}, but the document has no tokens")
            t = _whole(t, f"{at}.tokens[{j}]", 0, len(tokens) - 1)
            if t <= last_token:
                raise ValueError(f"{at}.tokens[{j}]: {t} after token {last_token} (a segment's tokens are in order, "
                                 "each in one segment)")
            if tokens[t]["window"] != window:
                raise ValueError(f"{at}.tokens[{j}]: token {t} is from window {tokens[t]['window']}, "
                                 f"but the segment's window is {window}")
            if tokens[t]["segment"] not in (-1, k):
                raise ValueError(f"{at}.tokens[{j}]: token {t} names segment {tokens[t]['segment']} "
                                 f"(tokens[{t}].segment)")
            last_token = t
        segments.append({"index": index, "start": start, "end": end,
                         "text": _text(_get(s, "text", at + "."), at + ".text"),
                         "tokens": [int(t) for t in members], "window": window,
                         "temperature": _real(s.get("temperature", 0.0), at + ".temperature", 0.0, MAX_TEMPERATURE)})
    listed = {t: seg["index"] for seg in segments for t in seg["tokens"]}
    for t in tokens:
        if t["segment"] != -1 and listed.get(t["index"]) != t["segment"]:
            where = (f"the document has {len(segments)} segments" if t["segment"] >= len(segments)
                     else f"segments[{t['segment']}] does not list token {t['index']}")
            raise ValueError(f"tokens[{t['index']}].segment: {t['segment']}, but {where}")
    return segments


def _distribution(values, at: str, length: int) -> np.ndarray:
    if not isinstance(values, (list, tuple, np.ndarray)) or getattr(values, "ndim", 1) != 1:
        raise ValueError(f"{at}: {_kind(values)}, expected an array of numbers")
    if len(values) != length:
        raise ValueError(f"{at}: length {len(values)}, expected n_frames {length}")
    numbers = values.dtype.kind in "iuf" if isinstance(values, np.ndarray) else \
        all(type(v) in (int, float) for v in values)  # JSON gives exactly these; true/false are not numbers
    if not numbers:
        raise ValueError(f"{at}: expected an array of numbers")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer past float range
        raise ValueError(f"{at}: holds a number too large for a map") from None
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{at}[{bad[0]}]: {arr[bad[0]]}, maps must be finite ({bad.size} values are not)")
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise ValueError(f"{at}[{bad[0]}]: {arr[bad[0]]}, maps must be non-negative ({bad.size} values are not)")
    total = float(arr.sum())
    if abs(total - 1.0) > MAP_SUM_TOLERANCE:
        raise ValueError(f"{at}: sums to {total:.6g}, expected 1 (a map is a distribution over frames)")
    out = arr.astype(np.float32)
    out.flags.writeable = False
    return out


def _check_backing(tokens: list[dict], maps: list[dict], n_frames: int, frame_s: float) -> None:
    """Frames without any stored map: at most as many as those with one, plus UNBACKED_S seconds."""
    spans = sorted({(t["start_frame"], t["start_frame"] + t["n_frames"]) for t, m in zip(tokens, maps) if m})
    covered, reach = 0, 0
    for start, stop in spans:
        covered += max(0, stop - max(start, reach))
        reach = max(reach, stop)
    allowed = 2 * covered + int(UNBACKED_S / frame_s)
    if n_frames > allowed:
        raise ValueError(f"n_frames: {n_frames} ({n_frames * frame_s:.1f} s), but the stored maps cover only "
                         f"{covered} frames; a document may claim at most {allowed} ({allowed * frame_s:.1f} s) "
                         "without its recording (pass audio= to back a longer one)")


def _params(value) -> dict:
    params = _object(value, "params")
    for name, v in params.items():
        if not (v is None or isinstance(v, (str, bool, int)) or isinstance(v, float) and math.isfinite(v)):
            raise ValueError(f"params.{name}: {_show(v)}, expected a string, a finite number, true/false or null")
    return dict(params)


# -- field helpers ---------------------------------------------------------------------------------------
def _get(obj: dict, key: str, prefix: str):
    if key not in obj:
        raise ValueError(f"{prefix}{key}: missing")
    return obj[key]


def _object(value, at: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{at}: {_kind(value)}, expected an object")
    return value


def _array(value, at: str) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{at}: {_kind(value)}, expected an array")
    return list(value)


def _text(value, at: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{at}: {_kind(value)}, expected a string")
    return value


def _whole(value, at: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{at}: {_show(value)}, expected a whole number")
    _in_range(value, at, lo, hi)
    return int(value)


def _real(value, at: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{at}: {_show(value)}, expected a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{at}: {_show(value)}, expected a finite number")
    _in_range(number, at, lo, hi)
    return number


def _in_range(value, at: str, lo, hi) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"at least {lo}" if hi is None else f"at most {hi}" if lo is None else f"in {lo}..{hi}"
        raise ValueError(f"{at}: {value}, expected a value {bounds}")


def _kind(value) -> str:
    """The JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "an array", tuple: "an array", dict: "an object"}.get(type(value), type(value).__name__)


def _show(value) -> str:
    text = repr(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else _kind(value)
    return text if len(text) <= 60 else text[:57] + "..."
