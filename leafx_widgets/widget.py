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
    {type: "map", id, key, token, method,      {type: "map", id, ids, key, token, method,
     params, selected}                          start_frame, n_frames, dtype}      + float32 map
                                               {type: "progress", id, ids, key, token, method,
                                                note, expected_s}  (a slow map has started)
    {type: "cancel", ids}                      {type: "cancelled", id, ids, key, reason}
                                               {type: "error", id, ids, key, message}
    {type: "overview", method, params}         {type: "overview", key, row0, n_rows,
                                                n_tokens, n_bins}                  + uint8 rows

``selected`` is the token the page shows when it asks (a prefetch of a neighbour carries
the selected token, not its own). ``ids`` lists every request a reply answers: identical
requests are merged into one computation.

Maps are computed on one background worker thread per widget (slow methods never block
the kernel's message loop, and the model is never run by two of its threads at once).
The worker follows the user: Python calls first, then map requests (the selected token's
first, newest first), then overview rows. Map work for a token the page no longer shows
is dropped before it starts, or stopped at the next model layer if it is running (every
torch module call on the worker is a cancellation point), and the page is told. At
interpreter exit the worker is stopped and joined, so no thread is inside torch when
the process ends. Both sides cache maps by key.
"""

from __future__ import annotations

import atexit
import html
import itertools
import json
import logging
import math
import numbers
import pathlib
import threading
import time
import traceback
import weakref
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
EXIT_JOIN_S = 30.0  # at interpreter exit, how long to wait for a running computation to stop
BUNDLE = ("widget.js", "widget.css", "standalone.js")  # built by js/build.mjs into STATIC
DESELECTED, BY_USER, CLOSED = "deselected", "user", "closed"  # why a map request was cancelled


class MissingBundleError(RuntimeError):
    """The built JavaScript bundle (``leafx_widgets/static``) is missing, e.g. in a fresh source checkout."""


def _check_bundle(*names: str) -> None:
    missing = [n for n in names if not (STATIC / n).is_file()]
    if missing:
        raise MissingBundleError(
            f"The widget's JavaScript bundle is missing ({', '.join(missing)} in {STATIC}): build it with "
            f"`pip install -e .` (its build hook runs npm) or `cd js && npm ci && npm run build` "
            f"in the source checkout.")


def _bundle_file(name: str):
    """anywidget reads ``_esm``/``_css`` when the class is defined: a missing bundle must not break the
    import (the constructor says how to build it instead)."""
    path = STATIC / name
    return path if path.is_file() else ""


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
    """JSON description of a method registry: name, label, cost, default params, and whether its
    optional packages are installed (the page lists a missing one greyed out, with the pip command)."""
    out = []
    for name, m in methods.items():
        params = dict(getattr(m, "params", None) or {})
        available = bool(getattr(m, "available", True))
        out.append({
            "name": name,
            "label": str(getattr(m, "label", None) or name),
            "cost": str(getattr(m, "cost", "fast")),
            "params": {k: v for k, v in params.items() if k in WIDGET_PARAMS},
            "available": available,
            "needs": None if available else f'pip install "leafx-widgets[{m.extra}]"',
        })
    return out


class Cancelled(Exception):
    """Stops a computation on a widget's worker: nobody wants its result any more."""


_current = threading.local()  # .job: the job this worker thread is running
_hook_lock = threading.Lock()
_hook = None


def _checkpoint(*_hook_args) -> None:
    """Cooperative cancellation point: every torch module call on a widget worker passes here."""
    job = getattr(_current, "job", None)
    if job is not None and job.cancel.is_set():
        raise Cancelled(job.reason)


def _install_checkpoint() -> None:
    """One global torch forward pre-hook makes every layer of every model a point where the worker
    can stop (so IG, LIME, SPES... need no hook of their own); on other threads it does nothing."""
    global _hook
    with _hook_lock:
        if _hook is None:
            import torch

            _hook = torch.nn.modules.module.register_module_forward_pre_hook(_checkpoint)


class _Job:
    """A unit of work for the worker; ``run(job)`` returns True when it has more to do (overview rows)."""

    def __init__(self, lane: str, run: Callable[["_Job"], Any], *, key=None, token: int | None = None,
                 selection: int | None = None, future: Future | None = None):
        self.lane, self.run, self.key = lane, run, key  # lane: "call" (Python API), "map" or "overview"
        self.token, self.selection, self.future = token, selection, future
        self.requesters: dict = {}  # page request id -> the page's key for it, oldest first
        self.state: dict = {}
        self.cancel = threading.Event()
        self.reason = ""
        self.done = False  # answered: later requests must not join it
        self.seq = 0

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()


def _call_job(fn: Callable[[], Any], future: Future | None = None) -> _Job:
    def run(_job):
        if future is None:
            fn()
        elif future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # reported to whoever waits on the future
                future.set_exception(exc)
        return False

    return _Job("call", run, future=future)


_WORKERS: "weakref.WeakSet[_Worker]" = weakref.WeakSet()
_LANES = {"call": 0, "map": 1, "overview": 2}


class _Worker:
    """One daemon thread running a widget's jobs. Next: Python calls (oldest first), then map
    requests (the selected token's before prefetches, newest first), then overview rows."""

    def __init__(self, selected: Callable[[], int]):
        self.cond = threading.Condition()  # guards the queue, the running job and the jobs' requesters
        self.queued: list[_Job] = []
        self.running: _Job | None = None
        self.closed = False
        self._selected = selected
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def _rank(self, job: _Job) -> tuple:
        if job.lane == "map":
            return (1, job.token != self._selected(), -job.seq)
        return (_LANES[job.lane], job.seq)

    def submit(self, job: _Job) -> _Job:
        with self.cond:
            if self.closed:
                raise RuntimeError("this widget is closed")
            job.seq = next(self._seq)
            self.queued.append(job)
            if self._thread is None:
                _install_checkpoint()
                self._thread = threading.Thread(target=self._loop, name="leafx-widget", daemon=True)
                self._thread.start()
                _WORKERS.add(self)
            self.cond.notify_all()
        return job

    def renew(self, job: _Job) -> None:
        """Makes ``job`` the newest (a repeated request). Call with ``cond`` held."""
        job.seq = next(self._seq)

    def live(self, lane: str) -> list[_Job]:
        """The running and queued jobs of ``lane`` still wanted. Call with ``cond`` held."""
        jobs = ([self.running] if self.running is not None else []) + self.queued
        return [j for j in jobs if j.lane == lane and not j.done and not j.cancel.is_set()]

    def find(self, lane: str, key) -> _Job | None:
        return next((j for j in self.live(lane) if j.key == key), None)

    @property
    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queued and not self.closed:
                    self.cond.wait()
                if self.closed:
                    return
                job = min(self.queued, key=self._rank)
                self.queued.remove(job)
                self.running = job
            _current.job = job
            again = False
            try:
                again = job.run(job)
            except BaseException:  # jobs reply their own errors; this only keeps the thread alive
                log.warning("leafx widget job failed:\n%s", traceback.format_exc())
            finally:
                _current.job = None
            with self.cond:
                self.running = None
                if again and not self.closed and not job.cancel.is_set():
                    self.queued.append(job)
                self.cond.notify_all()

    def wait_idle(self, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: not self.queued and self.running is None, timeout):
                raise TimeoutError(f"the widget's worker is still busy after {timeout} s")

    def stop(self, join_timeout: float | None = None) -> bool:
        """Takes no more work, drops what is queued, asks the running job to stop at its next model
        layer, and optionally waits for the thread. True when the thread is gone (or never ran)."""
        with self.cond:
            self.closed = True
            dropped, self.queued = self.queued, []
            if self.running is not None:
                self.running.stop(CLOSED)
            self.cond.notify_all()
        for job in dropped:
            if job.future is not None and not job.future.done():
                job.future.set_exception(Cancelled("the widget was closed"))
        thread = self._thread
        if join_timeout is None or thread is None or self.on_thread:
            return thread is None or not thread.is_alive()
        thread.join(join_timeout)
        return not thread.is_alive()


@atexit.register
def _stop_workers() -> None:
    """No worker may be inside torch when the interpreter finalizes: Python ends a daemon thread
    that wakes up then with pthread_exit, and unwinding torch's C++ frames aborts the process
    ("terminate called without an active exception"). So stop them all, then wait for each."""
    workers = list(_WORKERS)
    for w in workers:
        w.stop()
    deadline = time.monotonic() + EXIT_JOIN_S
    for w in workers:
        if not w.stop(join_timeout=max(0.0, deadline - time.monotonic())):
            log.warning("leafx widget: a computation did not stop within %.0f s of exit", EXIT_JOIN_S)


def _by_key(requesters: Mapping) -> dict:
    """Request ids grouped by the page's key for them: one reply per key answers them all."""
    out: dict = {}
    for req_id, key in requesters.items():
        out.setdefault(key, []).append(req_id)
    return out


def _finite_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and positive, got {value!r}")
    return value


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

    _esm = _bundle_file("widget.js")
    _css = _bundle_file("widget.css")

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
        _check_bundle("widget.js", "widget.css")
        for attr, name in (("_esm", "widget.js"), ("_css", "widget.css")):
            if not getattr(type(self), attr):  # built after this module was imported
                setattr(self, attr, (STATIC / name).read_text(encoding="utf-8"))
        self.explanation = explanation
        self.methods = dict(methods if methods is not None else _registry())
        if not self.methods:
            raise ValueError("the method registry is empty")
        self.background = background
        self._selected = kwargs.get("selected_token", 0)  # the token the page shows
        self._worker = _Worker(lambda: self._selected)
        self._expected_s: dict[tuple, float] = {}  # (method, params) -> seconds its last map took
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
            self._worker.submit(_call_job(self._audio_and_mel))

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
        check = getattr(self.methods[name], "check_available", None)
        if check is not None:
            try:
                check()
            except ValueError as err:  # MethodUnavailable: the extra that brings it is missing
                raise traitlets.TraitError(str(err)) from None
        return name

    @traitlets.validate("selected_token")
    def _check_token(self, proposal):
        k, n = proposal["value"], len(self.explanation.tokens)
        if not 0 <= k < max(n, 1):
            raise traitlets.TraitError(f"selected_token {k} out of range [0, {n})")
        return k

    @traitlets.observe("selected_token")
    def _follow_selection(self, change):
        self._select(change["new"])

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
        try:
            return _finite_positive("tau", proposal["value"])
        except ValueError as err:
            raise traitlets.TraitError(str(err)) from None

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
                    self._notes.append("This explanation was read from JSON without its recording (pass "
                                       "audio= or load_audio=True to Explanation.from_json): silence is shown instead.")
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
        """The parameters ``method`` declares, taken from ``params`` or the traits, checked."""
        if not isinstance(method, str) or method not in self.methods:
            raise ValueError(f"unknown method {method!r}; choose from {sorted(self.methods)}")
        declared = self._widget_params(method)
        given = dict(params) if params is not None else {"tau": self.tau, "depth": self.depth}
        out = {}
        for name, default in declared.items():
            value = given.get(name, default)
            if name == "tau":
                value = _finite_positive("tau", value)
            elif name == "depth" and (not isinstance(value, str) or value not in DEPTHS):
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
        if not self.background or self._worker.on_thread:
            return fn()
        future: Future = Future()
        self._worker.submit(_call_job(fn, future))
        return future.result()

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
            elif kind == "cancel":
                self._on_cancel(content)
            elif kind == "overview":
                self._on_overview_request(content)
            else:
                raise ValueError(f"unknown message type {kind!r}")
        except Exception as exc:  # reply instead of dying silently in the kernel log
            self._send_error(content.get("id") if isinstance(content, dict) else None,
                             content.get("key") if isinstance(content, dict) else None, exc)

    def _send_error(self, req_id, key, exc: BaseException, ids: list | None = None) -> None:
        if not isinstance(exc, (ValueError, IndexError, KeyError, TypeError)):
            log.warning("leafx widget request failed: %s", "".join(traceback.format_exception(exc)))
        message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        self.send({"type": "error", "id": req_id, "ids": ids if ids is not None else [req_id], "key": key,
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

    # ---- map requests: follow the selection, merge duplicates, newest first ------------
    def _token_index(self, value, name: str) -> int:
        n = len(self.explanation.tokens)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer token index, got {value!r}")
        if not 0 <= value < n:
            raise ValueError(f"{name} {value} is out of range: this explanation has {n} tokens (0..{n - 1})")
        return value

    @staticmethod
    def _page_params(content: dict) -> dict:
        params = content.get("params")
        if params is None:
            return {}
        if not isinstance(params, dict):
            raise ValueError(f"params must be an object of method parameters, got {params!r}")
        return params

    def _select(self, token: int) -> None:
        """The page now shows ``token``: map work asked for another selection is dropped if queued,
        stopped at its next model layer if running, and the page is told."""
        w = self._worker
        with w.cond:
            if token == self._selected:
                return
            self._selected = token
            stale = [j for j in w.live("map") if j.selection is not None and j.selection != token]
            for job in stale:
                if job is w.running:
                    job.stop(DESELECTED)  # it tells its requesters when it stops
                else:
                    w.queued.remove(job)
            told = {k: v for job in stale if job is not w.running for k, v in job.requesters.items()}
        self._send_cancelled(told, DESELECTED)

    def _on_map_request(self, content: dict) -> None:
        req_id, key = content.get("id"), content.get("key")
        for name, value in (("id", req_id), ("key", key)):
            if not (value is None or isinstance(value, str)):
                raise ValueError(f"{name} must be a string, got {value!r}")
        token = self._token_index(content.get("token"), "token")
        selection = self._token_index(content.get("selected", token), "selected")
        method = content.get("method")
        params = self.method_params(method, self._page_params(content))
        job = _Job("map", self._run_map_job, key=(token, method, tuple(sorted(params.items()))),
                   token=token, selection=selection)
        job.requesters[req_id] = key
        if not self.background:
            self._run_map_job(job)
            return
        self._select(selection)
        w = self._worker
        with w.cond:
            cached = job.key in self._maps
            if not cached:
                live = w.find("map", job.key)
                if live is None:
                    w.submit(job)
                else:  # one computation answers every identical request
                    live.requesters[req_id] = key
                    live.selection = selection
                    w.renew(live)
        if cached:
            self._run_map_job(job)  # answered at once, not queued behind slow work

    def _on_cancel(self, content: dict) -> None:
        """The page's cancel control: forget these requests (all map requests when ``ids`` is absent);
        a computation nobody waits for any more stops at its next model layer."""
        ids = content.get("ids")
        if ids is not None and not (isinstance(ids, list) and all(i is None or isinstance(i, str) for i in ids)):
            raise ValueError(f"cancel ids must be a list of request ids, got {ids!r}")
        wanted = None if ids is None else set(ids)
        told: dict = {}
        w = self._worker
        with w.cond:
            for job in w.live("map"):
                gone = [i for i in job.requesters if wanted is None or i in wanted]
                for i in gone:
                    told[i] = job.requesters.pop(i)
                if gone and not job.requesters:
                    if job is w.running:
                        job.stop(BY_USER)
                    else:
                        w.queued.remove(job)
        self._send_cancelled(told, BY_USER)

    def _run_map_job(self, job: _Job) -> bool:
        token, method, params_items = job.key
        params = dict(params_items)
        slow = getattr(self.methods.get(method), "cost", "fast") == "slow"
        if slow and job.key not in self._maps:
            self._send_progress(job)
        t0 = time.perf_counter()
        arr = error = None
        try:
            arr = self._compute_map(token, method, params)
        except Cancelled:
            pass
        except Exception as exc:
            error = exc
        elapsed = time.perf_counter() - t0
        with self._worker.cond:
            job.done = True  # from here on, identical requests are served from the cache
            requesters = dict(job.requesters)
        if error is not None:
            for key, ids in _by_key(requesters).items():
                self._send_error(ids[0], key, error, ids)
        elif arr is None:
            self._send_cancelled(requesters, job.reason)
        else:
            if slow and elapsed > 0.05:
                self._expected_s[(method, params_items)] = elapsed
            tok = self.explanation.tokens[token]
            for key, ids in _by_key(requesters).items():
                self.send({"type": "map", "id": ids[0], "ids": ids, "key": key, "token": token, "method": method,
                           "params": params, "start_frame": int(tok.start_frame),
                           "n_frames": int(arr.size), "dtype": "float32"},
                          buffers=[memoryview(arr).cast("B")])
        return False

    def _send_progress(self, job: _Job) -> None:
        token, method, params_items = job.key
        with self._worker.cond:
            requesters = dict(job.requesters)
        label = str(getattr(self.methods.get(method), "label", None) or method)
        text = self.explanation.tokens[token].text.strip()
        for key, ids in _by_key(requesters).items():
            self.send({"type": "progress", "id": ids[0], "ids": ids, "key": key, "token": token, "method": method,
                       "note": f"computing {label} for token {token} \u201c{text}\u201d",
                       "expected_s": self._expected_s.get((method, params_items))})

    def _send_cancelled(self, requesters: Mapping, reason: str) -> None:
        for key, ids in _by_key(requesters).items():
            self.send({"type": "cancelled", "id": ids[0], "ids": ids, "key": key, "reason": reason})

    # ---- overview: computed once per key, rows sent as they come -------------------------
    def overview_bins(self) -> int:
        return int(max(1, min(self.explanation.n_frames, OVERVIEW_MAX_BINS)))

    def _on_overview_request(self, content: dict) -> None:
        method = content.get("method") or _default_method(self.methods)
        params = self.method_params(method, self._page_params(content))
        okey = (method, tuple(sorted(params.items())))
        n_tokens = len(self.explanation.tokens)
        if not n_tokens:
            return
        w = self._worker
        with w.cond:
            rows = self._overviews.get(okey)
            job = None
            if rows is None:
                job = w.find("overview", okey)
                if job is not None:
                    job.state["resend"] = True  # rows already sent go again, once, for the new view
                    return
                job = _Job("overview", self._overview_step, key=okey)
                job.state.update(rows=np.zeros((n_tokens, self.overview_bins()), dtype=np.uint8),
                                 next=0, sent=0, last=time.perf_counter(), resend=False)
                if self.background:
                    w.submit(job)
        if rows is not None:
            self._send_rows(okey, rows, 0)
        elif not self.background:
            while self._overview_step(job):
                pass

    def _send_rows(self, okey: tuple, rows: np.ndarray, row0: int) -> None:
        method, params_items = okey
        key = f"{method}|" + "|".join(f"{k}={v}" for k, v in params_items)
        self.send({"type": "overview", "key": key, "row0": row0, "n_rows": int(rows.shape[0]),
                   "n_tokens": len(self.explanation.tokens), "n_bins": self.overview_bins()},
                  buffers=[memoryview(np.ascontiguousarray(rows)).cast("B")])

    def _overview_step(self, job: _Job) -> bool:
        """One token's row (map requests may run before the next); True while rows remain."""
        s, (method, params_items) = job.state, job.key
        rows, n_tokens = s["rows"], s["rows"].shape[0]
        with self._worker.cond:
            resend, s["resend"] = s["resend"], False
        if resend and s["sent"]:
            self._send_rows(job.key, rows[:s["sent"]], 0)
        k = s["next"]
        try:
            arr = self._compute_map(k, method, dict(params_items))
        except Cancelled:
            return False
        except Exception as exc:
            self._send_error(None, None, RuntimeError(f"overview stopped at token {k}: {exc}"))
            return False
        rows[k] = _codecs.row_overview(arr, self.explanation.tokens[k].start_frame,
                                       self.explanation.n_frames, rows.shape[1])
        s["next"] = k + 1
        now = time.perf_counter()
        if s["next"] == n_tokens or now - s["last"] > OVERVIEW_CHUNK_SECONDS:
            self._send_rows(job.key, rows[s["sent"]:s["next"]], s["sent"])
            s["sent"], s["last"] = s["next"], now
        if s["next"] < n_tokens:
            return True
        with self._worker.cond:  # a view that asks from now on gets the finished rows itself
            self._overviews[job.key] = rows
            job.done = True
            resend = s["resend"]
        if resend:
            self._send_rows(job.key, rows, 0)
        return False

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
                with self._worker.cond:
                    self._overviews.setdefault(okey, rows)
            return self._overviews[okey]

        return self._run_now(build)

    # ---- export ----------------------------------------------------------------------
    def save_html(self, path, variants: Iterable[str] | None = None, *, title: str | None = None) -> pathlib.Path:
        """Writes one self-contained HTML file that works without a kernel.

        The maps of ``variants`` (default: the shown variant and compare variant) are
        precomputed for every token at the current tau and depth.
        """
        _check_bundle("standalone.js", "widget.css")  # before minutes of maps, not after
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
        """Closes the views; queued work is dropped and a running computation stops at its next layer."""
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
    _check_bundle("standalone.js", "widget.css")
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
