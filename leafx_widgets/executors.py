"""Run independent jobs (one clip each) in this process or on a Ray cluster, results streamed back.

    run_jobs(jobs, work, executor="local" | "ray" | "ray://HOST:PORT", model="tiny.en",
             on_result=lambda job, result, error: ...)

``work(adapter, job) -> dict`` is a module-level function (Ray ships it by reference) and every
job is picklable. ``on_result(job, result, error)`` runs in this process as each job finishes
(in completion order: callers sort by job order), so the caller keeps its cache, progress bar and
failure list, and a rerun resumes through that cache.

* ``"local"``: one loaded model, the jobs in order, in this process.
* ``"ray"``: starts a Ray cluster on this machine (or uses the one ``ray.init()`` already
  connected to); ``"ray://HOST:PORT"``: connects to a running cluster's client port.
  A pool of actors holds one loaded model each (``num_workers``; one GPU per actor when
  ``device`` is cuda); each actor takes the next job when it finishes one. A worker lost mid-job
  (killed, out of memory, node gone) costs only that job: it is retried on a fresh actor, and
  reported as failed after ``max_attempts`` losses. ``should_stop()`` (a Ctrl-C) stops handing
  out jobs and waits for the running ones; a KeyboardInterrupt stops at once.

Ray comes with ``pip install 'leafx-widgets[distributed]'``; every node needs leafx-widgets (and
the model) installed, and the jobs' files at the same paths (or shipped in the job).
"""
from __future__ import annotations

import os
import pickle
import socket
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

RAY_HINT = "pip install 'leafx-widgets[distributed]'"
EXECUTORS = "local, ray or ray://HOST:PORT"


class ExecutorError(ValueError):
    """The executor cannot run here: Ray missing, a cluster out of reach or too small, a bad name."""


class WorkerLost(RuntimeError):
    """The worker running a job died (killed, out of memory, its node gone) more often than allowed."""


class RemoteError(RuntimeError):
    """A worker's exception that could not travel back as itself; its text keeps the original type."""


def check_executor(executor: str) -> str:
    """``executor`` if it names one (local, ray, ray://HOST:PORT), else an ExecutorError."""
    if executor in ("local", "ray"):
        return executor
    if isinstance(executor, str) and executor.startswith("ray://"):
        _host_port(executor)
        return executor
    raise ExecutorError(f"unknown executor {executor!r}: use {EXECUTORS}")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address[len("ray://"):].rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"a Ray address looks like ray://HOST:PORT (the head's client port, 10001 "
                            f"by default), got {address!r}")
    return host, int(port)


def add_executor_options(parser) -> None:
    """``--executor`` and ``--workers`` for a command that runs clips through ``run_jobs``."""
    parser.add_argument("--executor", default="local", type=_executor_arg, metavar="local|ray|ray://HOST:PORT",
                        help="where the clips run: this process, a Ray cluster started on this machine, or a "
                             "running Ray cluster's client address (Ray: pip install 'leafx-widgets[distributed]')")
    parser.add_argument("--workers", type=_workers_arg, metavar="N",
                        help="Ray workers, each with its own model (default: as many as the cluster's CPUs, "
                             "or GPUs with --device cuda)")


