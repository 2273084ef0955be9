"""The audit in the widget: the table of ``Explanation.audit()`` (one row per token: its suspicion
``score``, ``flag`` and, with a reference, ``error``), given or computed on the worker, and sent to the page.

``show()`` stays instant: an audit needs every token's map, so it is computed only when asked for
(``LeafXWidget(ex, audit=True)``, the page's audit table or flag buttons, or ``widget.audit()``), as a
job of the worker's "audit" lane, after the user's map requests and the decoding of the recording. The
page is told with one message type:

    {type: "audit", state: "computing", done, total, note}   while it is computed: the maps of done of
                                                       total tokens, then ``note`` names the last stage
    {type: "audit", state: "ready", rows}              the rows, sorted by score, highest first
    {type: "audit", state: "failed", message}          it could not be computed (the page may ask again)

A row holds the table's columns (``COLUMNS``: token, text, word_index, word, start_s, end_s, peak_s, logprob,
entropy, outside, stability, changed, score, flag, error, ref_word), missing ones and NaN as null (``error``
and ``ref_word`` are null without a reference).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from . import protocol
from .worker import Cancelled, Job, Worker

log = logging.getLogger(__name__)

COLUMNS = ("token", "text", "word_index", "word", "start_s", "end_s", "peak_s", "logprob", "entropy", "outside",
           "stability", "changed", "score", "flag", "error", "ref_word")  # leafx_widgets.audit.table's
REQUIRED = ("token", "score", "flag")
PROGRESS_EVERY_S = 0.25  # the page hears of the progress at most this often


def _json_value(value) -> Any:
    """A cell as JSON: numpy scalars as Python numbers, NaN / None / pandas' NA as null."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        import pandas

        if value is pandas.NA or value is pandas.NaT:
            return None
    except ImportError:  # no pandas, no pandas missing values
        pass
    return value


def audit_rows(table, n_tokens: int) -> list[dict]:
    """The page's rows of an audit table (a pandas DataFrame, one row per token), sorted by score,
    highest first; checked against an explanation of ``n_tokens`` tokens."""
    columns = getattr(table, "columns", None)
    if columns is None or not hasattr(table, "to_dict"):
        raise ValueError(f"audit must be a pandas DataFrame (as ex.audit() returns), got {type(table).__name__}")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"the audit table lacks the column(s) {missing}: it needs at least {list(REQUIRED)}")
    rows = []
    for rec in table.to_dict("records"):
        token = _json_value(rec["token"])
        if isinstance(token, float) and token.is_integer():
            token = int(token)
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < n_tokens:
            raise ValueError(f"the audit table has a row for token {token!r}, but this explanation has "
                             f"{n_tokens} tokens (0..{n_tokens - 1})")
        row = {c: _json_value(rec.get(c)) for c in COLUMNS}
        row["token"], row["flag"] = token, bool(row["flag"])
        score = row["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
            raise ValueError(f"the audit table's score of token {token} is not a number: {score!r}")
        rows.append(row)
    if len({r["token"] for r in rows}) != len(rows):
        raise ValueError("the audit table has more than one row for the same token")
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["token"]))


