"""The LEAF-X anywidget: synced waveform, log-Mel, transcript and attribution panes.

Python owns state and computation, JS (``js/src``) owns drawing and playback. The
widget talks to the browser through traits (selection, method, playback time) and
custom messages:

    browser -> kernel                          kernel -> browser
    {type: "init", stream}                     {type: "note", message}  (shown, not fatal)
                                               {type: "mel", offset_cols, n_cols, total_cols,
                                                n_mels, col_s, lo, hi}             + uint8 codes chunk
                                               {type: "peaks", block, n_blocks,
                                                total_samples}                     + int16 (min, max) pairs
                                               {type: "audio", stream, offset, n,
    {type: "audio_ack", stream}                 total}                             + int16 PCM chunk
    {type: "map", id, key, token, method,      {type: "map", id, key, token, method,
     params}                                    start_frame, n_frames, dtype}      + float32 map
                                               {type: "error", id, key, message}
    {type: "overview", method, params}         {type: "overview", key, row0, n_rows,
                                                n_tokens, n_bins}                  + uint8 rows

Maps are computed on a single background worker thread (so slow methods never block
the kernel's message loop, and the model is never run by two threads at once), with
map requests ahead of overview rows. Both sides cache maps by key.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
import pathlib
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

import anywidget
import numpy as np
import traitlets

from . import _codecs

log = logging.getLogger(__name__)

STATIC = pathlib.Path(__file__).parent / "static"
DEPTHS = ("full", "last_half", "middle_half", "one")
WIDGET_PARAMS = ("tau", "depth")  # the method parameters the widget's controls set
AUDIO_CHUNK_SAMPLES = 1 << 19  # 1 MB of int16 per message, well under the ~10 MB limit
MEL_CHUNK_BYTES = 1 << 21
AUDIO_WINDOW = 2  # audio chunks in flight per view
N_MELS_FALLBACK = 80  # blank spectrogram rows when the explanation has no model features
PEAK_BLOCK = 128  # samples per min/max pair of the waveform summary sent before the PCM
OVERVIEW_MAX_BINS = 2000
OVERVIEW_CHUNK_SECONDS = 0.25  # send overview rows at least this often while computing
PRIORITY_MAP, PRIORITY_OVERVIEW = 0, 1


def _registry() -> Mapping[str, Any]:
    from . import methods

    loader = getattr(methods, "_load_baselines", None)
    if loader is not None:  # baselines register themselves on import
        loader()
    return methods.METHODS


def _default_method(methods: Mapping[str, Any]) -> str:
    """The registry's DEFAULT_METHOD when it offers one, else "base", else the first method."""
    try:
        from .methods import DEFAULT_METHOD
    except ImportError:
        DEFAULT_METHOD = "base"
    for name in (DEFAULT_METHOD, "base"):
        if name in methods:
            return name
    return next(iter(methods))


def describe_methods(methods: Mapping[str, Any]) -> list[dict]:
    """JSON description of a method registry: name, label, cost, default params."""
    out = []
    for name, m in methods.items():
        params = dict(getattr(m, "params", None) or {})
        out.append({
            "name": name,
            "label": str(getattr(m, "label", None) or name),
            "cost": str(getattr(m, "cost", "fast")),
            "params": {k: v for k, v in params.items() if k in WIDGET_PARAMS},
        })
    return out


class _Worker:
    """One daemon thread running callables by priority (lower first, then FIFO)."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, priority: int, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leafx-widget", daemon=True)
                self._thread.start()
        self._queue.put((priority, next(self._counter), fn, future))
        return future

    def _run(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None:
                return
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # reported to whoever waits on the future
                    future.set_exception(exc)

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Blocks until everything submitted so far has run."""
        if self._thread is not None:
            self.submit(99, lambda: None).result(timeout)

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put((100, next(self._counter), None, Future()))


