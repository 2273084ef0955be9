"""``explain()`` decodes once; an ``Explanation`` computes maps on request and caches them."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import schema
from . import longform
from .audio import DEFAULT_MAX_DURATION_S, Audio, load_audio
from .spilled import SpilledSamples
from .longform import DecodeOptions
from .windows import DEFAULT_KEPT_WINDOWS, Window, WindowStore
from ._progress import progress as _progress
from .atomic import atomic_write
from .methods import DEFAULT_METHOD, VARIANTS, available_methods, get_method
from .schema import SCHEMA

_load_audio = load_audio  # from_json has a load_audio flag
WINDOW_SILENCE_PEAK = longform.WINDOW_SILENCE_PEAK
# Windows whose batched maps (one method, one parameter set) stay in memory: ~0.6 MB each for a 30 s
# window of ~100 tokens. The others are recomputed from the audio when asked again.
DEFAULT_KEPT_MAP_WINDOWS = 16


class MapCache:
    """Computed maps, keyed ``(method, params, "window" | "token", index)``.

    "window" entries (a batched method's maps of a whole window) are cheap to recompute from the
    audio, so only the ``kept`` most recently used are held: memory stays flat on long recordings.
    "token" entries (a per-token method such as occlusion, or maps read from JSON) are slow or
    impossible to recompute, and are only made on request: they are all kept.
    """

    def __init__(self, kept: int = DEFAULT_KEPT_MAP_WINDOWS):
        if isinstance(kept, bool) or not isinstance(kept, (int, np.integer)) or kept < 1:
            raise ValueError(f"kept_map_windows must be a whole number >= 1, got {kept!r}")
        self.kept = int(kept)
        self._entries: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the widget's worker and the notebook read it at once
        self.evicted = 0  # window entries dropped (each is recomputed if asked again)

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            maps = self._entries.get(key)
            if maps is not None and key[2] == "window":
                self._entries.move_to_end(key)
            return maps

    def __setitem__(self, key: tuple, maps: np.ndarray) -> None:
        with self._lock:
            self._entries[key] = maps
            if key[2] != "window":
                return
            self._entries.move_to_end(key)
            windows = [k for k in self._entries if k[2] == "window"]
            for old in windows[: max(0, len(windows) - self.kept)]:
                del self._entries[old]
                self.evicted += 1

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        with self._lock:
            return iter(list(self._entries))

    def values(self):
        with self._lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(slots=True)  # slots: thousands of tokens on a long recording
class Token:
    index: int  # position among all text tokens of the explanation
    id: int  # vocabulary id
    text: str
    word: int  # index of the word it belongs to
    logprob: float  # log p when it was decoded
    window: int  # decoding window it came from
    start_frame: int  # first frame of its window in the whole audio; its map covers
    n_frames: int  # frames [start_frame, start_frame + n_frames)
    temperature: float = 0.0  # > 0: its window was decoded under a fallback, sampling at this temperature
    segment: int = -1  # index of its segment in ``Explanation.segments``

    @property
    def fallback(self) -> bool:
        return self.temperature > 0


@dataclass(slots=True)
class Word:
    index: int
    text: str
    tokens: list[int]
    peak_s: float | None = None  # time of the peak of the word's summed DEFAULT_METHOD maps


@dataclass(slots=True)
class Segment:
    """A stretch of speech between two timestamps (long-form), or one window's text (short-form)."""

    index: int
    start: float  # seconds in the whole audio
    end: float
    text: str
    tokens: list[int]  # global token indices
    window: int
    temperature: float = 0.0


def explain(model, audio, *, sample_rate: int | None = None,
            max_duration_s: float | None = DEFAULT_MAX_DURATION_S, progress=None, wait: bool = True,
            kept_windows: int = DEFAULT_KEPT_WINDOWS, kept_map_windows: int = DEFAULT_KEPT_MAP_WINDOWS,
            precompute=(DEFAULT_METHOD,), options: DecodeOptions | None = None, reference=None,
            **decoding) -> "Explanation":
    """Decode ``audio`` with ``model`` and return a lazy ``Explanation`` (maps computed on request).

    ``model``: an adapter from ``load_model`` or a model name. ``audio``: a path or an array (then
    ``sample_rate`` is required). Audio longer than one window (Whisper: 30 s) is decoded with
    Whisper's long-form algorithm (``longform``): timestamps, each window starting where the last
    complete segment ended, conditioned on the text so far, with the temperature fallback; each
    token is explained over the window it was decoded in.

    ``decoding``: ``DecodeOptions`` fields, e.g. ``condition_on_previous_text=False``,
    ``timestamps=True``, ``temperatures=(0.0,)`` (no fallback). ``progress``: a bar over the audio
    (None: in a terminal or notebook when there is more than one window), False, or a callable
    ``progress(decoded_s, total_s)`` called after each window. ``wait=False`` returns at once, before
    decoding: call ``ex.decode_next()`` (the widget does, on its worker) or ``ex.decode_all()``.
    ``kept_windows``: windows whose features and encoder output stay in memory; the others are
    recomputed when a map needs them. ``kept_map_windows``: windows whose maps (per method and
    parameters) stay in memory; older ones are recomputed when asked again. ``precompute``: methods whose maps are computed for each window
    right after it is decoded, while its encoder output is at hand (default: DEFAULT_METHOD, whose
    maps give the words' ``peak_s``; ``()`` computes nothing until asked). ``reference``: what the audio
    says (a transcript, or a manifest's ``[{"word", "start", "end"}]``), kept as ``ex.reference`` for
    ``ex.audit()``.
    """
    if isinstance(model, (str, Path)):
        from .models import load_model

        model = load_model(model)
    opts = DecodeOptions.from_kwargs(options, **decoding)
    if reference is not None:
        from .audit.table import parse_reference

        reference = parse_reference(reference)
    clip = load_audio(audio, sample_rate, target_rate=model.sample_rate, max_duration_s=max_duration_s)
    store = WindowStore(clip.samples, kept_windows)
    decoder = longform.LongFormDecoder(model, clip.samples, opts, store)
    ex = Explanation(model_name=model.name, audio=clip, frame_s=model.frame_s, n_frames=decoder.total_frames,
                     text="", tokens=[], words=[], windows=[], adapter=model)
    ex._decoder = decoder
    ex._cache = MapCache(kept_map_windows)
    ex.reference = reference
    ex._precompute = tuple(precompute)
    for name in ex._precompute:
        get_method(name).check_available()
    if wait:
        ex.decode_all(progress=progress)
    return ex


def _window_words(window: Window, tokens: list[Token], words: list[Word], model) -> None:
    """The window's words (``model.words``: the scheme of its tokenizer); a word never spans windows."""
    text_ids = [window.ids[p] for p in window.text_positions]
    for positions in model.words(text_ids):
        members = [window.tokens[p] for p in positions]
        words.append(Word(index=len(words), text=model.text([text_ids[p] for p in positions]), tokens=members))
        for t in members:
            tokens[t].word = words[-1].index


class Explanation:
    """Tokens and words of one decoded clip, with per-(method, params) maps computed lazily."""

    def __init__(self, *, model_name: str, audio: Audio | None, frame_s: float, n_frames: int, text: str,
                 tokens: list[Token], words: list[Word], windows: list[Window] | None = None,
                 duration_s: float | None = None, audio_path: str | None = None, sample_rate: int | None = None,
                 segments: list[Segment] | None = None, adapter=None):
        self.model_name = model_name
        self._audio = audio
        self.frame_s = frame_s
        self.n_frames = n_frames
        self.text = text
        self.tokens = tokens
        self._words = words
        self.windows = windows or []
        self.segments: list[Segment] = segments or []
        self._adapter = adapter if adapter is not None else (self.windows[0].adapter if self.windows else None)
        self.duration_s = audio.duration_s if audio is not None else duration_s
        self.audio_path = audio.path if audio is not None else audio_path
        self.sample_rate = audio.sample_rate if audio is not None else sample_rate
        self._cache = MapCache()
        self._lock = threading.RLock()  # the widget computes in a worker thread
        self.peak_method: str | None = DEFAULT_METHOD if self._adapter is not None else None  # words' peak_s
        self.notes: list[str] = []
        self._decoder: longform.LongFormDecoder | None = None  # set by explain()
        self._precompute: tuple[str, ...] = ()
        self._language: str | None = None  # read from JSON (a decoder knows its own)
        self._task = "transcribe"
        self._patched: dict = {}  # activation patching: (window, corruption, restored sites) -> log-probs
        self.reference = None  # audit.table.Reference: what the audio says (explain(reference=...))

    # -- decoding, window by window ---------------------------------------------------------
    @property
    def complete(self) -> bool:
        """True once the whole recording is decoded (always, for one read from JSON)."""
        return self._decoder is None or self._decoder.done

    @property
    def decoded_s(self) -> float:
        """Seconds of audio decoded so far."""
        return self.duration_s if self.complete else self._decoder.decoded_s

    def decode_next(self) -> Window | None:
        """Decode one more window and add its tokens, words and segments; None when complete."""
        with self._lock:
            if self.complete:
                return None
            index = self._decoder.index
            try:
                step = self._decoder.next()
            except BaseException:  # stopped mid-window (a closed widget, ^C): decoded again next time
                self._decoder.index = index
                raise
            if step is None:
                return None
            self._add_window(step)
            self._precompute_maps(step.window)
            return step.window

    def _precompute_maps(self, window: Window) -> None:
        if not window.tokens:
            return
        for method in self._precompute:
            self.map(window.tokens[0], method)  # a batched method computes the whole window
        if DEFAULT_METHOD in self._precompute:
            first = self.tokens[window.tokens[0]].word
            for word in self._words[first:]:
                word.peak_s = self._peak(word, DEFAULT_METHOD, {})

    def decode_all(self, progress=None) -> "Explanation":
        """Decode the rest of the recording. ``progress``: as ``explain``'s."""
        if self.complete:
            return self
        report = progress if callable(progress) else None
        enabled = False if report else progress
        if enabled is None:
            enabled = False if self.duration_s <= self._adapter.window_samples / self._adapter.sample_rate else None
        total = round(float(self.duration_s), 1)
        with _progress(None, total=total, desc="decoding", unit="s", enabled=enabled) as bar:
            while self.decode_next() is not None:
                bar.update(round(self.decoded_s, 1) - bar.n)
                if report:
                    report(self.decoded_s, float(self.duration_s))
        return self

    def _add_window(self, step: "longform.DecodedWindow") -> None:
        window, model = step.window, self._adapter
        tokens = self.tokens
        for p in window.text_positions:
            window.tokens.append(len(tokens))
            tokens.append(Token(index=len(tokens), id=int(window.ids[p]), text=model.token_text(window.ids[p]),
                                word=-1, logprob=float(window.logprobs[p]), window=window.index,
                                start_frame=window.offset_frames, n_frames=window.n_valid,
                                temperature=window.temperature))
        at = dict(zip(window.text_positions, window.tokens))
        for span in step.spans:
            members = [at[p] for p in range(span.first, span.stop) if p in at]
            if not members:
                continue  # timestamps only
            segment = Segment(index=len(self.segments),
                              start=round((window.offset_frames + span.start_frame) * self.frame_s, 3),
                              end=round((window.offset_frames + span.end_frame) * self.frame_s, 3),
                              text=model.text([tokens[t].id for t in members]).strip(), tokens=members,
                              window=window.index, temperature=window.temperature)
            self.segments.append(segment)
            for t in members:
                tokens[t].segment = segment.index
        _window_words(window, tokens, self._words, model)
        self.windows.append(window)
        piece = model.text([tokens[t].id for t in window.tokens]).strip()
        if piece:
            self.text = f"{self.text} {piece}" if self.text else piece

    @property
    def language(self) -> str | None:
        """The language decoded: forced (``explain(language=...)``, ``load_model(language=...)``), else
        detected on the first window with sound; "en" for an English-only model."""
        return self._decoder.language if self._decoder is not None else self._language

    @property
    def language_probs(self) -> dict[str, float] | None:
        """p(language) of the detection, most likely first (None when forced or English-only)."""
        return self._decoder.language_probs if self._decoder is not None else None

    @property
    def task(self) -> str:
        return self._decoder.options.task if self._decoder is not None else self._task

    # -- audio and features -------------------------------------------------------------
    @property
    def audio(self) -> "np.ndarray | SpilledSamples | None":
        """The mono float32 samples at ``sample_rate``; None for an explanation read from JSON, unless
        ``from_json`` was given the recording (``audio=`` or ``load_audio=True``).

        An ndarray, except for a file longer than ``audio.SPILL_AFTER_S`` (5 minutes): then a read-only
        ``SpilledSamples`` kept in a temporary file, with ``len``, ``shape``, ``dtype`` and ``[int]`` /
        ``[slice]`` giving fresh ndarrays; ``np.asarray(ex.audio)`` reads it whole into memory."""
        return None if self._audio is None else self._audio.samples

    @property
    def model(self):
        return self._adapter

    def log_mel(self) -> np.ndarray:
        """The model's log-Mel input over the whole audio: (n_mels, n_frames * input_frames_per_frame),
        computed from the audio in consecutive windows (Whisper: 2 mel columns of 10 ms per attended
        frame of 20 ms), without decoding anything.
        """
        model = self._adapter
        if model is None or self._audio is None:
            raise ValueError("this Explanation has no model or audio (read from JSON); explain the audio again")
        samples, per_frame = self._audio.samples, model.input_frames_per_frame
        parts = []
        for start in range(0, len(samples), model.window_samples):
            chunk = samples[start:start + model.window_samples]
            parts.append(model.features(chunk)[0, :, : per_frame * model.valid_frames(len(chunk))].float().cpu().numpy())
        mel = np.concatenate(parts, axis=1) if parts else np.zeros((model.n_mels, 0), np.float32)
        return mel[:, : per_frame * self.n_frames]

    def blank_log_mel(self) -> np.ndarray:
        """Zeros in the shape of ``log_mel()``, for a view without features (read from JSON).

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
        if self._adapter is None:
            raise ValueError(f"no {method!r} map stored for token {token}, and this Explanation was read from JSON "
                             f"without a model; stored: {sorted({k[0] for k in self._cache})}")
        spec = get_method(method)
        resolved = spec.resolve(params)
        window = self.windows[tok.window]
        if not spec.supports(window.adapter):
            raise ValueError(f"method {method!r} needs {', '.join(spec.needs)} from the model, which "
                             f"{self.model_name!r} does not offer; available: {', '.join(available_methods(window.adapter))}")
        with self._lock:
            if spec.batched:  # every text token of the window (timestamp tokens are not explained)
                maps = _as_maps(spec.compute(window, list(window.text_positions), **resolved), method)
                self._cache[(method, key, "window", tok.window)] = maps
                return maps[window.tokens.index(tok.index)]
            single = _as_maps(spec.compute(window, [window.position(tok.index)], **resolved), method)[0]
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

    # -- inside the model: lenses and activation patching (lens.py, patching.py) ------------
    def _model_window(self, token):
        tok = self._check_token(token)
        if self._adapter is None:
            raise ValueError("this Explanation has no model (read from JSON); explain the audio again to look inside it")
        return tok, self.windows[tok.window]

    def logit_lens(self, token: int, k: int = 5):
        """The logit lens of ``token``: its log-prob, rank and top ``k`` alternatives read out after each
        decoder layer (``lens.LogitLens``); the last layer is the model's own output."""
        from . import lens

        tok, window = self._model_window(token)
        with self._lock:
            return lens.logit_lens(window, window.position(tok.index), tok.index, k)

    def encoder_lens(self, layer: int, window: int = 0):
        """The transcript of window ``window`` decoded from encoder layer ``layer``'s output (``lens.EncoderLens``)."""
        from . import lens

        if self._adapter is None:
            raise ValueError("this Explanation has no model (read from JSON); explain the audio again to look inside it")
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 0 <= window < len(self.windows):
            raise IndexError(f"window {window!r} is out of range: this explanation has {len(self.windows)} windows")
        if not self.windows[window].decoded:
            raise ValueError(f"window {window} is silent and was never encoded")
        with self._lock:
            return lens.encoder_lens(self.windows[window], layer)

    def _corruption(self, corrupt, snr_db, seed):
        from . import patching

        if self._audio is None:
            raise ValueError("this Explanation has no audio (read from JSON); patching needs the recording")
        return patching.corruption(corrupt, self._audio.samples, snr_db=snr_db, seed=seed)

    def patch(self, token: int, corrupt="noise", restore=(), *, snr_db: float | None = None, seed: int = 0) -> float:
        """log p of ``token`` when the model hears ``corrupt`` ("noise" at ``snr_db``, "silence" or a recording
        as long as this one) with the clean transcript teacher-forced and the activations ``restore`` names
        restored from the clean run (``patching`` lists the sites). ``restore=()``: the corrupted log-prob;
        ``restore=("encoder",)``: the clean one."""
        from . import patching

        tok, window = self._model_window(token)
        corruption = self._corruption(corrupt, patching.DEFAULT_SNR_DB if snr_db is None else snr_db, seed)
        with self._lock:
            return patching.patch(window, window.position(tok.index), corruption, restore, self._patched)

    def patching(self, token: int, corrupt="noise", over: str = "time", *, n_spans: int = 30,
                 snr_db: float | None = None, seed: int = 0):
        """The normalised effect (0 = corrupted, 1 = clean) on ``token`` of restoring each site ``over``
        "layers", "heads" or "time" (``n_spans`` stretches of its window): a ``patching.Patching``."""
        from . import patching

        tok, window = self._model_window(token)
        corruption = self._corruption(corrupt, patching.DEFAULT_SNR_DB if snr_db is None else snr_db, seed)
        with self._lock:
            return patching.patching(window, window.position(tok.index), tok.index, corruption, over, self._patched,
                                     n_spans=n_spans)

    # -- words ------------------------------------------------------------------------------
    @property
    def words(self) -> list[Word]:
        """Words, with the time of their peak attribution (DEFAULT_METHOD, computed on first access;
        while decoding continues, for the words decoded so far)."""
        if self._adapter is not None:
            for word in self._words:
                if word.peak_s is None:
                    word.peak_s = self._peak(word, DEFAULT_METHOD, {})
        return self._words

    def word_peaks(self, method: str = DEFAULT_METHOD, **params) -> list[float]:
        """Each word's peak time in seconds under ``method``: the frame where its tokens' summed map is largest."""
        return [self._peak(word, method, params) for word in self._words]

    def _peak(self, word: Word, method: str, params: dict) -> float:
        first = self.tokens[word.tokens[0]]
        mass = sum(self.map(t, method, **params) for t in word.tokens)  # a word never spans windows
        return round((first.start_frame + int(np.argmax(mass)) + 0.5) * self.frame_s, 4)

    # -- error analysis ---------------------------------------------------------------------
    def audit(self, reference=None, **options):
        """One row per token: log-prob, map entropy, mass outside its reference word, stability under
        noise, a suspicion ``score`` and ``flag``; with a reference, ``error`` labels and
        ``.attrs["deletions"]`` (a pandas DataFrame; ``audit.table`` documents every column)."""
        from .audit.table import audit

        return audit(self, reference, **options)

    def contrast(self, token: int, foil: str, **options):
        """Evidence for ``token``'s word against ``foil``: a signed map of log p(word) - log p(foil)
        over the token's window (``audit.contrast``)."""
        from .audit.contrast import contrast

        return contrast(self, token, foil, **options)

    # -- serialisation ----------------------------------------------------------------------
    def to_json(self, methods=VARIANTS, *, peak_method: str | None = None, variants=None, **params) -> dict:
        """The ``leafx-explanation/1`` schema; maps of ``methods`` computed now if needed (``variants``: an
        alias of ``methods``).

        Each word's ``peak_s`` comes from ``peak_method`` (default: DEFAULT_METHOD with a model, the
        document's own when read from JSON), whose maps are saved too and which the document names."""
        peak_method = peak_method or self.peak_method
        methods = methods if variants is None else variants
        variants = tuple(dict.fromkeys([*methods, *([peak_method] if peak_method else [])]))
        if self._adapter is not None:  # with a model, unknown names fail before any work (without, map() says what is stored)
            for v in variants:
                get_method(v)
        tokens = []
        for tok in self.tokens:
            maps = {v: [round(float(x), 7) for x in self.map(tok.index, v, **params)] for v in variants}
            tokens.append({"index": tok.index, "id": tok.id, "text": tok.text, "word": tok.word,
                           "logprob": tok.logprob, "start_frame": tok.start_frame, "window": tok.window,
                           "n_frames": tok.n_frames, "temperature": tok.temperature, "segment": tok.segment,
                           "maps": maps})
        # self._words, not .words: that would compute DEFAULT_METHOD's peaks as well
        peaks = self.word_peaks(peak_method, **params) if peak_method else [w.peak_s for w in self._words]
        words = [{"index": w.index, "text": w.text, "tokens": list(w.tokens), "peak_s": peak}
                 for w, peak in zip(self._words, peaks)]
        return {"schema": SCHEMA, "model": self.model_name,
                "audio": {"path": self.audio_path, "duration_s": self.duration_s, "sample_rate": self.sample_rate},
                "frame_s": self.frame_s, "n_frames": self.n_frames, "text": self.text,
                "params": {k: v for k, v in params.items()}, "peak_method": peak_method,
                "tokens": tokens, "words": words,
                "segments": [{"index": s.index, "start": s.start, "end": s.end, "text": s.text, "tokens": list(s.tokens),
                              "window": s.window, "temperature": s.temperature} for s in self.segments]}

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
        segments = [Segment(**s) for s in doc.segments]
        ex = cls(model_name=doc.model, audio=clip, frame_s=doc.frame_s, n_frames=doc.n_frames, text=doc.text,
                 tokens=tokens, words=words, duration_s=doc.duration_s, audio_path=doc.audio_path,
                 sample_rate=doc.sample_rate, segments=segments)
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
