"""One background thread per widget, and the order it runs work in.

Maps are computed on the worker, so slow methods never block the kernel's message loop and the
model is never run by two threads at once. The worker follows the user: Python calls first, then
map requests (the selected token's first, newest first), then overview rows of a fast method, then
the next window of a recording still being decoded, then the audit (``audit.py``), then the other overview rows. Map work for a token
the page no longer shows is dropped before it starts, or stopped at the next model layer if it is
running (every torch module call on a worker is a cancellation point). At interpreter exit every
worker is stopped and joined, so no thread is inside torch when the process ends.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

EXIT_JOIN_S = 30.0  # at interpreter exit, how long to wait for a running computation to stop
DESELECTED, BY_USER, CLOSED = "deselected", "user", "closed"  # why a map request was cancelled
SWITCHED = "switched"  # the widget shows another take
_LANES = {"call": 0, "map": 1, "decode": 3, "audit": 4, "overview": 5}
_CHEAP_OVERVIEW = 2  # a fast method's overview rows: milliseconds per window, ahead of the next window


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


class Job:
    """A unit of work for the worker; ``run(job)`` returns True when it has more to do (overview rows)."""

    def __init__(self, lane: str, run: Callable[["Job"], Any], *, key=None, token: int | None = None,
                 selection: int | None = None, future: Future | None = None):
        self.lane, self.run, self.key = lane, run, key  # lane: "call" (Python API), "map", "decode" or "overview"
        self.token, self.selection, self.future = token, selection, future
        self.requesters: dict = {}  # page request id -> the page's key for it, oldest first
        self.state: dict = {}
        self.cancel = threading.Event()
        self.reason = ""
        self.done = False  # answered: later requests must not join it
        self.seq = 0
        self.cheap = False  # an overview job of a fast method: runs before the next window is decoded

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.cancel.set()


def call_job(fn: Callable[[], Any], future: Future | None = None) -> Job:
    """A Python call as a job; its result (or exception) goes to ``future`` when given."""
    def run(_job):
        if future is None:
            fn()
        elif future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:  # reported to whoever waits on the future
                future.set_exception(exc)
        return False

    return Job("call", run, future=future)


_WORKERS: "weakref.WeakSet[Worker]" = weakref.WeakSet()


class Worker:
    """One daemon thread running a widget's jobs. Next: Python calls (oldest first), then map
    requests (the selected token's before prefetches, newest first), then a fast method's overview
    rows, then the next window to decode, then the other overview rows."""

    def __init__(self, selected: int = 0):
        self.cond = threading.Condition()  # guards the queue, the running job, the jobs' requesters, selected
        self.queued: list[Job] = []
        self.running: Job | None = None
        self.closed = False
        self.selected = selected  # the token the page shows
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def _rank(self, job: Job) -> tuple:
        if job.lane == "map":
            return (1, job.token != self.selected, -job.seq)
        if job.lane == "overview" and job.cheap:
            return (_CHEAP_OVERVIEW, job.seq)
        return (_LANES[job.lane], job.seq)

    def submit(self, job: Job) -> Job:
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

    def live(self, lane: str) -> list[Job]:
        """The running and queued jobs of ``lane`` still wanted. Call with ``cond`` held."""
        jobs = ([self.running] if self.running is not None else []) + self.queued
        return [j for j in jobs if j.lane == lane and not j.done and not j.cancel.is_set()]

    def find(self, lane: str, key) -> Job | None:
        return next((j for j in self.live(lane) if j.key == key), None)

    def submit_or_join(self, job: Job) -> None:
        """Queues a map job, or merges its requesters into a live job with the same key (one
        computation answers every identical request), which becomes the newest. Call with ``cond`` held."""
        live = self.find(job.lane, job.key)
        if live is None:
            self.submit(job)
            return
        live.requesters.update(job.requesters)
        live.selection = job.selection
        live.seq = next(self._seq)

    def _drop(self, job: Job, reason: str) -> None:
        """Unqueues ``job``, or stops it at its next model layer if it runs (it then tells its
        requesters itself). Call with ``cond`` held."""
        if job is self.running:
            job.stop(reason)
        else:
            self.queued.remove(job)

    def select(self, token: int) -> dict:
        """The page now shows ``token``: map work asked for another selection is dropped. Returns the
        requesters of the jobs dropped before they ran (id -> key), to be told."""
        with self.cond:
            if token == self.selected:
                return {}
            self.selected = token
            stale = [j for j in self.live("map") if j.selection is not None and j.selection != token]
            for job in stale:
                self._drop(job, DESELECTED)
            return {k: v for job in stale if job is not self.running for k, v in job.requesters.items()}

    def cancel(self, ids: Iterable | None) -> dict:
        """Forgets these map requests (all when ``ids`` is None); a job nobody waits for any more is
        dropped. Returns the forgotten requesters (id -> key), to be told."""
        wanted = None if ids is None else set(ids)
        told: dict = {}
        with self.cond:
            for job in self.live("map"):
                gone = [i for i in job.requesters if wanted is None or i in wanted]
                for i in gone:
                    told[i] = job.requesters.pop(i)
                if gone and not job.requesters:
                    self._drop(job, BY_USER)
        return told

    @property
    def on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run_now(self, fn: Callable[[], Any]) -> Any:
        """Runs fn on the worker (so the model never runs on two threads) and waits for its result."""
        if self.on_thread:
            return fn()
        future: Future = Future()
        self.submit(call_job(fn, future))
        return future.result()

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

    def clear(self, reason: str) -> None:
        """Drops every queued job and stops the running one at its next model layer, but keeps taking
        work (the widget shows another take: nothing asked for the last one is wanted any more). A job
        that calls this (on the worker) is not stopped."""
        with self.cond:
            dropped, self.queued = self.queued, []
            if self.running is not None and not self.on_thread:
                self.running.stop(reason)
        for job in dropped:
            if job.future is not None and not job.future.done():
                job.future.set_exception(Cancelled(reason))

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


def by_key(requesters: Mapping) -> dict:
    """Request ids grouped by the page's key for them: one reply per key answers them all."""
    out: dict = {}
    for req_id, key in requesters.items():
        out.setdefault(key, []).append(req_id)
    return out


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