class Audit:
    """A widget's audit. ``send(reply)`` posts a message to the page; ``finished()`` says whether the
    recording is decoded (an audit waits for all of it); ``compute()`` returns the table, given a
    ``progress(done, total)`` callback."""

    def __init__(self, explanation, worker: Worker, send: Callable[[protocol.Reply], None], background: bool,
                 finished: Callable[[], bool] | None = None, given=None):
        self.explanation, self.worker, self.send, self.background = explanation, worker, send, background
        self.finished = finished or (lambda: True)
        self.lock = threading.Lock()  # guards the state below
        self.table = None  # the DataFrame, once there is one
        self.rows: list[dict] | None = None
        self.error: str | None = None
        self.job: Job | None = None
        self.futures: list[Future] = []
        self.done, self.total = 0, 0
        self.given = None
        if given is not None:
            self.use(given)

    def use(self, given) -> None:
        """Shows ``given`` (a DataFrame in ``ex.audit()``'s shape) as the audit; checked against the tokens
        once they are all decoded."""
        if self.finished():
            self.set(given)
        else:
            self.given = given
            self.start()

    def set(self, table) -> None:
        """Uses ``table`` (a DataFrame in ``ex.audit()``'s shape) as the audit, and shows it."""
        rows = audit_rows(table, len(self.explanation.tokens))
        with self.lock:
            self.table, self.rows, self.error = table, rows, None
        self.send(self.ready_message())

    def ready_message(self) -> protocol.Reply:
        return ({"type": "audit", "state": "ready", "rows": self.rows}, [])

    # ---- asked for -----------------------------------------------------------------------
    def start(self) -> Future:
        """Computes the audit unless there is one or it is being computed; the future gets the table."""
        future: Future = Future()
        with self.lock:
            if self.table is not None:
                future.set_result(self.table)
                return future
            self.futures.append(future)
            if self.job is not None:
                return future
            self.error, self.done, self.total = None, 0, len(self.explanation.tokens)
            # the worker fails this future when it drops the queued job (the widget was closed)
            dropped: Future = Future()
            dropped.add_done_callback(lambda f: f.exception() is not None and self._fail(f.exception()))
            self.job = Job("audit", self._step, future=dropped)
        self.send(self._computing())
        if self.background:
            self.worker.submit(self.job)
        else:  # in the caller, all of it
            job = self.job
            while self._step(job):
                pass
        return future

    def request(self) -> None:
        """The page asks for the audit (its table was opened): the rows, or computed first."""
        if self.rows is not None:
            self.send(self.ready_message())
        else:
            self.start()

    def catch_up(self) -> None:
        """A view has just opened: the rows if there are some, or how far their computation is."""
        with self.lock:
            rows, computing = self.rows, self.job is not None
        if rows is not None:
            self.send(self.ready_message())
        elif computing:
            self.send(self._computing())

    def result(self, timeout: float | None = None):
        """The audit table; computed (on the worker) when there is none, and waited for."""
        return self.start().result(timeout)

    # ---- on the worker -------------------------------------------------------------------
    def _computing(self, note: str | None = None) -> protocol.Reply:
        return ({"type": "audit", "state": "computing", "done": self.done, "total": self.total, "note": note}, [])

    def _step(self, job: Job) -> bool:
        """One token's map per run (the user's map requests go in between; the Explanation caches the
        maps ``ex.audit()`` then reads), then ``ex.audit()`` itself. True while there is more to do."""
        if not self.finished():  # the recording is still being decoded: after its next window
            return True
        ex = self.explanation
        try:
            if not getattr(ex, "complete", True):
                raise ValueError("the recording's decoding stopped before its end, so it cannot be audited")
            if self.given is None:
                k, n = job.state.get("next", 0), len(ex.tokens)
                if k < n:
                    ex.map(k)  # the default method's, as ex.audit() reads by default
                    job.state["next"] = k + 1
                    self.done, self.total = k + 1, n
                    now = time.monotonic()
                    if k + 1 == n or now - job.state.get("told", 0.0) >= PROGRESS_EVERY_S:
                        job.state["told"] = now
                        self.send(self._computing())
                    return True
                self.send(self._computing("stability under noise"))
                table = ex.audit()
            else:  # a table given before the recording was decoded
                table = self.given
            rows = audit_rows(table, len(ex.tokens))
        except ImportError as exc:  # ex.audit() returns a pandas DataFrame
            self._fail(RuntimeError(f'the audit needs pandas ({exc}): pip install "leafx-widgets[audit]"'))
            return False
        except Exception as exc:  # Cancelled (the widget closed) included: the waiters must hear
            self._fail(exc)
            return False
        with self.lock:
            self.table, self.rows, self.job = table, rows, None
            futures, self.futures = self.futures, []
        self.send(self.ready_message())
        for f in futures:
            f.set_result(table)
        return False

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.job is None and not self.futures:
                return  # told already
        if not isinstance(exc, (ValueError, Cancelled)):
            log.warning("leafx widget: the audit failed", exc_info=exc)
        message = f"The audit failed: {type(exc).__name__}: {exc}"
        with self.lock:
            self.error, self.job = message, None
            futures, self.futures = self.futures, []
        self.send(({"type": "audit", "state": "failed", "message": message}, []))
        for f in futures:
            f.set_exception(exc)
