"""The LEAF-X anywidget: synced waveform, log-Mel, transcript and attribution panes.

This module holds the traitlets class (traits, their validation, each method's defaults) and
wires it to its parts:

    worker.py    the background thread that runs map work, following the user; cancellation; exit
    decoding.py  a recording decoded while the widget shows it: window by window, the page told after each
    maps.py      map and overview requests: computed through the Explanation's cache, replied to
    audit.py     the audit table (flagged tokens, scores), given or computed on the worker, sent to the page
    corpus.py    show_audit: one row of a corpus audit (``leafx-widgets audit``) opened in the widget
    protocol.py  the message table (browser message type -> handler), reply encoding, the key scheme
    export.py    the built JS bundle and the self-contained HTML export
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import anywidget
import numpy as np
import traitlets

from . import export, protocol
from .audit import Audit
from .corpus import show_audit
from .decoding import Decoding, segment_json, token_json, word_json
from .export import BUNDLE, STATIC, MissingBundleError, render_html
from .maps import OVERVIEW_CHUNK_SECONDS, OVERVIEW_MAX_BINS, Maps
from .protocol import (AUDIO_CHUNK_SAMPLES, AUDIO_WINDOW, MEL_CHUNK_BYTES, PEAK_BLOCK,
                       map_key, overview_key)
from .worker import BY_USER, CLOSED, DESELECTED, EXIT_JOIN_S, Cancelled, Worker, call_job

_call_job = call_job  # the names the single-module widget had
_check_bundle = export.check_bundle

DEPTHS = ("full", "last_half", "middle_half", "one")
WIDGET_PARAMS = ("tau", "depth")  # the method parameters the widget's controls set

# The names the single-module widget had, all still importable from here. The constants are read
# where they live (protocol, maps, worker, export): set them there, e.g. in a test's monkeypatch.
__all__ = ["LeafXWidget", "show", "show_audit", "describe_methods", "map_key", "overview_key", "render_html",
           "MissingBundleError", "Cancelled", "DEPTHS", "WIDGET_PARAMS", "STATIC", "BUNDLE",
           "AUDIO_CHUNK_SAMPLES", "AUDIO_WINDOW", "MEL_CHUNK_BYTES", "PEAK_BLOCK",
           "OVERVIEW_CHUNK_SECONDS", "OVERVIEW_MAX_BINS", "EXIT_JOIN_S", "DESELECTED", "BY_USER", "CLOSED"]


ALIASES = {"variant": "method", "compare_variant": "compare_method"}  # old keyword -> trait


def _registry(model=None) -> Mapping[str, Any]:
    """The registered methods that ``model`` can run (all of them for an explanation without a model)."""
    from ..methods import METHODS

    return {name: m for name, m in METHODS.items() if model is None or m.supports(model)}


def _ladder(model, methods: Mapping[str, Any]):
    """The base / +grad / +causal methods of the toolbar's toggle (``methods.ladder``)."""
    from ..methods import ladder

    return ladder(model, offered=methods)


def _default_method(methods: Mapping[str, Any]) -> str:
    """The registry's DEFAULT_METHOD when it offers one, else "base", else the first method."""
    from ..methods import DEFAULT_METHOD

    for name in (DEFAULT_METHOD, "base"):
        if name in methods:
            return name
    return next(iter(methods))


