"""A widget's maps and overviews: asked for by the page, computed on the worker, replied to.

The Explanation is the one map cache (it keeps every map it computes); this module only
remembers which keys it has had computed, so that a repeated request is answered at once
instead of queueing behind slow work. Overviews (uint8 tokens x time rows) are cached here,
one per ``overview_key``; their rows go out as they are computed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import _codecs
from . import protocol
from .lazy import attempt, close, send_failure
from .worker import BY_USER, DESELECTED, Cancelled, Job, Worker

OVERVIEW_MAX_BINS = 2000
OVERVIEW_CHUNK_SECONDS = 0.25  # send overview rows at least this often while computing
SLOW_NOTE_MIN_S = 0.05  # a slow method's time is remembered for its next progress note past this


class Maps:
    """``send(reply)`` posts one (content, buffers) reply; ``background=False`` computes inside
    the message handler instead of on the worker (simpler to test, blocks the kernel)."""

    def __init__(self, explanation, methods: Mapping[str, Any], worker: Worker,
                 send: Callable[[protocol.Reply], None], background: bool,
                 known: Callable[[], int] | None = None, finished: Callable[[], bool] | None = None):
        self.explanation, self.methods, self.worker = explanation, methods, worker
        self.send, self.background = send, background
        # the tokens the page has been sent, and whether those are all (a recording still decoded: no)
        self.known = known or (lambda: len(explanation.tokens))
        self.finished = finished or (lambda: True)
        self._computed: set[str] = set()  # map keys the Explanation now holds
        self._overviews: dict[str, np.ndarray] = {}  # finished overviews
        self._overview_jobs: dict[str, Job] = {}  # overviews being computed, or parked until more tokens come
        self._expected_s: dict[str, float] = {}  # overview_key -> seconds its last map took

    def run_now(self, fn: Callable[[], Any]) -> Any:
        return fn() if not self.background else self.worker.run_now(fn)

    # ---- one map ---------------------------------------------------------------------------
    def compute(self, token: int, method: str, params: dict) -> np.ndarray:
        """The float32 map of ``token`` from the Explanation (which caches it), checked."""
        # defaults are left out, so the call matches maps cached by ex.map(token, method)
        # (and maps stored in a JSON explanation, which are keyed without parameters)
        defaults = self.methods[method].params if method in self.methods else {}
        given = {k: v for k, v in params.items() if k not in defaults or v != defaults[k]}
        arr = _codecs.float32_map(self.explanation.map(token, method, **given))
        expected = self.explanation.tokens[token].n_frames
        if arr.shape != (expected,):
            raise ValueError(f"{method} map of token {token} has shape {arr.shape}, expected ({expected},)")
        self._computed.add(protocol.map_key(token, method, params))
        return arr

    # ---- map requests: follow the selection, merge duplicates, newest first ------------
    def request(self, req_id, key, token: int, method: str, params: dict, selection: int) -> None:
        job = Job("map", self._run_map_job, key=protocol.map_key(token, method, params),
                  token=token, selection=selection)
        job.state.update(method=method, params=params)
        job.requesters[req_id] = key
        if not self.background:
            self._run_map_job(job)
            return
        self.select(selection)
        w = self.worker
        with w.cond:
            cached = job.key in self._computed
            if not cached:
                w.submit_or_join(job)
        if cached:
            self._run_map_job(job)  # answered at once, not queued behind slow work

    def select(self, token: int) -> None:
        """The page now shows ``token``: map work for another selection is dropped, and the page told."""
        self._tell_cancelled(self.worker.select(token), DESELECTED)

    def cancel(self, ids) -> None:
        """A computation nobody waits for any more stops at its next model layer."""
        self._tell_cancelled(self.worker.cancel(ids), BY_USER)

    def _tell_cancelled(self, requesters: Mapping, reason: str) -> None:
        send_failure(self.send, requesters, None, reason)

    def _run_map_job(self, job: Job) -> bool:
        token, method, params = job.token, job.state["method"], job.state["params"]
        okey = protocol.overview_key(method, params)
        slow = self.methods[method].cost == "slow"
        if slow and job.key not in self._computed:
            self._send_progress(job, okey)
        t0 = time.perf_counter()
        arr, error = attempt(lambda: self.compute(token, method, params))
        elapsed = time.perf_counter() - t0
        requesters = close(self.worker, job)
        if error is not None or arr is None:
            send_failure(self.send, requesters, error, job.reason)
        else:
            if slow and elapsed > SLOW_NOTE_MIN_S:
                self._expected_s[okey] = elapsed
            start = self.explanation.tokens[token].start_frame
            for reply in protocol.map_replies(requesters, token, method, params, start, arr):
                self.send(reply)
        return False

    def _send_progress(self, job: Job, okey: str) -> None:
        method = job.state["method"]
        with self.worker.cond:
            requesters = dict(job.requesters)
        label = str(self.methods[method].label or method)
        text = self.explanation.tokens[job.token].text.strip()
        note = f"computing {label} for token {job.token} \u201c{text}\u201d"
        for reply in protocol.progress_replies(requesters, job.token, method, note, self._expected_s.get(okey)):
            self.send(reply)

    # ---- overview: computed once per key, rows sent as they come -------------------------
    # While a recording is decoded the overview follows it: a job that has every row of the tokens
    # sent so far parks, and each decoded window brings it back for the new rows (``tokens_added``).
    def overview_bins(self) -> int:
        return int(max(1, min(self.explanation.n_frames, OVERVIEW_MAX_BINS)))

    def request_overview(self, method: str, params: dict) -> None:
        okey = protocol.overview_key(method, params)
        w = self.worker
        with w.cond:
            rows = self._overviews.get(okey)
            job = None
            if rows is None:
                job = self._overview_jobs.get(okey)
                if job is not None:
                    job.state["resend"] = True  # rows already sent go again, once, for the new view
                    self._unpark(job)
                    return
                if self.finished() and not self.known():
                    return
                job = Job("overview", self._overview_step, key=okey)
                job.cheap = self.methods[method].cost == "fast"
                job.state.update(method=method, params=params,
                                 rows=np.zeros((0, self.overview_bins()), dtype=np.uint8),
                                 next=0, sent=0, last=time.perf_counter(), resend=False, parked=False)
                self._overview_jobs[okey] = job
                if self.background:
                    w.submit(job)
        if rows is not None:
            self._send_rows(okey, rows, 0)
        elif not self.background:
            while self._overview_step(job):
                pass

    def tokens_added(self) -> None:
        """New tokens were sent to the page: the overviews it follows compute their rows."""
        with self.worker.cond:
            for job in self._overview_jobs.values():
                self._unpark(job)

    def _unpark(self, job: Job) -> None:
        """Call with the worker's ``cond`` held."""
        if job.state["parked"] and not self.worker.closed:
            job.state.update(parked=False, last=time.perf_counter())  # a window's rows in one message
            self.worker.submit(job)

    def _send_rows(self, okey: str, rows: np.ndarray, row0: int, n_tokens: int | None = None) -> None:
        n_tokens = len(self.explanation.tokens) if n_tokens is None else n_tokens
        self.send(protocol.overview_reply(okey, rows, row0, n_tokens, self.overview_bins()))

    def _overview_step(self, job: Job) -> bool:
        """One token's row (map requests may run before the next); True while rows remain."""
        s = job.state
        n_tokens = self.known()
        if s["rows"].shape[0] < n_tokens:  # tokens of newly decoded windows
            grown = np.zeros((n_tokens, s["rows"].shape[1]), dtype=np.uint8)
            grown[: s["rows"].shape[0]] = s["rows"]
            s["rows"] = grown
        rows = s["rows"]
        with self.worker.cond:
            resend, s["resend"] = s["resend"], False
        if resend and s["sent"]:
            self._send_rows(job.key, rows[:s["sent"]], 0, n_tokens)
        k = s["next"]
        if k < n_tokens:
            try:
                arr = self.compute(k, s["method"], s["params"])
            except Exception as exc:
                with self.worker.cond:  # a later request starts over
                    self._overview_jobs.pop(job.key, None)
                if not isinstance(exc, Cancelled):
                    self.send(protocol.error_reply(None, None, RuntimeError(f"overview stopped at token {k}: {exc}")))
                return False
            rows[k] = _codecs.row_overview(arr, self.explanation.tokens[k].start_frame,
                                           self.explanation.n_frames, rows.shape[1])
            s["next"] = k + 1
            now = time.perf_counter()
            if s["next"] == n_tokens or now - s["last"] > OVERVIEW_CHUNK_SECONDS:
                self._send_rows(job.key, rows[s["sent"]:s["next"]], s["sent"], n_tokens)
                s["sent"], s["last"] = s["next"], now
        if s["next"] < n_tokens:
            return True
        with self.worker.cond:
            resend, s["resend"] = s["resend"], False
            if self.finished():  # a view that asks from now on gets the finished rows itself
                self._overviews[job.key] = rows
                self._overview_jobs.pop(job.key, None)
                job.done = True
            else:  # the next decoded window brings it back
                s["parked"] = True
        if resend:
            self._send_rows(job.key, rows, 0, n_tokens)
        return False

    def overview(self, method: str, params: dict) -> np.ndarray:
        """uint8 (n_tokens, n_bins) tokens x time overview, each row scaled to its peak; blocks. While the
        recording is decoded, the rows of the tokens decoded so far."""
        def build() -> np.ndarray:
            okey = protocol.overview_key(method, params)
            if okey in self._overviews:
                return self._overviews[okey]
            ex, n_bins = self.explanation, self.overview_bins()
            complete = getattr(ex, "complete", True)  # read before the tokens: no window is decoded meanwhile
            rows = np.zeros((len(ex.tokens), n_bins), dtype=np.uint8)
            for k in range(rows.shape[0]):
                rows[k] = _codecs.row_overview(self.compute(k, method, params), ex.tokens[k].start_frame,
                                               ex.n_frames, n_bins)
            if complete:
                with self.worker.cond:
                    self._overviews.setdefault(okey, rows)
            return rows

        return self.run_now(build)
