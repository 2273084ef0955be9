"""Takes recorded in the page: their chunks assembled and checked, each explained like a file.

The page (js/src/record.js, js/src/takes.js) captures the microphone, resamples it to 16 kHz mono and
sends the take while it is recorded:

    browser -> kernel                                   kernel -> browser
    {type: "take_start", take, sample_rate, source_rate, via}
    {type: "take_chunk", take, offset, n} + float32     {type: "take_status", take, state, message}
    {type: "take_end", take, total, at_limit}             state: "explaining", "ready" or "error"
    {type: "take_cancel", take}
    {type: "take_map", take, token, method, params, key} {type: "take_map", take, key, token, word,
                                                          start_frame, n_frames, duration_s} + float32
                                                         (or with ``error`` and no buffer)

A take is checked as it grows (its chunks in order, no longer than the widget's ``max_seconds``) and
at its end by the project's audio checks (``audio.load_audio``: silence, NaN, too short); a take
that fails is said in the page in one sentence and not kept. A good take is explained with
``explain(model, samples, wait=False)`` and shown: the widget's explanation becomes the take's, and
the page builds its view again from the new ``_meta``. Every take stays in the widget's session
(``LeafXWidget.takes``); ``take_map`` gives the map of the same word in another take (minimal pairs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..audio import Audio, AudioError, load_audio
from . import protocol
from .worker import call_job

TAKE_RATE = 16000  # what the page sends
DEFAULT_MAX_SECONDS = 60.0
MAX_OPEN_TAKES = 4  # takes being received at once (one per view recording); older ones are dropped


class TakeError(ValueError):
    """A take cannot be explained; the message says why, in one sentence."""


@dataclass
class Take:
    """One take of the session: its label and its explanation (``explanation.audio``: the kernel's copy)."""

    label: str
    explanation: Any
    source: str = "recorded"  # "recorded" in the page, or "added" from Python

    def summary(self, index: int) -> dict:
        ex = self.explanation
        complete = getattr(ex, "complete", True)
        return {"index": index, "label": self.label, "source": self.source,
                "duration_s": float(ex.duration_s), "complete": bool(complete),
                "text": str(ex.text) if complete else ""}


@dataclass
class _Incoming:
    number: int  # the take's number for messages ("take 3")
    chunks: list = field(default_factory=list)
    received: int = 0


class TakeAssembler:
    """Puts a take's chunks together, in order, up to ``max_seconds`` of 16 kHz audio."""

    def __init__(self, max_seconds: float = DEFAULT_MAX_SECONDS, rate: int = TAKE_RATE):
        self.max_seconds, self.rate = float(max_seconds), rate
        self.max_samples = int(round(self.max_seconds * rate))
        self.open: dict[str, _Incoming] = {}
        self.refused: set[str] = set()  # takes refused while they came: their later chunks are ignored

    def start(self, take: str, number: int, sample_rate) -> None:
        if sample_rate != self.rate:
            raise TakeError(f"take {number} comes at {sample_rate!r} Hz; the page sends {self.rate} Hz")
        self.open[take] = _Incoming(number)
        self.refused.discard(take)
        while len(self.open) > MAX_OPEN_TAKES:
            self.open.pop(next(iter(self.open)))

    def _get(self, take: str) -> _Incoming:
        inc = self.open.get(take)
        if inc is None:
            raise TakeError(f"no take {take!r} is being recorded (its start was lost, or it was cancelled)")
        return inc

    def chunk(self, take: str, offset, n, buffers) -> None:
        inc = self._get(take)
        try:
            if len(buffers) != 1:
                raise TakeError(f"a chunk of take {inc.number} must carry one buffer, got {len(buffers)}")
            data = bytes(buffers[0])
            if len(data) % 4:
                raise TakeError(f"a chunk of take {inc.number} holds {len(data)} bytes, not whole float32 samples")
            samples = np.frombuffer(data, dtype="<f4")
            if n != samples.size:
                raise TakeError(f"a chunk of take {inc.number} says {n!r} samples but holds {samples.size}")
            if offset != inc.received:  # comm messages arrive in order: a gap means a lost chunk
                raise TakeError(f"take {inc.number} lost audio: a chunk starts at sample {offset!r}, "
                                f"expected {inc.received}")
            if inc.received + samples.size > self.max_samples:
                raise TakeError(self._too_long(inc.number, (inc.received + samples.size) / self.rate))
        except TakeError:
            self.cancel(take)
            raise
        inc.chunks.append(samples)
        inc.received += samples.size

    def _too_long(self, number: int, seconds: float) -> str:
        return (f"take {number} is longer than the {self.max_seconds:g} s limit ({seconds:.1f} s so far); "
                f"record a shorter take, or open the widget with lw.record(max_seconds=...)")

    def cancel(self, take) -> None:
        """Forgets a take; its later chunks are ignored."""
        if self.open.pop(take, None) is not None:
            self.refused.add(take)

    def finish(self, take: str, total) -> tuple[int, np.ndarray]:
        """The take's number and samples, checked: every chunk there, within the limit, and through the
        project's audio checks (silence, NaN or infinite samples, too short)."""
        inc = self.open.pop(take, None)
        if inc is None:
            raise TakeError(f"no take {take!r} is being recorded (its start was lost, or it was cancelled)")
        if total != inc.received:
            raise TakeError(f"take {inc.number} lost audio: the page sent {total!r} samples, "
                            f"{inc.received} arrived")
        if inc.received > self.max_samples:
            raise TakeError(self._too_long(inc.number, inc.received / self.rate))
        if not inc.received:
            raise TakeError(f"take {inc.number} is empty: no sound reached the page (is the microphone muted?)")
        samples = np.concatenate(inc.chunks)
        try:
            checked = load_audio(Audio(samples, self.rate, path=f"take {inc.number}"),
                                 max_duration_s=None)
        except AudioError as err:
            raise TakeError(str(err)) from None
        return inc.number, checked.samples


# ---- the widget's side ---------------------------------------------------------------------------
def record_config(model, max_seconds: float) -> dict:
    """The page's ``_record`` trait: whether a take can be explained here, and the limit."""
    reason = None if model is not None else (
        "Recording needs a model to explain the take: this widget shows an explanation without one.")
    return {"available": model is not None, "reason": reason, "max_seconds": float(max_seconds),
            "sample_rate": TAKE_RATE}


def _status(widget, take, state: str, message: str = "") -> None:
    widget._reply(({"type": "take_status", "take": take, "state": state, "message": message}, []))


def _take_id(content: dict) -> str:
    take = content.get("take")
    if not isinstance(take, str) or not take:
        raise TakeError(f"take must be the page's id of a take, got {take!r}")
    return take


def _says_take_errors(fn):
    """A take that fails is said on the recorder bar (a take_status error), the page's view may not exist yet."""
    def handler(widget, content, *buffers):
        try:
            fn(widget, content, *buffers)
        except TakeError as err:
            widget._assembler.cancel(content.get("take"))
            _status(widget, content.get("take"), "error", str(err))
    handler.__name__ = fn.__name__
    handler.__doc__ = fn.__doc__
    return handler


@protocol.handles("take_start", buffers=True)
@_says_take_errors
def on_take_start(widget, content: dict, buffers) -> None:
    if widget._record_model is None:
        raise TakeError(record_config(None, 0)["reason"])
    widget._assembler.start(_take_id(content), len(widget._takes_list) + 1, content.get("sample_rate"))


@protocol.handles("take_chunk", buffers=True)
@_says_take_errors
def on_take_chunk(widget, content: dict, buffers) -> None:
    take = _take_id(content)
    if take in widget._assembler.refused:
        return  # refused already, and said so: the page stops on that message
    widget._assembler.chunk(take, content.get("offset"), content.get("n"), buffers)


@protocol.handles("take_cancel")
def on_take_cancel(widget, content: dict) -> None:
    widget._assembler.cancel(content.get("take"))


@protocol.handles("take_end")
@_says_take_errors
def on_take_end(widget, content: dict) -> None:
    take = _take_id(content)
    if take in widget._assembler.refused:
        return
    number, samples = widget._assembler.finish(take, content.get("total"))
    _status(widget, take, "explaining", f"explaining take {number} ({samples.size / TAKE_RATE:.1f} s)…")
    widget.add_take(samples, sample_rate=TAKE_RATE, label=f"take {number}", kind="recorded")
    _status(widget, take, "ready")


# ---- the same word in another take -----------------------------------------------------------------
def matching_token(ex, token: int, other) -> int:
    """The token of ``other`` at the place of ``ex``'s ``token``: the same word index (the last word when
    ``other`` has fewer), and the same position inside the word."""
    if not other.tokens:
        raise TakeError("the compared take has no words")
    words, other_words = ex.words, other.words
    w = ex.tokens[token].word
    pos = words[w].tokens.index(token) if 0 <= w < len(words) and token in words[w].tokens else 0
    ow = other_words[min(max(w, 0), len(other_words) - 1)]
    return int(ow.tokens[min(pos, len(ow.tokens) - 1)])


@protocol.handles("take_map")
def on_take_map(widget, content: dict) -> None:
    index, key = content.get("take"), content.get("key")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(widget._takes_list):
        raise ValueError(f"take must be the index of a take (0..{len(widget._takes_list) - 1}), got {index!r}")
    ex = widget.explanation
    token = protocol.token_index(content.get("token"), len(ex.tokens), "token")
    method = content.get("method")
    params = widget.method_params(method, protocol.page_params(content))
    other = widget._takes_list[index].explanation

    def run():
        head = {"type": "take_map", "take": index, "key": key, "token": token}
        try:
            if not getattr(other, "complete", True):
                other.decode_all(progress=False)
            k = matching_token(ex, token, other)
            defaults = widget.methods[method].params
            given = {p: v for p, v in params.items() if p not in defaults or v != defaults[p]}
            arr = np.ascontiguousarray(other.map(k, method, **given), dtype=np.float32)
        except Exception as exc:  # said on the pane, as a map error is
            widget._reply(({**head, "error": f"{type(exc).__name__}: {exc}"}, []))
            return
        t = other.tokens[k]
        widget._reply(({**head, "other_token": k, "word": str(other.words[t.word].text) if t.word >= 0 else t.text,
                        "start_frame": int(t.start_frame), "n_frames": int(arr.size),
                        "duration_s": float(other.duration_s)}, [memoryview(arr).cast("B")]))

    if widget.background:
        widget._worker.submit(call_job(run))
    else:
        run()
