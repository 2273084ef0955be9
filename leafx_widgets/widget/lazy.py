"""What the page's lanes computed on the worker share: a job's computation tried, the job closed, its
requesters answered, and (``Lane``) results computed once per key and kept for the page, the Python API
and ``save_html``.

A request is a job in the map lane, so the selected token's comes first, newest first, identical requests
are merged, a request for a token the page has left is dropped (or stopped at its next model layer) and
the page's cancel control stops it. A request whose result is kept is answered at once, not queued
behind slow work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import protocol
from .worker import DESELECTED, Cancelled, Job, Worker


def attempt(fn: Callable[[], Any]) -> tuple[Any, Exception | None]:
    """``(fn(), None)``, ``(None, None)`` when the worker stopped it, or ``(None, error)``."""
    try:
        return fn(), None
    except Cancelled:
        return None, None
    except Exception as exc:
        return None, exc


def close(worker: Worker, job: Job) -> dict:
    """Marks ``job`` answered (identical requests from here on are served from the cache) and returns
    its requesters."""
    with worker.cond:
        job.done = True
        return dict(job.requesters)


def send_failure(send: Callable[[protocol.Reply], None], requesters: Mapping, error: Exception | None,
                 reason: str) -> None:
    """An "error" reply per key when ``error``, else a "cancelled" one per request (``reason``)."""
    if error is not None:
        for key, ids in protocol.by_key(requesters).items():
            send(protocol.error_reply(ids[0], key, error, ids))
    else:
        for reply in protocol.cancelled_replies(requesters, reason):
            send(reply)


class Lane:
    """Results kept per key. A subclass computes one in ``compute_job(job)`` (storing it in
    ``_results``) and turns it into its reply in ``reply(job, result, key, ids)``. ``send(reply)`` posts
    one (content, buffers) reply; ``background=False`` computes inside the message handler (tests)."""

    def __init__(self, explanation, worker: Worker, send: Callable[[protocol.Reply], None], background: bool):
        self.explanation, self.worker, self.send, self.background = explanation, worker, send, background
        self._results: dict = {}  # key -> result

    def compute_job(self, job: Job) -> Any:
        raise NotImplementedError

    def reply(self, job: Job, result: Any, key: str, ids: list) -> protocol.Reply:
        raise NotImplementedError

    def wait(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the worker, waited for (the Python API and ``save_html``)."""
        return fn() if not self.background else self.worker.run_now(fn)

    def computed(self) -> dict:
        """Every result computed so far, by key."""
        return dict(self._results)

    def submit(self, job: Job, own: str) -> None:
        """Runs or queues the page's request ``job`` for the result kept as ``own``."""
        if not self.background:
            self._run(job)
            return
        # map work asked for another selection is dropped, and its requesters told
        send_failure(self.send, self.worker.select(job.selection), None, DESELECTED)
        w = self.worker
        with w.cond:
            cached = own in self._results
            if not cached:
                w.submit_or_join(job)
        if cached:
            self._run(job)  # answered at once, not queued behind slow work

    def _run(self, job: Job) -> bool:
        result, error = attempt(lambda: self.compute_job(job))
        requesters = close(self.worker, job)
        if error is not None or result is None:
            send_failure(self.send, requesters, error, job.reason)
        else:
            for key, ids in protocol.by_key(requesters).items():
                self.send(self.reply(job, result, key, ids))
        return False