class LeafXWidget(anywidget.AnyWidget):
    """Interactive view of an :class:`~leafx_widgets.Explanation`.

    Parameters
    ----------
    explanation:
        The result of ``leafx_widgets.explain(model, audio)``.
    methods:
        Method registry to offer; defaults to ``leafx_widgets.methods.METHODS``.
    background:
        Compute maps on a worker thread (default). ``False`` computes inside the
        message handler, which is simpler to test but blocks the kernel meanwhile.
    """

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    # Selection and playback
    selected_token = traitlets.Int(0).tag(sync=True)
    """Index into ``explanation.tokens`` of the token whose map is shown. Default 0."""
    current_time = traitlets.Float(0.0).tag(sync=True)
    """Playhead position in seconds, written back by the browser while playing."""

    # Method and its parameters
    variant = traitlets.Unicode("base").tag(sync=True)
    """Name of the method (a key of the registry) drawn for the selected token."""
    compare_variant = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    """Second method shown next to ``variant``, or None."""
    compare_mode = traitlets.Enum(("side", "diff"), "side").tag(sync=True)
    """How to show the comparison: two lanes side by side, or variant minus compare."""
    tau = traitlets.Float(1.0).tag(sync=True)
    """Entropy temperature of the LEAF-X methods."""
    depth = traitlets.Unicode("full").tag(sync=True)
    """Rollout depth of the LEAF-X methods, one of ``DEPTHS``."""

    # Data, set once
    _meta = traitlets.Dict().tag(sync=True)

    def __init__(self, explanation, *, methods: Mapping[str, Any] | None = None,
                 background: bool = True, **kwargs):
        unknown = set(kwargs) - set(self.class_trait_names(sync=True)) - {"layout"}
        if unknown:
            raise TypeError(f"LeafXWidget got unexpected keyword arguments: {sorted(unknown)}")
        self.explanation = explanation
        self.methods = dict(methods if methods is not None else _registry())
        if not self.methods:
            raise ValueError("the method registry is empty")
        self.background = background
        self._worker = _Worker()
        self._maps: dict[tuple, np.ndarray] = {}
        self._overviews: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()
        self._payload: dict | None = None
        self._payload_lock = threading.Lock()
        self._streams: dict[str, int] = {}  # view -> next audio sample to send
        # tau/depth follow the shown method's own defaults until the user sets them
        self._user_params = {k for k in WIDGET_PARAMS if k in kwargs}
        self._following = True  # the constructor's own settings are not user choices
        kwargs.setdefault("variant", _default_method(self.methods))
        defaults = self._declared(kwargs["variant"])
        kwargs.setdefault("tau", float(defaults.get("tau", 1.0)))
        kwargs.setdefault("depth", str(defaults.get("depth", "full")))
        super().__init__(_meta=self._build_meta(), **kwargs)
        self._following = False
        self.on_msg(self._on_custom_msg)
        if background:  # PCM and spectrogram codes ready before the browser asks
            self._worker.submit(PRIORITY_MAP, self._audio_and_mel)

    # ---- validation ------------------------------------------------------------------
    @traitlets.validate("variant")
    def _check_variant(self, proposal):
        return self._check_method(proposal["value"])

    @traitlets.validate("compare_variant")
    def _check_compare(self, proposal):
        value = proposal["value"]
        return None if value in (None, "") else self._check_method(value)

    def _check_method(self, name: str) -> str:
        if name not in self.methods:
            raise traitlets.TraitError(f"unknown method {name!r}; choose from {sorted(self.methods)}")
        return name

    @traitlets.validate("selected_token")
    def _check_token(self, proposal):
        k, n = proposal["value"], len(self.explanation.tokens)
        if not 0 <= k < max(n, 1):
            raise traitlets.TraitError(f"selected_token {k} out of range [0, {n})")
        return k

    def _widget_params(self, method: str) -> dict:
        """The widget-controlled parameters ``method`` declares, with their defaults ({} when
        the registry has no such method)."""
        params = getattr(self.methods.get(method), "params", None) or {}
        return {k: v for k, v in params.items() if k in WIDGET_PARAMS}

    def _declared(self, method: str) -> dict:
        """``method``'s widget parameters over base's (the traits' fallback values)."""
        return {**self._widget_params("base"), **self._widget_params(method)}

    @traitlets.observe("tau", "depth")
    def _remember_user_choice(self, change):
        if not self._following:
            self._user_params.add(change["name"])

    @traitlets.observe("variant")
    def _follow_variant_defaults(self, change):
        """LEAF-X-SF's tau (0.5) differs from the paper methods' (1.0): show each method at its
        own default, unless the user has chosen a value, which then applies to every method."""
        defaults = self._declared(change["new"])
        following, self._following = self._following, True  # also runs inside __init__
        try:
            for name in set(defaults) - self._user_params:
                setattr(self, name, float(defaults[name]) if name == "tau" else str(defaults[name]))
        finally:
            self._following = following

    @traitlets.validate("tau")
    def _check_tau(self, proposal):
        if not proposal["value"] > 0:
            raise traitlets.TraitError(f"tau must be positive, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("depth")
    def _check_depth(self, proposal):
        if proposal["value"] not in DEPTHS:
            raise traitlets.TraitError(f"depth must be one of {DEPTHS}, got {proposal['value']!r}")
        return proposal["value"]

    @traitlets.validate("current_time")
    def _check_time(self, proposal):
        return float(min(max(proposal["value"], 0.0), self.explanation.duration_s))

    # ---- data ------------------------------------------------------------------------
    def _build_meta(self) -> dict:
        ex = self.explanation
        return {
            "model_name": str(ex.model_name),
            "text": str(ex.text),
            "duration_s": float(ex.duration_s),
            "sample_rate": int(ex.sample_rate),
            "frame_s": float(ex.frame_s),
            "n_frames": int(ex.n_frames),
            "audio_path": None if ex.audio_path is None else str(ex.audio_path),
            "tokens": [
                {"index": int(t.index), "id": int(t.id), "text": str(t.text), "word": int(t.word),
                 "logprob": float(t.logprob), "start_frame": int(t.start_frame), "n_frames": int(t.n_frames)}
                for t in ex.tokens
            ],
            "words": [
                {"index": int(w.index), "text": str(w.text), "tokens": [int(k) for k in w.tokens],
                 "peak_s": None if w.peak_s is None else float(w.peak_s)}
                for w in ex.words
            ],
            "methods": describe_methods(self.methods),
            "default_method": _default_method(self.methods),
            "depths": list(DEPTHS),
        }

    def _audio_and_mel(self) -> dict:
        """int16 PCM, its min/max summary and uint8 log-Mel codes (time-major), computed once."""
        with self._payload_lock:
            if self._payload is None:
                ex = self.explanation
                self._notes = []
                if ex.audio is None:  # e.g. Explanation.from_json without its audio file
                    self._notes.append("This explanation carries no audio (its file was not found): "
                                       "silence is shown instead.")
                    audio = np.zeros(int(round(ex.duration_s * ex.sample_rate)), dtype=np.float32)
                else:
                    audio = np.asarray(ex.audio, dtype=np.float32)
                pcm = _codecs.to_pcm16(audio)
                try:
                    mel = np.asarray(ex.log_mel(), dtype=np.float32)  # shape = (n_mels, n_cols)
                except ValueError as err:  # no model features, e.g. read from JSON
                    self._notes.append(f"No spectrogram: {err}")
                    mel = np.zeros((N_MELS_FALLBACK, 2 * ex.n_frames), dtype=np.float32)
                codes, lo, hi = _codecs.quantize_uint8(mel.T)  # shape = (n_cols, n_mels)
                n_cols = codes.shape[0]
                self._payload = {
                    "pcm": pcm, "peaks": _codecs.minmax_peaks(pcm, PEAK_BLOCK),
                    "codes": np.ascontiguousarray(codes), "lo": lo, "hi": hi,
                    "n_mels": int(mel.shape[0]), "n_cols": n_cols,
                    "col_s": float(ex.frame_s) * ex.n_frames / max(n_cols, 1),
                }
            return self._payload

    def method_params(self, method: str, params: Mapping[str, Any] | None = None) -> dict:
        """The parameters ``method`` declares, taken from ``params`` or the traits."""
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(self.methods)}")
        declared = self._widget_params(method)
        given = dict(params) if params is not None else {"tau": self.tau, "depth": self.depth}
        out = {}
        for name, default in declared.items():
            value = given.get(name, default)
            if name == "tau":
                value = float(value)
                if not value > 0:
                    raise ValueError(f"tau must be positive, got {value}")
            elif name == "depth" and value not in DEPTHS:
                raise ValueError(f"depth must be one of {DEPTHS}, got {value!r}")
            out[name] = value
        return out

    def get_map(self, token: int, method: str | None = None, **params) -> np.ndarray:
        """The float32 map of ``token`` (over its own frames), cached. Blocks until computed."""
        method = method or self.variant
        return self._run_now(lambda: self._compute_map(token, method, self.method_params(method, params or None)))

    def _compute_map(self, token: int, method: str, params: dict) -> np.ndarray:
        key = (token, method, tuple(sorted(params.items())))
        with self._lock:
            hit = self._maps.get(key)
        if hit is not None:
            return hit
        # defaults are left out, so the call matches maps cached by ex.map(token, method)
        # (and maps stored in a JSON explanation, which are keyed without parameters)
        defaults = getattr(self.methods.get(method), "params", None) or {}
        given = {k: v for k, v in params.items() if k not in defaults or v != defaults[k]}
        arr = _codecs.float32_map(self.explanation.map(token, method, **given))
        expected = self.explanation.tokens[token].n_frames
        if arr.shape != (expected,):
            raise ValueError(f"{method} map of token {token} has shape {arr.shape}, expected ({expected},)")
        with self._lock:
            self._maps[key] = arr
        return arr

    def _run_now(self, fn: Callable[[], Any]) -> Any:
        """Runs fn on the worker (so the model never runs on two threads) and waits."""
        if not self.background or threading.current_thread().name == "leafx-widget":
            return fn()
        return self._worker.submit(PRIORITY_MAP, fn).result()

    def _submit(self, priority: int, fn: Callable[[], Any]) -> None:
        if self.background:
            self._worker.submit(priority, fn)
        else:
            fn()

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Waits for queued map and overview work (tests and scripts)."""
        self._worker.wait_idle(timeout)

    # ---- messages --------------------------------------------------------------------
    def _on_custom_msg(self, _widget, content: dict, buffers: list) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "init":
                self._send_data(content)
            elif kind == "audio_ack":
                self._send_audio_chunk(str(content.get("stream", "")))
            elif kind == "map":
                self._on_map_request(content)
            elif kind == "overview":
                self._on_overview_request(content)
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except Exception as exc:  # reply instead of dying silently in the kernel log
            self._send_error(content.get("id") if isinstance(content, dict) else None,
                             content.get("key") if isinstance(content, dict) else None, exc)

    def _send_error(self, req_id, key, exc: BaseException) -> None:
        if not isinstance(exc, (ValueError, IndexError, KeyError, TypeError)):
            log.warning("leafx widget request failed:\n%s", traceback.format_exc())
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        self.send({"type": "error", "id": req_id, "key": key,
                   "message": f"{type(exc).__name__}: {message}"})

    def _send_data(self, content: dict) -> None:
        """Spectrogram and waveform summary first (the view draws), then the PCM for playback."""
        p = self._audio_and_mel()
        for note in self._notes:
            self.send({"type": "note", "message": note})
        codes, n_mels = p["codes"], p["n_mels"]
        cols_per_chunk = max(1, MEL_CHUNK_BYTES // max(n_mels, 1))
        for start, stop in _codecs.chunk_ranges(max(p["n_cols"], 1), cols_per_chunk):
            self.send({"type": "mel", "offset_cols": start, "n_cols": stop - start,
                       "total_cols": p["n_cols"], "n_mels": n_mels, "col_s": p["col_s"],
                       "lo": p["lo"], "hi": p["hi"]},
                      buffers=[memoryview(codes[start:stop]).cast("B")])
        total = int(p["pcm"].size)
        self.send({"type": "peaks", "block": PEAK_BLOCK, "n_blocks": int(p["peaks"].shape[0]),
                   "total_samples": total}, buffers=[memoryview(p["peaks"]).cast("B")])
        # The PCM follows with flow control: AUDIO_WINDOW chunks in flight, the next one sent
        # when the browser acknowledges one, so map replies are not queued behind 19 MB.
        stream = str(content.get("stream", ""))
        self._streams[stream] = 0
        for _ in range(AUDIO_WINDOW):
            self._send_audio_chunk(stream)

    def _send_audio_chunk(self, stream: str) -> None:
        pcm = self._audio_and_mel()["pcm"]
        start, total = self._streams.get(stream), int(pcm.size)
        if start is None or (start >= total and total > 0):
            self._streams.pop(stream, None)
            return
        stop = min(start + AUDIO_CHUNK_SAMPLES, total)
        self._streams[stream] = stop if total else 1
        self.send({"type": "audio", "stream": stream, "offset": start, "n": stop - start, "total": total},
                  buffers=[memoryview(pcm[start:stop]).cast("B")])

    def _on_map_request(self, content: dict) -> None:
        req_id, key = content.get("id"), content.get("key")
        token, method = content.get("token"), content.get("method")
        params = self.method_params(method, content.get("params") or {})

        def work() -> None:
            try:
                arr = self._compute_map(token, method, params)
            except Exception as exc:
                self._send_error(req_id, key, exc)
                return
            tok = self.explanation.tokens[token]
            self.send({"type": "map", "id": req_id, "key": key, "token": token, "method": method,
                       "params": params, "start_frame": int(tok.start_frame),
                       "n_frames": int(arr.size), "dtype": "float32"},
                      buffers=[memoryview(arr).cast("B")])

        with self._lock:
            cached = (token, method, tuple(sorted(params.items()))) in self._maps
        if cached:
            work()  # no need to queue behind slow work
        else:
            self._submit(PRIORITY_MAP, work)

    def overview_bins(self) -> int:
        return int(max(1, min(self.explanation.n_frames, OVERVIEW_MAX_BINS)))

    def _on_overview_request(self, content: dict) -> None:
        method = content.get("method") or _default_method(self.methods)
        params = self.method_params(method, content.get("params") or {})
        okey = (method, tuple(sorted(params.items())))
        key = f"{method}|" + "|".join(f"{k}={v}" for k, v in sorted(params.items()))
        n_tokens, n_bins = len(self.explanation.tokens), self.overview_bins()

        def send_rows(rows: np.ndarray, row0: int) -> None:
            self.send({"type": "overview", "key": key, "row0": row0, "n_rows": int(rows.shape[0]),
                       "n_tokens": n_tokens, "n_bins": n_bins},
                      buffers=[memoryview(np.ascontiguousarray(rows)).cast("B")])

        if okey in self._overviews:
            if n_tokens:
                send_rows(self._overviews[okey], 0)
            return
        rows = np.zeros((n_tokens, n_bins), dtype=np.uint8)
        state = {"next": 0, "sent": 0, "last": time.perf_counter()}

        def step() -> None:
            k = state["next"]
            try:
                arr = self._compute_map(k, method, params)
                rows[k] = _codecs.row_overview(arr, self.explanation.tokens[k].start_frame,
                                               self.explanation.n_frames, n_bins)
            except Exception as exc:
                self._send_error(None, None, RuntimeError(f"overview stopped at token {k}: {exc}"))
                return
            state["next"] = k + 1
            now = time.perf_counter()
            if state["next"] == n_tokens or now - state["last"] > OVERVIEW_CHUNK_SECONDS:
                send_rows(rows[state["sent"]:state["next"]], state["sent"])
                state["sent"], state["last"] = state["next"], now
            if state["next"] < n_tokens:
                self._submit(PRIORITY_OVERVIEW, step)  # map requests may run in between
            else:
                self._overviews[okey] = rows

        if n_tokens:
            self._submit(PRIORITY_OVERVIEW, step)

    def overview(self, method: str | None = None, **params) -> np.ndarray:
        """uint8 (n_tokens, n_bins) tokens x time overview, each row scaled to its peak."""
        method = method or _default_method(self.methods)
        params = self.method_params(method, params or {})

        def build() -> np.ndarray:
            okey = (method, tuple(sorted(params.items())))
            if okey not in self._overviews:
                ex, n_bins = self.explanation, self.overview_bins()
                rows = np.zeros((len(ex.tokens), n_bins), dtype=np.uint8)
                for k, tok in enumerate(ex.tokens):
                    rows[k] = _codecs.row_overview(self._compute_map(k, method, params),
                                                   tok.start_frame, ex.n_frames, n_bins)
                self._overviews[okey] = rows
            return self._overviews[okey]

        return self._run_now(build)

    # ---- export ----------------------------------------------------------------------
    def save_html(self, path, variants: Iterable[str] | None = None, *, title: str | None = None) -> pathlib.Path:
        """Writes one self-contained HTML file that works without a kernel.

        The maps of ``variants`` (default: the shown variant and compare variant) are
        precomputed for every token at the current tau and depth.
        """
        names = list(variants) if variants is not None else [self.variant, self.compare_variant]
        names = list(dict.fromkeys(n for n in names if n))
        for n in names:
            self._check_method(n)
        ex = self.explanation
        maps = {}
        for n in names:
            params = self.method_params(n)
            for k in range(len(ex.tokens)):
                arr = self.get_map(k, n, **params)
                maps[map_key(k, n, params)] = {"b64": _codecs.b64(arr),
                                                    "start_frame": int(ex.tokens[k].start_frame)}
        p = self._audio_and_mel()
        overview = self.overview(_default_method(self.methods)) if len(ex.tokens) else None
        data = {
            "meta": self._meta,
            "state": {"selected_token": self.selected_token, "current_time": 0.0,
                      "variant": names[0] if names else self.variant,
                      "compare_variant": self.compare_variant if self.compare_variant in names else None,
                      "compare_mode": self.compare_mode, "tau": self.tau, "depth": self.depth},
            "variants": names,
            "audio": {"b64": _codecs.b64(p["pcm"]), "total": int(p["pcm"].size)},
            "peaks": {"b64": _codecs.b64(p["peaks"]), "block": PEAK_BLOCK, "n_blocks": int(p["peaks"].shape[0]),
                      "total_samples": int(p["pcm"].size)},
            "mel": {"b64": _codecs.b64(p["codes"]), "n_cols": p["n_cols"], "total_cols": p["n_cols"],
                    "n_mels": p["n_mels"], "col_s": p["col_s"], "lo": p["lo"], "hi": p["hi"]},
            "maps": maps,
            "overview": None if overview is None else {
                "b64": _codecs.b64(overview), "key": "base|embedded", "n_rows": int(overview.shape[0]),
                "n_tokens": int(overview.shape[0]), "n_bins": int(overview.shape[1])},
        }
        path = pathlib.Path(path)
        path.write_text(render_html(data, title=title or f"LEAF-X · {ex.model_name}"), encoding="utf-8")
        return path

    def close(self) -> None:
        worker = getattr(self, "_worker", None)  # absent when __init__ raised
        if worker is not None:
            worker.stop()
        super().close()


def _js_str(value: Any) -> str:
    """``String(value)`` as JavaScript writes it, for keys shared with js/src/mapstore.js."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def map_key(token: int, method: str, params: Mapping[str, Any]) -> str:
    """The cache key the browser uses for a map (``mapKey`` in js/src/mapstore.js)."""
    return f"{token}|{method}|" + "|".join(f"{k}={_js_str(params[k])}" for k in sorted(params))