def _executor_arg(text: str) -> str:
    import argparse

    try:
        return check_executor(text)
    except ExecutorError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _workers_arg(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--workers must be a whole number of at least 1, got {text!r}")
    return int(text)


def run_jobs(jobs: Sequence, work: Callable[[Any, Any], dict], *, executor: str = "local", model,
             device: str = "cpu", dtype=None, language: str | None = None,
             on_result: Callable[[Any, dict | None, BaseException | None], None],
             should_stop: Callable[[], bool] | None = None, on_start: Callable[[Any], None] | None = None,
             check: Callable[[Any], None] | None = None, num_workers: int | None = None,
             cpus_per_worker: int = 1, max_attempts: int = 3, ray_options: dict | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """Run ``work(adapter, job)`` for every job; ``on_result(job, result, error)`` for each as it ends.

    ``model``: a name or folder for ``load_model`` (loaded once per worker), or, for ``"local"``
    only, a loaded adapter. ``check(adapter)``: runs once per loaded model before any job (e.g.
    refuse methods the model cannot serve); its exception is raised here. ``on_start(job)``: a
    job was handed to a worker. ``ray_options``: extra ``ray.init`` arguments for a cluster started
    here (e.g. ``num_cpus``, ``object_store_memory``). ``log``: one-line notes (workers started,
    workers lost).

    A job whose ``work`` raises gets ``on_result(job, None, error)``; the others go on.
    Returns ``{"executor", "workers", "lost_workers"}``.
    """
    executor = check_executor(executor)
    should_stop = should_stop or (lambda: False)
    on_start = on_start or (lambda job: None)
    log = log or (lambda msg: None)
    if num_workers is not None and num_workers < 1:
        raise ExecutorError(f"the number of workers must be at least 1, got {num_workers}")
    if executor == "local":
        return _run_local(jobs, work, _local_adapter(model, device, dtype, language, check), on_result,
                          should_stop, on_start)
    if not isinstance(model, (str, Path)):
        raise ExecutorError("on Ray each worker loads its own model: pass the model's name or folder "
                            "(e.g. 'tiny.en'), not a loaded adapter")
    ray = _import_ray()
    if not jobs:
        return {"executor": executor, "workers": 0, "lost_workers": 0}
    started_here = _connect(ray, executor, ray_options or {})
    try:
        pool = _Pool(ray, str(model), device, dtype, language, check, cpus_per_worker, log)
        n = pool.size(num_workers, len(jobs))
        return {"executor": executor, **pool.run(n, jobs, work, on_result, should_stop, on_start, max_attempts)}
    finally:
        if started_here:
            ray.shutdown()


# ----------------------------------------------------------------------------- local

def _local_adapter(model, device, dtype, language, check):
    if isinstance(model, (str, Path)):
        from .models import load_model

        model = load_model(model, device=device, language=language, **({"dtype": dtype} if dtype else {}))
    if check is not None:
        check(model)
    return model


def _run_local(jobs, work, adapter, on_result, should_stop, on_start) -> dict:
    for job in jobs:
        if should_stop():
            break
        on_start(job)
        try:
            result = work(adapter, job)
        except Exception as err:  # one bad job must not take the others with it
            on_result(job, None, err)
            continue
        on_result(job, result, None)
    return {"executor": "local", "workers": 1, "lost_workers": 0}


# ----------------------------------------------------------------------------- Ray

def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"the Ray executor needs Ray, which is not installed: {RAY_HINT}") from None
    return ray


def _connect(ray, executor: str, options: dict) -> bool:
    """Connect to (or start) the cluster; True when this call did, so it shuts it down afterwards.
    An existing ``ray.init()`` connection is used as it is."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": "warning"}  # worker output would tear the progress bar
    if executor == "ray":
        ray.init(**{"include_dashboard": False, **quiet, **options})
        return True
    host, port = _host_port(executor)
    try:  # a quick, clear answer instead of the client's long retries
        socket.create_connection((host, port), timeout=5).close()
    except OSError as err:
        raise ExecutorError(f"cannot reach the Ray cluster at {executor}: {err.strerror or err} (is "
                            f"`ray start --head` running there, with its client port {port} open?)") from None
    for attempt in (1, 2):
        try:
            ray.init(address=executor, **quiet, **options)
            return True
        except ConnectionAbortedError as err:  # the head's per-client server did not start: once more
            ray.shutdown()
            if attempt == 2:
                raise ExecutorError(f"cannot connect to the Ray cluster at {executor}: {_one_line(err)}") from None
        except Exception as err:
            ray.shutdown()
            hint = AUTH_HINT if "connection timeout" in str(err) else ""
            raise ExecutorError(f"cannot connect to the Ray cluster at {executor}: {_one_line(err)}{hint}") from None
    return True


# A head with token authentication (Ray's default wherever ~/.ray/auth_token exists) ignores a client
# without the token, which then only reports a timeout.
AUTH_HINT = (" (if the cluster uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the "
             "head's token, printed by `ray get-auth-token` there)")


def _one_line(err: BaseException) -> str:
    """``Type: first line``; a message that only announces what follows (``...from server:``) gets the
    last line too, where the reason is."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    text = lines[0] + (f" {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else "")
    return f"{type(err).__name__}: {text}"


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling (so the caller sees the real type), else a RemoteError."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RemoteError(_one_line(err))


class Worker:
    """A Ray actor's body: one loaded model, jobs run one at a time. Errors come back as values,
    so that the caller gets the job's own exception rather than Ray's wrapper."""

    def __init__(self, model, device, dtype, language, threads, check):
        self.error = None
        try:
            import torch

            torch.set_num_threads(threads)
            self.adapter = _local_adapter(model, device, dtype, language, check)
        except Exception as err:  # raised in the caller by ready()
            self.error = _portable(err)

    def ready(self):
        return self.error, os.getpid(), socket.gethostname()

    def run(self, work, job):
        try:
            return True, work(self.adapter, job)
        except Exception as err:
            return False, _portable(err)


class _Pool:
    """Actors, the jobs waiting, and the ones running (by their result reference)."""

    def __init__(self, ray, model, device, dtype, language, check, cpus_per_worker, log):
        self.ray, self.log = ray, log
        cuda = str(device).startswith("cuda")
        self.gpus = 1 if cuda else 0
        self.cpus = cpus_per_worker
        # Ray gives each actor its GPU as CUDA_VISIBLE_DEVICES: inside the actor it is plain "cuda"
        self.args = (model, "cuda" if cuda else device, dtype, language, cpus_per_worker, check)
        self.actor_class = ray.remote(Worker)

    def size(self, wanted: int | None, n_jobs: int) -> int:
        res = self.ray.cluster_resources()
        fits = int(res.get("GPU", 0)) if self.gpus else int(res.get("CPU", 0) // self.cpus)
        what = "GPU" if self.gpus else f"{self.cpus} CPU" + ("s" if self.cpus > 1 else "")
        if fits < 1:
            raise ExecutorError(f"the Ray cluster has no room for one worker ({what} each): it offers "
                                f"{int(res.get('CPU', 0))} CPUs and {int(res.get('GPU', 0))} GPUs")
        if wanted is not None and wanted > fits:
            raise ExecutorError(f"{wanted} workers need {wanted} x {what}, but the Ray cluster offers room "
                                f"for {fits}: ask for at most {fits}")
        return max(1, min(wanted or fits, n_jobs))

    def _start(self):
        actor = self.actor_class.options(num_cpus=self.cpus, num_gpus=self.gpus).remote(*self.args)
        self.starting[actor.ready.remote()] = actor

    def run(self, n, jobs, work, on_result, should_stop, on_start, max_attempts) -> dict:
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        self.starting: dict = {}
        waiting = deque((job, 0) for job in jobs)  # (job, workers lost on it so far)
        running: dict = {}  # result ref -> (actor, job, losses)
        idle, lost, up = [], 0, 0
        for _ in range(n):
            self._start()
        try:
            while waiting or running:
                if should_stop():
                    waiting.clear()  # finish what runs, start nothing new
                while idle and waiting:
                    actor = idle.pop()
                    job, losses = waiting.popleft()
                    on_start(job)
                    running[actor.run.remote(work, job)] = (actor, job, losses)
                if not running and not self.starting:
                    break
                done, _ = ray.wait([*self.starting, *running], num_returns=1, timeout=0.2)
                for ref in done:
                    if ref in self.starting:
                        actor = self.starting.pop(ref)
                        try:
                            error, pid, host = ray.get(ref)
                        except RayActorError as err:  # it died while loading: try another
                            lost += 1
                            if lost > n * max_attempts:
                                raise WorkerLost(f"Ray workers keep dying while loading the model: "
                                                 f"{_one_line(err)}") from None
                            self._start()
                            continue
                        if error is not None:  # the model does not load, or check() refused it
                            raise error
                        up += 1
                        self.log(f"worker {up} ready (pid {pid} on {host})")
                        idle.append(actor)
                        continue
                    actor, job, losses = running.pop(ref)
                    try:
                        ok, value = ray.get(ref)
                    except RayTaskError as err:  # not the job's exception (a result that does not unpickle...)
                        ok, value = False, RemoteError(_one_line(getattr(err, "cause", None) or err))
                    except RayActorError as err:  # the worker died under this job: retry it elsewhere
                        lost += 1
                        self.ray.kill(actor, no_restart=True)
                        self._start()
                        if losses + 1 < max_attempts:
                            self.log(f"a worker was lost ({_one_line(err)[:120]}); its job goes to another")
                            waiting.appendleft((job, losses + 1))
                        else:
                            on_result(job, None, WorkerLost(f"the worker running this job was lost "
                                                            f"{losses + 1} times"))
                        continue
                    idle.append(actor)
                    on_result(job, value if ok else None, None if ok else value)
        finally:
            for actor in [*idle, *self.starting.values(), *(a for a, _, _ in running.values())]:
                ray.kill(actor, no_restart=True)
        return {"workers": n, "lost_workers": lost}

