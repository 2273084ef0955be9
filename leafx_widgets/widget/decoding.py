"""A recording decoded while its widget is open: one window per worker job, and what the page is told.

A widget made from an incomplete Explanation (``explain(model, audio, wait=False)``) opens before
anything is decoded: its ``_meta`` holds no tokens, and the waveform and spectrogram need none. The
worker then decodes window by window (``Explanation.decode_next``) in its "decode" lane, after the
user's map requests, and after each window sends the page that window's items only:

    {type: "tokens", token0, tokens, word0, words, segment0, segments,
     decoded_s, duration_s, complete, stopped}

``token0`` (``word0``, ``segment0``) is the index of the first item sent. A view appends the items it
has not got yet and ignores the others, so a view that opens later is simply sent everything decoded
so far (``catch_up``, answering its "init"), and the views already open ignore that repetition.
Messages rather than a trait: a trait holding the transcript would resend all of it after every window.
``stopped`` is true once decoding has failed (a note says why); a closed widget stops decoding at the
next model layer, and the Explanation keeps the windows decoded so far (``ex.decode_all()`` goes on).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .._progress import progress as _progress
from . import protocol
from .worker import Cancelled, Job, Worker

log = logging.getLogger(__name__)


def token_json(t) -> dict:
    return {"index": int(t.index), "id": int(t.id), "text": str(t.text), "word": int(t.word),
            "logprob": float(t.logprob), "start_frame": int(t.start_frame), "n_frames": int(t.n_frames)}


def word_json(w) -> dict:
    return {"index": int(w.index), "text": str(w.text), "tokens": [int(k) for k in w.tokens],
            "peak_s": None if w.peak_s is None else float(w.peak_s)}


def segment_json(s) -> dict:
    return {"index": int(s.index), "start": float(s.start), "end": float(s.end), "text": str(s.text),
            "tokens": [int(k) for k in s.tokens], "window": int(s.window), "temperature": float(s.temperature)}


class Decoding:
    """Decodes ``explanation`` on ``worker`` and tells the page (``send(reply)``) after each window;
    ``on_tokens()`` runs on the worker once new tokens are published (the overviews grow)."""

    def __init__(self, explanation, worker: Worker, send: Callable[[protocol.Reply], None],
                 on_tokens: Callable[[], None]):
        self.explanation, self.worker, self.send, self.on_tokens = explanation, worker, send, on_tokens
        self.cond = threading.Condition()  # orders what is sent; guards the counts below
        self.n_tokens = self.n_words = self.n_segments = 0  # items the page has been sent
        self.decoded_s = 0.0
        self.complete = False  # every window decoded and sent
        self.error: str | None = None  # why decoding stopped
        self._started = False

    def start(self) -> None:
        self.worker.submit(Job("decode", self._step))

    # ---- on the worker -----------------------------------------------------------------------
    def _step(self, job: Job) -> bool:
        """Decodes one window (the first run only sends what is already decoded); True while windows remain."""
        try:
            if self._started:
                self.explanation.decode_next()
            self._started = True
            self._publish()
        except Cancelled:  # the widget was closed: the Explanation keeps what is decoded
            return False
        except Exception as exc:
            self._fail(exc)
            return False
        self.on_tokens()
        return not self.complete

    def _publish(self) -> None:
        """Sends the items decoded since the last message, with the progress."""
        ex = self.explanation
        ex.words  # the new words' peaks (explain(wait=False) has computed them with the window already)
        with self.cond:
            with ex._lock:  # decode_next adds a window's tokens, words and segments under it
                n_tokens, n_words, n_segments = len(ex.tokens), len(ex._words), len(ex.segments)
                complete, decoded_s = ex.complete, float(ex.decoded_s)
            self.send(self._message(self.n_tokens, n_tokens, self.n_words, n_words, self.n_segments, n_segments,
                                    decoded_s, complete))
            self.n_tokens, self.n_words, self.n_segments = n_tokens, n_words, n_segments
            self.decoded_s, self.complete = decoded_s, complete
            self.cond.notify_all()

    def _fail(self, exc: Exception) -> None:
        if not isinstance(exc, (ValueError, RuntimeError)):
            log.warning("leafx widget: decoding failed", exc_info=exc)
        with self.cond:
            self.error = f"{type(exc).__name__}: {exc}"
            self.send(({"type": "note", "message": f"Decoding stopped at {self.decoded_s:.1f} s: {self.error}"}, []))
            self.send(self._message(self.n_tokens, self.n_tokens, self.n_words, self.n_words, self.n_segments,
                                    self.n_segments, self.decoded_s, False))
            self.cond.notify_all()

    # ---- messages ----------------------------------------------------------------------------
    def _message(self, t0, t1, w0, w1, s0, s1, decoded_s, complete) -> protocol.Reply:
        ex = self.explanation
        return ({"type": "tokens",
                 "token0": t0, "tokens": [token_json(t) for t in ex.tokens[t0:t1]],
                 "word0": w0, "words": [word_json(w) for w in ex._words[w0:w1]],
                 "segment0": s0, "segments": [segment_json(s) for s in ex.segments[s0:s1]],
                 "decoded_s": decoded_s, "duration_s": float(ex.duration_s), "complete": complete,
                 "stopped": self.error is not None}, [])

    def catch_up(self) -> None:
        """Everything sent so far, again, in one message (a view that has just opened asks)."""
        with self.cond:
            self.send(self._message(0, self.n_tokens, 0, self.n_words, 0, self.n_segments,
                                    self.decoded_s, self.complete))

    # ---- waiting -----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None, progress=None) -> None:
        """Blocks until every window is decoded. ``progress``: a bar (None: in a notebook or terminal),
        False, or a callable ``progress(decoded_s, total_s)``."""
        total = float(self.explanation.duration_s)
        report = progress if callable(progress) else None
        enabled = False if report else progress
        deadline = None if timeout is None else time.monotonic() + timeout
        told = -1.0
        with _progress(None, total=round(total, 1), desc="decoding", unit="s", enabled=enabled) as bar:
            while True:
                with self.cond:
                    self.cond.wait_for(lambda: self.complete or self.error is not None or self.worker.closed,
                                       timeout=0.5)
                    complete, error, decoded_s = self.complete, self.error, self.decoded_s
                bar.update(round(decoded_s, 1) - bar.n)
                if report and decoded_s != told:
                    report(decoded_s, total)
                    told = decoded_s
                if complete:
                    return
                if error is not None:
                    raise RuntimeError(f"decoding stopped at {decoded_s:.1f} s: {error}")
                if self.worker.closed:
                    raise RuntimeError("the widget was closed before its recording was decoded; "
                                       "call explanation.decode_all() instead")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"decoding is at {decoded_s:.1f} of {total:.1f} s after {timeout} s")
