"""The LEAF-X anywidget: synced waveform, log-Mel, transcript and attribution panes.

This module holds the traitlets class (traits, their validation, each method's defaults) and
wires it to its parts:

    worker.py    the background thread that runs map work, following the user; cancellation; exit
    decoding.py  a recording decoded while the widget shows it: window by window, the page told after each
    maps.py      map and overview requests: computed through the Explanation's cache, replied to
    layers.py    the layers pane's logit lens and patching lane: computed on the worker, cached, replied to
    contrast.py  the contrast lane (the selected token's word against a typed foil): on the worker, cached
    audit.py     the audit table (flagged tokens, scores), given or computed on the worker, sent to the page
    corpus.py    show_audit: one row of a corpus audit (``leafx-widgets audit``) opened in the widget
    protocol.py  the message table (browser message type -> handler), reply encoding, the key scheme
    export.py    the built JS bundle and the self-contained HTML export
    record.py    takes recorded in the page: chunks assembled, checked, explained and kept (``takes``)
"""

from __future__ import annotations

import math
import numbers
import pathlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import anywidget
import numpy as np
import traitlets

from ..audio import AudioError
from . import export, protocol
from .audit import Audit
from .corpus import show_audit
from .decoding import Decoding, segment_json, token_json, word_json
from .export import BUNDLE, STATIC, MissingBundleError, render_html
from .contrast import Contrasts
from .layers import Layers
from .maps import OVERVIEW_CHUNK_SECONDS, OVERVIEW_MAX_BINS, Maps
from .record import DEFAULT_MAX_SECONDS, Take, TakeAssembler, TakeError, record_config  # registers take_* handlers
from .protocol import (AUDIO_CHUNK_SAMPLES, AUDIO_WINDOW, MEL_CHUNK_BYTES, PEAK_BLOCK,
                       map_key, overview_key)
from .worker import BY_USER, CLOSED, DESELECTED, EXIT_JOIN_S, SWITCHED, Cancelled, Worker, call_job

_call_job = call_job  # the names the single-module widget had
_check_bundle = export.check_bundle

DEPTHS = ("full", "last_half", "middle_half", "one")
WIDGET_PARAMS = ("tau", "depth")  # the method parameters the widget's controls set