def describe_methods(methods: Mapping[str, Any]) -> list[dict]:
    """JSON description of a method registry: name, label, cost, default params, and whether its
    optional packages are installed (the page lists a missing one greyed out, with the pip command)."""
    out = []
    for name, m in methods.items():
        available = m.available
        out.append({
            "name": name,
            "label": m.label,
            "cost": m.cost,
            "params": {k: v for k, v in m.params.items() if k in WIDGET_PARAMS},
            "available": available,
            "needs": None if available else f'pip install "leafx-widgets[{m.extra}]"',
        })
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
        The result of ``leafx_widgets.explain(model, audio)``. One still to be decoded
        (``explain(..., wait=False)``) opens at once and is decoded on the widget's worker, window by
        window, its transcript filling in as each window is done (``wait_decoded`` waits for the end).
    methods:
        Method registry to offer; defaults to ``leafx_widgets.methods.METHODS``.
    background:
        Compute maps on a worker thread (default). ``False`` computes inside the
        message handler, which is simpler to test but blocks the kernel meanwhile (and decodes
        an incomplete explanation in the constructor).
    audit:
        The audit table: ``True`` computes ``explanation.audit()`` on the worker at once (the page marks
        the flagged tokens when it is done); a DataFrame in its shape (e.g. a clip's rows of a corpus
        audit) is shown as it is; None (default) computes it when the page's audit table or flag buttons
        are first used, or ``audit()`` is called.
    """

    _esm = export.bundle_file("widget.js")
    _css = export.bundle_file("widget.css")

    # Selection and playback
    selected_token = traitlets.Int(0).tag(sync=True)
    """Index into ``explanation.tokens`` of the token whose map is shown. Default 0."""
    current_time = traitlets.Float(0.0).tag(sync=True)
    """Playhead position in seconds, written back by the browser while playing."""

    # Method and its parameters
    method = traitlets.Unicode("base").tag(sync=True)
    """Name of the method (a key of the registry) drawn for the selected token. Alias: ``variant``."""
    compare_method = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    """Second method shown next to ``method``, or None. Alias: ``compare_variant``."""
    compare_mode = traitlets.Enum(("side", "diff"), "side").tag(sync=True)
    """How to show the comparison: two lanes side by side, or method minus compare method."""
    tau = traitlets.Float(1.0).tag(sync=True)
    """Entropy temperature of the LEAF-X methods."""
    depth = traitlets.Unicode("full").tag(sync=True)
    """Rollout depth of the LEAF-X methods, one of ``DEPTHS``."""

    # Data, set once
    _meta = traitlets.Dict().tag(sync=True)

    def __init__(self, explanation, *, methods: Mapping[str, Any] | None = None,
                 background: bool = True, audit=None, **kwargs):
        for old, new in ALIASES.items():  # the paper's word, kept as an alias
            if old in kwargs:
                kwargs.setdefault(new, kwargs.pop(old))
        unknown = set(kwargs) - set(self.class_trait_names(sync=True)) - {"layout"}
        if unknown:
            raise TypeError(f"LeafXWidget got unexpected keyword arguments: {sorted(unknown)}")
        export.check_bundle("widget.js", "widget.css")
        for attr, name in (("_esm", "widget.js"), ("_css", "widget.css")):
            if not getattr(type(self), attr):  # built after this module was imported
                setattr(self, attr, export.read_bundle_file(name))
        self.explanation = explanation
        self.methods = dict(methods if methods is not None else _registry(getattr(explanation, "model", None)))
        if not self.methods:
            raise ValueError("the method registry is empty")
        self.background = background
        self.default_method = _default_method(self.methods)
        self._worker = Worker(selected=kwargs.get("selected_token", 0))
        self._decoding: Decoding | None = None
        if not getattr(explanation, "complete", True):
            if background:
                self._decoding = Decoding(explanation, self._worker, self._reply,
                                          on_tokens=lambda: self._maps.tokens_added())
            else:  # computing in the caller: all of it, now
                explanation.decode_all(progress=False)
        d = self._decoding
        self._maps = Maps(explanation, self.methods, self._worker, self._reply, background,
                          known=None if d is None else (lambda: d.n_tokens),
                          finished=None if d is None else (lambda: d.complete))
        self._payload: tuple[dict, list[str]] | None = None
        self._payload_lock = threading.Lock()
        self._streams: dict[str, int] = {}  # view -> next audio sample to send
        # tau/depth follow the shown method's own defaults until the user sets them
        self._user_params = {k for k in WIDGET_PARAMS if k in kwargs}
        self._following = True  # the constructor's own settings are not user choices
        kwargs.setdefault("method", self.default_method)
        defaults = self._declared(kwargs["method"])
        kwargs.setdefault("tau", float(defaults.get("tau", 1.0)))
        kwargs.setdefault("depth", str(defaults.get("depth", "full")))
        super().__init__(_meta=self._build_meta(), **kwargs)
        self._following = False
        self._audit = Audit(explanation, self._worker, self._reply, background,
                            finished=None if d is None else (lambda: d.complete or d.error is not None
                                                             or self._worker.closed),
                            given=None if isinstance(audit, bool) else audit)
        self.on_msg(self._on_custom_msg)
        if background:  # PCM and spectrogram codes ready before the browser asks
            self._worker.submit(call_job(self._audio_and_mel))
        if self._decoding is not None:  # then the windows, one job each, behind the user's requests
            self._decoding.start()
        if audit is True:
            self._audit.start()

    # ---- validation ------------------------------------------------------------------
    # "variant" (the paper's word for base/+grad/+causal) names the same trait as "method"
    variant = property(lambda self: self.method, lambda self, value: setattr(self, "method", value),
                       doc="Alias of ``method``.")
    compare_variant = property(lambda self: self.compare_method,
                               lambda self, value: setattr(self, "compare_method", value),
                               doc="Alias of ``compare_method``.")

    @traitlets.validate("method")
    def _check_variant(self, proposal):
        return self._check_method(proposal["value"])

    @traitlets.validate("compare_method")
    def _check_compare(self, proposal):
        value = proposal["value"]
        return None if value in (None, "") else self._check_method(value)

    def _check_method(self, name: str) -> str:
        if name not in self.methods:
            raise traitlets.TraitError(f"unknown method {name!r}; choose from {sorted(self.methods)}")
        try:
            self.methods[name].check_available()
        except ValueError as err:  # MethodUnavailable: the extra that brings it is missing
            raise traitlets.TraitError(str(err)) from None
        return name

    @traitlets.validate("selected_token")
    def _check_token(self, proposal):
        k, n = proposal["value"], len(self.explanation.tokens)
        if not 0 <= k < max(n, 1):
            so_far = "" if getattr(self.explanation, "complete", True) else f" ({n} tokens decoded so far)"
            raise traitlets.TraitError(f"selected_token {k} out of range [0, {n}){so_far}")
        return k

    @traitlets.observe("selected_token")
    def _follow_selection(self, change):
        self._select(change["new"])

    def _widget_params(self, method: str) -> dict:
        """The widget-controlled parameters ``method`` declares, with their defaults ({} when
        the registry has no such method)."""
        params = self.methods[method].params if method in self.methods else {}
        return {k: v for k, v in params.items() if k in WIDGET_PARAMS}

    def _declared(self, method: str) -> dict:
        """``method``'s widget parameters over base's (the traits' fallback values)."""
        return {**self._widget_params("base"), **self._widget_params(method)}

    @traitlets.observe("tau", "depth")
    def _remember_user_choice(self, change):
        if not self._following:
            self._user_params.add(change["name"])

    @traitlets.observe("method")
    def _follow_method_defaults(self, change):
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
        """The page's data. A recording still being decoded starts with no tokens: they come in "tokens"
        messages (``decoding.py``), and nothing is computed here for any window."""
        ex = self.explanation
        complete = getattr(ex, "complete", True)
        return {
            "model_name": str(ex.model_name),
            "text": str(ex.text) if complete else "",
            "duration_s": float(ex.duration_s),
            "sample_rate": int(ex.sample_rate),
            "frame_s": float(ex.frame_s),
            "n_frames": int(ex.n_frames),
            "audio_path": None if ex.audio_path is None else str(ex.audio_path),
            "tokens": [token_json(t) for t in ex.tokens] if complete else [],
            "words": [word_json(w) for w in ex.words] if complete else [],
            "segments": [segment_json(s) for s in getattr(ex, "segments", [])] if complete else [],
            "complete": complete,
            "decoded_s": float(ex.duration_s) if complete else 0.0,
            "methods": describe_methods(self.methods),
            "ladder": list(_ladder(getattr(ex, "model", None), self.methods) or []),
            "default_method": self.default_method,
            "depths": list(DEPTHS),
        }

    def _audio_and_mel(self) -> tuple[dict, list[str]]:
        """The audio and spectrogram payload and the page's notes (``protocol.audio_payload``), computed once."""
        with self._payload_lock:
            if self._payload is None:
                self._payload = protocol.audio_payload(self.explanation)
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
        method = method or self.method
        return self._maps.run_now(lambda: self._maps.compute(token, method, self.method_params(method, params or None)))

    def overview(self, method: str | None = None, **params) -> np.ndarray:
        """uint8 (n_tokens, n_bins) tokens x time overview, each row scaled to its peak."""
        method = method or self.default_method
        return self._maps.overview(method, self.method_params(method, params or {}))

    def overview_bins(self) -> int:
        return self._maps.overview_bins()

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Waits for queued map and overview work, and the decoding of the recording (tests and scripts)."""
        self._worker.wait_idle(timeout)

    def wait_decoded(self, timeout: float | None = None, progress=None) -> None:
        """Blocks until the recording is decoded (at once when it was complete). ``progress``: a bar (None:
        in a notebook or terminal), False, or a callable ``progress(decoded_s, total_s)``."""
        if self._decoding is not None:
            self._decoding.wait(timeout, progress)

    def audit(self, timeout: float | None = None):
        """The audit table (``explanation.audit()``, a DataFrame), computed on the worker when the widget
        has none yet; the page's flags and table show it too. Blocks until it is there."""
        return self._audit.result(timeout)

    def save_html(self, path, methods: Iterable[str] | None = None, *, title: str | None = None,
                  variants: Iterable[str] | None = None, audit: bool | None = None):
        """Writes one self-contained HTML file that works without a kernel.

        The maps of ``methods`` (default: the shown method and compare method) are
        precomputed for every token at the current tau and depth. ``variants``: an alias of ``methods``.
        A recording still being decoded is waited for first (``wait_decoded``, with its progress bar).
        ``audit``: include the audit table and flags (None: when the widget has an audit; True: computed
        first when it has none; False: never).
        """
        return export.save_html(self, path, methods if methods is not None else variants, title=title,
                                audit=audit)

    # ---- messages: the protocol's handler table -----------------------------------------
    def _on_custom_msg(self, _widget, content: dict, buffers: list) -> None:
        protocol.dispatch(self, content)

    def _reply(self, reply: protocol.Reply) -> None:
        content, buffers = reply
        self.send(content, buffers=buffers or None)

    def _select(self, token: int) -> None:
        self._maps.select(token)

    def close(self) -> None:
        """Closes the views; queued work is dropped and a running computation stops at its next layer."""
        worker = getattr(self, "_worker", None)  # absent when __init__ raised
        if worker is not None:
            worker.stop()
        super().close()


def show(source=None, model=None, **kwargs) -> LeafXWidget:
    """A widget for an Explanation, or for audio explained by ``model``.

    ``source`` may be an Explanation, a path, or None for the bundled sample;
    ``model`` a loaded adapter or a name for ``load_model`` (default "tiny.en"). Audio is shown at
    once and decoded on the widget's worker (``explain(..., wait=False)``), window by window.
    ``audit=True`` audits every token on the worker once decoded (``LeafXWidget``'s ``audit``); a row of
    a corpus audit opens with ``show_audit``.
    """
    from .. import explanation as _explanation

    if isinstance(source, _explanation.Explanation):
        return LeafXWidget(source, **kwargs)
    from .. import explain, load_model

    if source is None:
        from .. import sample_path

        source = sample_path()
    if model is None or isinstance(model, str):
        model = load_model(model or "tiny.en")
    return LeafXWidget(explain(model, source, wait=False), **kwargs)