def _script_safe_json(data: Any) -> str:
    """JSON that cannot end its <script> element: <, >, & become \\u escapes."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict, *, title: str) -> str:
    bundle = (STATIC / "standalone.js").read_text(encoding="utf-8")
    css = (STATIC / "widget.css").read_text(encoding="utf-8")
    bundle = bundle.replace("</script", "<\\/script")
    text = html.escape(data["meta"]["text"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="leafx_widgets">
<title>{html.escape(title)}</title>
<style>
:root {{ color-scheme: light dark; }}
body {{ margin: 16px; font-family: system-ui, sans-serif; background: Canvas; color: CanvasText; }}
{css}
</style>
</head>
<body>
<noscript><p class="leafx-transcript-static">{text}</p></noscript>
<div id="leafx"></div>
<script id="leafx-data" type="application/json">{_script_safe_json(data)}</script>
<script>{bundle}</script>
<script>
window.leafxView = LeafX.mount(document.getElementById("leafx"),
  JSON.parse(document.getElementById("leafx-data").textContent));
</script>
</body>
</html>
"""


def show(source=None, model=None, **kwargs) -> LeafXWidget:
    """A widget for an Explanation, or for audio explained by ``model``.

    ``source`` may be an Explanation, a path, or None for the bundled sample;
    ``model`` a loaded adapter or a name for ``load_model`` (default "tiny.en").
    """
    from . import explanation as _explanation

    if isinstance(source, _explanation.Explanation):
        return LeafXWidget(source, **kwargs)
    from . import explain, load_model

    if source is None:
        from . import sample_path

        source = sample_path()
    if model is None or isinstance(model, str):
        model = load_model(model or "tiny.en")
    return LeafXWidget(explain(model, source), **kwargs)