# The names the single-module widget had, all still importable from here. The constants are read
# where they live (protocol, maps, worker, export): set them there, e.g. in a test's monkeypatch.
__all__ = ["LeafXWidget", "show", "show_audit", "record", "describe_methods", "TakeError", "map_key", "overview_key", "render_html",
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
        None opens an empty widget that waits for a recorded take (``record()``; ``model`` is then needed).
    methods:
        Method registry to offer; defaults to ``leafx_widgets.methods.METHODS``.
    background:
        Compute maps on a worker thread (default). ``False`` computes inside the
        message handler, which is simpler to test but blocks the kernel meanwhile (and decodes
        an incomplete explanation in the constructor).
    model:
        The model that explains takes recorded in the page (default: the explanation's own). Without
        one the record button is disabled and says why.
    max_seconds:
        The longest take, in seconds (default 60): the page stops recording there.

    Every explanation the widget shows is a take of its session (``takes``; ``take`` is the one shown):
    the one it opened with, each take recorded with the record button, and each ``add_take``.
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

    show_layers = traitlets.Bool(False).tag(sync=True)
    """Show the layers pane: the selected token's logit lens and patching lane (computed only while shown)."""

    contrast_foils = traitlets.Dict().tag(sync=True)
    """Per token of the shown take (its index as a string), the foil its contrast lane shows:
    ``{"12": "hearts"}``. The page sets it when the user types a foil; ``save_html`` exports these contrasts."""

    # Takes: the explanations of this session, recorded or added
    take = traitlets.Int(-1).tag(sync=True)
    """Index into ``takes`` of the take shown (-1 before the first take)."""
    compare_take = traitlets.Int(None, allow_none=True).tag(sync=True)
    """Another take whose map of the same word is shown under the lane (``compare_mode``), or None."""

    # Data, set once per take
    _meta = traitlets.Dict().tag(sync=True)
    _takes = traitlets.List().tag(sync=True)
    _record = traitlets.Dict().tag(sync=True)

    def __init__(self, explanation=None, *, methods: Mapping[str, Any] | None = None,
                 background: bool = True, audit=None, model=None, max_seconds: float = DEFAULT_MAX_SECONDS, **kwargs):
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
        self._record_model = model if model is not None else getattr(explanation, "model", None)
        if explanation is None and self._record_model is None:
            raise ValueError("a widget without an explanation records takes: pass model= (or use lw.record())")
        max_seconds = _finite_positive("max_seconds", max_seconds)
        self.methods = dict(methods if methods is not None else _registry(self._record_model))
        if not self.methods:
            raise ValueError("the method registry is empty")
        self.background = background
        self.default_method = _default_method(self.methods)
        self._worker = Worker(selected=kwargs.get("selected_token", 0))
        self._payload_lock = threading.Lock()
        self._generation = 0
        self._takes_list: list[Take] = [] if explanation is None else [
            Take(_take_label(explanation, 1), explanation, "opened")]
        self._assembler = TakeAssembler(max_seconds)
        self._attach(explanation)
        # tau/depth follow the shown method's own defaults until the user sets them
        self._user_params = {k for k in WIDGET_PARAMS if k in kwargs}
        self._following = True  # the constructor's own settings are not user choices
        kwargs.setdefault("method", self.default_method)
        defaults = self._declared(kwargs["method"])
        kwargs.setdefault("tau", float(defaults.get("tau", 1.0)))
        kwargs.setdefault("depth", str(defaults.get("depth", "full")))
        kwargs.setdefault("take", len(self._takes_list) - 1)
        super().__init__(_meta=self._build_meta(), _record=record_config(self._record_model, max_seconds),
                         _takes=self._take_summaries(), **kwargs)
        self._following = False
        if audit is not None and not isinstance(audit, bool):
            self._audit.use(audit)  # after the widget is open: it tells the page
        self.on_msg(self._on_custom_msg)
        self._start_work()
        if audit is True:
            self._audit.start()

    def _attach(self, explanation) -> None:
        """Makes ``explanation`` the one shown: its decoding, maps and audio payload. Replies about the one
        shown before are not sent any more (a view of the new take would take them for its own)."""
        self._generation += 1
        generation = self._generation

        def send(reply, generation=generation):
            if self._generation == generation:
                self._reply(reply)

        self.explanation = explanation
        self._decoding: Decoding | None = None
        if explanation is not None and not getattr(explanation, "complete", True):
            if self.background:
                self._decoding = Decoding(explanation, self._worker, send, on_tokens=lambda: self._tokens_added(maps))
            else:  # computing in the caller: all of it, now
                explanation.decode_all(progress=False)
        d = self._decoding
        self._maps = maps = Maps(explanation, self.methods, self._worker, send, self.background,
                                 known=None if d is None else (lambda: d.n_tokens),
                                 finished=None if d is None else (lambda: d.complete))
        self._layers = Layers(explanation, self._worker, send, self.background)
        self._contrasts = Contrasts(explanation, self._worker, send, self.background)
        self._audit = Audit(explanation, self._worker, send, self.background,
                            finished=None if d is None else (lambda: d.complete or d.error is not None
                                                             or self._worker.closed))
        with self._payload_lock:
            self._payload: tuple[dict, list[str]] | None = None
        self._streams: dict[str, int] = {}  # view -> next audio sample to send

    def _start_work(self) -> None:
        if self.explanation is None:
            return
        if self.background:  # PCM and spectrogram codes ready before the browser asks
            self._worker.submit(call_job(self._audio_and_mel))
        if self._decoding is not None:  # then the windows, one job each, behind the user's requests
            self._decoding.start()

    def _tokens_added(self, maps: Maps) -> None:
        maps.tokens_added()
        if maps.finished():  # the take is decoded: the takes list shows its transcript
            self._takes = self._take_summaries()

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
        k, n = proposal["value"], len(getattr(self.explanation, "tokens", ()))
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
        return float(min(max(proposal["value"], 0.0), getattr(self.explanation, "duration_s", 0.0)))

    # ---- takes -----------------------------------------------------------------------
    @property
    def takes(self) -> list:
        """The explanations of this session's takes, in the order they came (``take`` indexes it);
        ``takes[i].audio`` is the kernel's copy of a recorded take (16 kHz mono float32)."""
        return [t.explanation for t in self._takes_list]

    def add_take(self, source, *, sample_rate: int | None = None, label: str | None = None,
                 show: bool = True, kind: str = "added", **explain_kwargs):
        """Adds a take (an Explanation, a path, or an array with ``sample_rate``) and shows it; returns its
        explanation. Audio is explained with the widget's model (``explain(..., wait=False)``, decoded on
        the widget's worker) and checked like a recorded take: at most ``max_seconds``, not silent, no NaN.
        ``kind``: "recorded" for a take from the page's microphone, else "added"."""
        from ..explanation import explain

        if hasattr(source, "tokens"):  # an Explanation
            ex = source
        else:
            if self._record_model is None:
                raise TakeError(record_config(None, 0)["reason"])
            limit = self._assembler.max_seconds
            try:
                ex = explain(self._record_model, source, sample_rate=sample_rate, wait=False,
                             max_duration_s=None, **explain_kwargs)
            except AudioError as err:
                raise TakeError(str(err)) from None
            if ex.duration_s > limit + 1e-6:
                raise TakeError(f"this take lasts {ex.duration_s:.1f} s, over the {limit:g} s limit of a take "
                                "(lw.record(max_seconds=...) sets it)")
        self._takes_list.append(Take(label or _take_label(ex, len(self._takes_list) + 1), ex, kind))
        self._takes = self._take_summaries()
        if show:
            self.take = len(self._takes_list) - 1
        return ex

    def _take_summaries(self) -> list[dict]:
        return [t.summary(i) for i, t in enumerate(self._takes_list)]

    @traitlets.validate("take")
    def _check_take(self, proposal):
        k, n = proposal["value"], len(getattr(self, "_takes_list", ()))
        if not (k == -1 and n == 0) and not 0 <= k < n:
            raise traitlets.TraitError(f"take {k} out of range [0, {n})")
        return k

    @traitlets.validate("compare_take")
    def _check_compare_take(self, proposal):
        k, n = proposal["value"], len(getattr(self, "_takes_list", ()))
        if k is not None and not 0 <= k < n:
            raise traitlets.TraitError(f"compare_take {k} out of range [0, {n}) (None for no comparison)")
        return k

    @traitlets.observe("take")
    def _show_take(self, change):
        """Shows take ``change.new``: the work for the last one stops, the page builds its view again."""
        if getattr(self, "_following", True) or change["new"] < 0:  # the constructor's own setting
            return
        ex = self._takes_list[change["new"]].explanation
        if ex is self.explanation:
            return
        self._worker.clear(SWITCHED)
        self._attach(ex)
        self.selected_token = 0
        self.current_time = 0.0
        self.contrast_foils = {}  # the foils named the last take's tokens
        if self.compare_take == change["new"]:
            self.compare_take = change["old"] if change["old"] >= 0 else None
        self._meta = self._build_meta()
        self._takes = self._take_summaries()  # a take decoded meanwhile shows its transcript
        self._start_work()

    # ---- data ------------------------------------------------------------------------
    def _build_meta(self) -> dict:
        """The page's data. A recording still being decoded starts with no tokens: they come in "tokens"
        messages (``decoding.py``), and nothing is computed here for any window."""
        ex = self.explanation
        if ex is None:  # waiting for the first take: the page shows the recorder alone
            return {"empty": True, "methods": describe_methods(self.methods), "default_method": self.default_method}
        complete = getattr(ex, "complete", True)
        return {
            "take": next((i for i, t in enumerate(self._takes_list) if t.explanation is ex), -1),
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
            "layers": self._layers.supports,
            "contrast": self._contrasts.supported,
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
        self._need_take()
        method = method or self.method
        return self._maps.run_now(lambda: self._maps.compute(token, method, self.method_params(method, params or None)))

    def get_lens(self, token: int) -> dict:
        """The layers pane's logit lens of ``token`` (``ex.logit_lens(token).to_json()``), cached. Blocks."""
        return self._layers.run_now("lens", token)

    def get_patching(self, token: int, corrupt: str = "noise") -> dict:
        """The layers pane's patching lane of ``token`` (``ex.patching(token, corrupt, over="time").to_json()``),
        cached. Blocks."""
        return self._layers.run_now("patching", token, corrupt)

    def get_contrast(self, token: int, foil: str):
        """The contrast lane of ``token`` against ``foil`` (``ex.contrast(token, foil)``, an
        ``audit.contrast.Contrast``), cached and checked like the page's requests. Blocks."""
        self._need_take()
        return self._contrasts.run_now(token, foil)

    def overview(self, method: str | None = None, **params) -> np.ndarray:
        """uint8 (n_tokens, n_bins) tokens x time overview, each row scaled to its peak."""
        self._need_take()
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
        The layers pane's results computed so far go in too, with the selected token's logit lens (and
        its patching lane while the pane is shown, ``show_layers``), and every contrast computed so far
        (those ``contrast_foils`` names are computed now if they were not).
        ``audit``: include the audit table and flags (None: when the widget has an audit; True: computed
        first when it has none; False: never).
        """
        self._need_take()
        return export.save_html(self, path, methods if methods is not None else variants, title=title,
                                audit=audit)

    def _need_take(self) -> None:
        if self.explanation is None:
            raise TakeError("this widget shows no take yet: record one (the record button) or add_take(...)")

    # ---- messages: the protocol's handler table -----------------------------------------
    def _on_custom_msg(self, _widget, content: dict, buffers: list) -> None:
        protocol.dispatch(self, content, buffers)

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


def _take_label(ex, number: int) -> str:
    path = getattr(ex, "audio_path", None)
    return pathlib.Path(path).stem if path else f"take {number}"


def record(model=None, *, max_seconds: float = DEFAULT_MAX_SECONDS, takes: Iterable = (), **kwargs) -> LeafXWidget:
    """A widget that opens on its record button: each take recorded in the page is explained by ``model``
    (a loaded adapter or a name for ``load_model``, default "tiny.en") and shown, and kept in ``w.takes``.

    ``max_seconds``: the longest take (the page stops recording there). ``takes``: takes to start with
    (Explanations, paths, or ``(array, sample_rate)``), e.g. the bundled clip where there is no microphone.
    Recording needs a page on https or localhost (Binder is on https) and the browser's permission.
    """
    from .. import load_model

    if model is None or isinstance(model, str):
        model = load_model(model or "tiny.en")
    w = LeafXWidget(None, model=model, max_seconds=max_seconds, **kwargs)
    for t in takes:
        if isinstance(t, tuple):
            w.add_take(t[0], sample_rate=t[1])
        else:
            w.add_take(t)
    return w
