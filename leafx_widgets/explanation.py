"""``explain()`` decodes once; an ``Explanation`` computes maps on request and caches them."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import schema
from .audio import DEFAULT_MAX_DURATION_S, Audio, load_audio
from ._progress import progress as _progress
from .atomic import atomic_write
from .methods import DEFAULT_METHOD, VARIANTS, available_methods, get_method
from .schema import SCHEMA

_load_audio = load_audio  # from_json has a load_audio flag
WINDOW_SILENCE_PEAK = 1e-4  # a window this quiet is skipped instead of decoded (Whisper would hallucinate)


@dataclass
class Token:
    index: int  # position among all text tokens of the explanation
    id: int  # vocabulary id
    text: str
    word: int  # index of the word it belongs to
    logprob: float  # log p under greedy decoding
    window: int  # decoding window (the model's window_samples each) it came from
    start_frame: int  # first frame of its window in the whole audio; its map covers
    n_frames: int  # frames [start_frame, start_frame + n_frames)


@dataclass
class Word:
    index: int
    text: str
    tokens: list[int]
    peak_s: float | None = None  # time of the peak of the word's summed DEFAULT_METHOD maps


@dataclass
class Window:
    """One decoding window with everything the methods need, encoder output cached."""

    index: int
    adapter: object
    offset_frames: int
    offset_samples: int
    n_valid: int  # frames of real audio in this window
    features: torch.Tensor | None  # (1, n_mels, n_window_frames * input_frames_per_frame) model input
    encoded: torch.Tensor | None  # (1, S, d) encoder output
    prompt: list[int]
    ids: list[int]
    logprobs: list[float]
    tokens: list[int] = field(default_factory=list)  # global token indices, in order
    cache: dict = field(default_factory=dict, repr=False)  # intermediate results of the methods (attribution.py)


def explain(model, audio, *, sample_rate: int | None = None,
            max_duration_s: float | None = DEFAULT_MAX_DURATION_S, progress: bool | None = None) -> "Explanation":
    """Decode ``audio`` once with ``model`` and return a lazy ``Explanation``.

    ``model``: an adapter from ``load_model`` or a model name. ``audio``: a path or
    an array (then ``sample_rate`` is required). Audio longer than the model's window
    (Whisper: 30 s) is decoded window by window, each explained on its own with its time
    offset. ``progress``: a bar over the windows (None: in a terminal or a notebook when
    there is more than one window).
    """
    if isinstance(model, (str, Path)):
        from .models import load_model

        model = load_model(model)
    clip = load_audio(audio, sample_rate, target_rate=model.sample_rate, max_duration_s=max_duration_s)
    windows, tokens = [], []
    starts = range(0, len(clip.samples), model.window_samples)
    bar = _progress(enumerate(starts), total=len(starts), desc="decoding", unit="window",
                    enabled=False if len(starts) < 2 else progress)
    for w, start in bar:
        chunk = clip.samples[start : start + model.window_samples]
        window = Window(index=w, adapter=model, offset_frames=w * model.n_window_frames, offset_samples=start,
                        n_valid=model.valid_frames(len(chunk)), features=None, encoded=None,
                        prompt=[], ids=[], logprobs=[])
        if np.abs(chunk).max() >= WINDOW_SILENCE_PEAK:
            window.features = model.features(chunk)
            with torch.no_grad():
                window.encoded = model.encode(window.features)
            decoded = model.decode(window.encoded)
            window.prompt, window.ids, window.logprobs = decoded.prompt, decoded.ids, decoded.logprobs
        for i, (tid, lp) in enumerate(zip(window.ids, window.logprobs)):
            window.tokens.append(len(tokens))
            tokens.append(Token(index=len(tokens), id=int(tid), text=model.token_text(tid), word=-1,
                                logprob=float(lp), window=w, start_frame=window.offset_frames,
                                n_frames=window.n_valid))
        windows.append(window)
    words = group_words(windows, tokens, model)
    text = " ".join(t for t in (model.text(w.ids) for w in windows) if t)
    return Explanation(model_name=model.name, audio=clip, frame_s=model.frame_s,
                       n_frames=sum(w.n_valid for w in windows),
                       text=text, tokens=tokens, words=words, windows=windows)


def group_words(windows: list[Window], tokens: list[Token], model) -> list[Word]:
    """Words of every window (``model.words``: the scheme of its tokenizer); a word never spans windows."""
    words: list[Word] = []
    for window in windows:
        for positions in model.words(window.ids):
            members = [window.tokens[p] for p in positions]
            words.append(Word(index=len(words), text=model.text([window.ids[p] for p in positions]),
                              tokens=members))
            for t in members:
                tokens[t].word = words[-1].index
    return words


class Explanation:
    """Tokens and words of one decoded clip, with per-(method, params) maps computed lazily."""

    def __init__(self, *, model_name: str, audio: Audio | None, frame_s: float, n_frames: int, text: str,
                 tokens: list[Token], words: list[Word], windows: list[Window] | None = None,
                 duration_s: float | None = None, audio_path: str | None = None, sample_rate: int | None = None):
        self.model_name = model_name
        self._audio = audio
        self.frame_s = frame_s
        self.n_frames = n_frames
        self.text = text
        self.tokens = tokens
        self._words = words
        self.windows = windows or []
        self.duration_s = audio.duration_s if audio is not None else duration_s
        self.audio_path = audio.path if audio is not None else audio_path
        self.sample_rate = audio.sample_rate if audio is not None else sample_rate
        self._cache: dict[tuple, np.ndarray] = {}  # (method, params, window or token) -> maps
        self._lock = threading.RLock()  # the widget computes in a worker thread
        self.peak_method: str | None = DEFAULT_METHOD if self.windows else None  # what words' peak_s come from
        self.notes: list[str] = []

    # -- audio and features -------------------------------------------------------------
    @property
    def audio(self) -> np.ndarray | None:
        """The mono samples at ``sample_rate``; None for an explanation read from JSON, unless
        ``from_json`` was given the recording (``audio=`` or ``load_audio=True``)."""
        return None if self._audio is None else self._audio.samples

    @property
    def model(self):
        return self.windows[0].adapter if self.windows else None

    def log_mel(self) -> np.ndarray:
        """The model's log-Mel input over the real audio: (n_mels, n_frames * input_frames_per_frame),
        windows joined (Whisper: 2 mel columns of 10 ms per attended frame of 20 ms). A silent
        window, never decoded, shows the lowest level of the others.
        """
        decoded = [w.features for w in self.windows if w.features is not None]
        if not decoded:
            raise ValueError("this Explanation has no model features (read from JSON); explain the audio again")
        n_mels = decoded[0].shape[1]
        per_frame = self.model.input_frames_per_frame
        floor = min(float(f.min()) for f in decoded)
        parts = [np.full((n_mels, per_frame * w.n_valid), floor, np.float32) if w.features is None
                 else w.features[0, :, : per_frame * w.n_valid].float().cpu().numpy() for w in self.windows]
        return np.concatenate(parts, axis=1)

    def blank_log_mel(self) -> np.ndarray:
        """Zeros in the shape of ``log_mel()``, for a view without features (all silent, or read from JSON).

        Without a model the input shape is unknown: one row and one column per frame."""
        model = self.model
        if model is None:
            return np.zeros((1, self.n_frames), dtype=np.float32)
        return np.zeros((model.n_mels, model.input_frames_per_frame * self.n_frames), dtype=np.float32)

    # -- maps -----------------------------------------------------------------------------
    def _check_token(self, token) -> Token:
        if isinstance(token, bool) or not isinstance(token, (int, np.integer)):
            raise TypeError(f"token must be an int index, got {type(token).__name__}")
        if not 0 <= token < len(self.tokens):
            raise IndexError(f"token index {token} is out of range: this explanation has {len(self.tokens)} tokens "
                             f"(0..{len(self.tokens) - 1})")
        return self.tokens[token]

    def map(self, token: int, method: str = DEFAULT_METHOD, **params) -> np.ndarray:
        """Attribution of ``token`` over its window's real frames (float32, >= 0, sums to 1).

        Frame i covers [(token.start_frame + i) * frame_s, ... + frame_s) seconds. Computed on first request
        (a LEAF-X method computes the whole window at once, as cheap as one token) and cached.
        """
        tok = self._check_token(token)
        key = _params_key(params)
        cached = self._cache.get((method, key, "token", tok.index))
        if cached is not None:
            return cached
        window_maps = self._cache.get((method, key, "window", tok.window))
        if window_maps is not None:
            return window_maps[self.windows[tok.window].tokens.index(tok.index)]  # only built with a model
        if not self.windows:
            raise ValueError(f"no {method!r} map stored for token {token}, and this Explanation was read from JSON "
                             f"without a model; stored: {sorted({k[0] for k in self._cache})}")
        spec = get_method(method)
        resolved = spec.resolve(params)
        window = self.windows[tok.window]
        if not spec.supports(window.adapter):
            raise ValueError(f"method {method!r} needs {', '.join(spec.needs)} from the model, which "
                             f"{self.model_name!r} does not offer; available: {', '.join(available_methods(window.adapter))}")
        with self._lock:
            if spec.batched:
                maps = _as_maps(spec.compute(window, list(range(len(window.ids))), **resolved), method)
                self._cache[(method, key, "window", tok.window)] = maps
                return maps[window.tokens.index(tok.index)]
            single = _as_maps(spec.compute(window, [window.tokens.index(tok.index)], **resolved), method)[0]
            self._cache[(method, key, "token", tok.index)] = single
            return single

    def map_global(self, token: int, method: str = DEFAULT_METHOD, **params) -> np.ndarray:
        """The same map over all ``n_frames`` of the audio: zeros outside the token's window."""
        tok = self._check_token(token)
        out = np.zeros(self.n_frames, dtype=np.float32)
        local = self.map(token, method, **params)
        out[tok.start_frame : tok.start_frame + len(local)] = local
        return out

    def maps(self, method: str = DEFAULT_METHOD, **params) -> np.ndarray:
        """All tokens' maps over the whole audio: (n_tokens, n_frames)."""
        return np.stack([self.map_global(t.index, method, **params) for t in self.tokens]) \
            if self.tokens else np.zeros((0, self.n_frames), np.float32)

    def frame_times(self, token: int) -> np.ndarray:
        """Start time in seconds of each frame of ``map(token)``."""
        tok = self._check_token(token)
        return (tok.start_frame + np.arange(tok.n_frames)) * self.frame_s

    # -- words ------------------------------------------------------------------------------
    @property
    def words(self) -> list[Word]:
        """Words, with the time of their peak attribution (DEFAULT_METHOD, computed on first access)."""
        if self._words and self._words[0].peak_s is None and self.windows:
            for word, peak in zip(self._words, self.word_peaks(DEFAULT_METHOD)):
                word.peak_s = peak
        return self._words

    def word_peaks(self, method: str = DEFAULT_METHOD, **params) -> list[float]:
        """Each word's peak time in seconds under ``method``: the frame where its tokens' summed map is largest."""
        peaks = []
        for word in self._words:
            mass = sum(self.map_global(t, method, **params) for t in word.tokens)
            peaks.append(round((int(np.argmax(mass)) + 0.5) * self.frame_s, 4))
        return peaks

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self, methods=VARIANTS, *, peak_method: str | None = None, variants=None, **params) -> dict:
        """The ``leafx-explanation/1`` schema; maps of ``methods`` computed now if needed (``variants``: an
        alias of ``methods``).

        Each word's ``peak_s`` comes from ``peak_method`` (default: DEFAULT_METHOD with a model, the
        document's own when read from JSON), whose maps are saved too and which the document names."""
        peak_method = peak_method or self.peak_method
        methods = methods if variants is None else variants
        variants = tuple(dict.fromkeys([*methods, *([peak_method] if peak_method else [])]))
        if self.windows:  # with a model, unknown names fail before any work (without, map() says what is stored)
            for v in variants:
                get_method(v)
        tokens = []
        for tok in self.tokens:
            maps = {v: [round(float(x), 7) for x in self.map(tok.index, v, **params)] for v in variants}
            tokens.append({"index": tok.index, "id": tok.id, "text": tok.text, "word": tok.word,
                           "logprob": tok.logprob, "start_frame": tok.start_frame, "window": tok.window,
                           "n_frames": tok.n_frames, "maps": maps})
        # self._words, not .words: that would compute DEFAULT_METHOD's peaks as well
        peaks = self.word_peaks(peak_method, **params) if peak_method else [w.peak_s for w in self._words]
        words = [{"index": w.index, "text": w.text, "tokens": list(w.tokens), "peak_s": peak}
                 for w, peak in zip(self._words, peaks)]
        return {"schema": SCHEMA, "model": self.model_name,
                "audio": {"path": self.audio_path, "duration_s": self.duration_s, "sample_rate": self.sample_rate},
                "frame_s": self.frame_s, "n_frames": self.n_frames, "text": self.text,
                "params": {k: v for k, v in params.items()}, "peak_method": peak_method,
                "tokens": tokens, "words": words}

    def save_json(self, path, methods=VARIANTS, *, peak_method: str | None = None, variants=None, **params) -> Path:
        """Write ``to_json`` as strict JSON (no NaN), through a temporary file renamed into place."""
        return atomic_write(path, json.dumps(self.to_json(methods if variants is None else variants, peak_method=peak_method, **params), allow_nan=False))

    @classmethod
    def from_json(cls, data, *, audio=None, load_audio: bool = False,
                  max_duration_s: float | None = DEFAULT_MAX_DURATION_S, allow_truncated: bool = False) -> "Explanation":
        """Rebuild from ``to_json`` output (a dict, a JSON string or a path). Maps stored there are served;
        nothing new can be computed without the model.

        Every field is checked (``schema.parse``); a problem is a ValueError naming the field. The
        recording is not read unless asked: pass it as ``audio`` (a path, an ``Audio``, or an array at
        the document's sample_rate), or ``load_audio=True`` to read the file named in ``audio.path``.
        Without it ``.audio`` is None, and the widget shows silence.
        """
        doc = schema.parse(schema.read(data), backed_by_audio=audio is not None or load_audio)
        clip = None
        if audio is None and load_audio:
            if doc.audio_path is None:
                raise ValueError("audio.path: null, so load_audio=True has no file to read; pass audio= instead")
            audio = doc.audio_path
        if audio is not None:
            rate = doc.sample_rate if not isinstance(audio, (str, Path, Audio)) else None
            clip = _load_audio(audio, rate, target_rate=doc.sample_rate, max_duration_s=max_duration_s,
                               allow_truncated=allow_truncated)
            covered = len(clip.samples) / (doc.frame_s * doc.sample_rate)
            if abs(covered - doc.n_frames) > 1:
                raise ValueError(f"audio: {clip.path or 'the audio array'} lasts {clip.duration_s:.2f} s, but the "
                                 f"document covers {doc.n_frames * doc.frame_s:.2f} s (n_frames {doc.n_frames}); "
                                 "is it the recording this explanation was made from?")
        tokens = [Token(**t) for t in doc.tokens]
        words = [Word(**w) for w in doc.words]
        ex = cls(model_name=doc.model, audio=clip, frame_s=doc.frame_s, n_frames=doc.n_frames, text=doc.text,
                 tokens=tokens, words=words, duration_s=doc.duration_s, audio_path=doc.audio_path,
                 sample_rate=doc.sample_rate)
        ex.peak_method = doc.peak_method
        key = _params_key(doc.params)
        for tok, stored in zip(tokens, doc.maps):
            for variant, values in stored.items():
                ex._cache[(variant, key, "token", tok.index)] = values
        return ex

    def __repr__(self):
        return (f"Explanation(model={self.model_name!r}, duration={self.duration_s:.2f}s, "
                f"tokens={len(self.tokens)}, text={self.text[:60]!r})")


def _params_key(params: dict) -> tuple:
    return tuple(sorted((k, v if isinstance(v, (int, float, str, bool)) else repr(v)) for k, v in params.items()))


def _as_maps(maps, method: str) -> np.ndarray:
    maps = np.array(maps, dtype=np.float32)
    maps.flags.writeable = False  # cached and shared: callers must not edit them in place
    if maps.ndim != 2 or not np.isfinite(maps).all() or (maps < 0).any():
        raise RuntimeError(f"method {method!r} returned maps that are not finite non-negative (n, frames) arrays")
    return maps
