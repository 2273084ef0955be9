"""Executors: the bench's clips on a local Ray cluster and through a Ray client address give the
records of the serial run; a worker killed mid-clip costs only that clip's retry; Ray missing or
out of reach is one clear sentence. Every Ray process started here is stopped afterwards."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import leafx_widgets as lw
from leafx_widgets import executors
from leafx_widgets.bench import runner
from leafx_widgets.executors import ExecutorError, run_jobs

TEXTS = ["and mister john dashwood had then leisure", "to consider how much there might be"]
CHEAP = runner.Settings(faith_per_clip=1, max_tokens_per_clip=2, n_inf=2, levels=(0.5,), stab=False, faith_methods=())
METHODS = ["raa_last", "leafx_no_grad"]
# a small local cluster: 2 CPUs, the smallest object store Ray takes, no dashboard
SMALL = {"num_cpus": 2, "object_store_memory": 80 * 2**20}


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc), zombies left out."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture(scope="module", autouse=True)
def no_ray_left_behind():
    """The tests here leave no process of their own running (Ray's included)."""
    before = _children(os.getpid())
    yield
    deadline = time.time() + 30
    while _children(os.getpid()) - before and time.time() < deadline:
        time.sleep(0.2)
    assert not _children(os.getpid()) - before, "processes left running"


@pytest.fixture(scope="module")
def local_cluster():
    """One Ray cluster on this machine for the module (starting one costs seconds); ``run_jobs``
    uses a connection that is already up and leaves it up."""
    import ray

    for attempt in range(3):  # on a loaded machine a Ray node can miss its 30 s start-up deadline
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="warning", **SMALL)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Three short clips of the bundled LibriVox sample."""
    samples, rate = sf.read(lw.sample_path(), dtype="float32")
    cuts = [samples[: int(2.6 * rate)], samples[int(2.6 * rate): int(5.0 * rate)], samples[: int(2.6 * rate)] * 0.5]
    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for i, (audio, text) in enumerate(zip(cuts, TEXTS + TEXTS[:1])):
        sf.write(folder / f"c{i}.wav", audio, rate)
        edges = np.linspace(0, len(audio) / rate, len(text.split()) + 1).round(3)
        rows.append({"id": f"c{i}", "file": f"c{i}.wav", "text": text,
                     "words": [{"word": w, "start": float(a), "end": float(b)}
                               for w, a, b in zip(text.split(), edges, edges[1:])]})
    path = folder / "set.json"
    path.write_text(json.dumps(rows))
    return path


def _untimed(rows, timers=("seconds", "timing", "runtime_s")):
    return [{k: v for k, v in row.items() if k not in timers} for row in rows]


def _comparable(result):
    """What a run computed, without its wall times."""
    return json.loads(json.dumps({"records": _untimed(result["records"]), "clips": _untimed(result["clips"])},
                                 default=runner._json_default))


@pytest.fixture(scope="module")
def serial(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    result = runner.run_bench(manifest, "tiny.en", METHODS, out, settings=CHEAP, quiet=True)
    assert len(result["clips"]) == 3 and not result["failed"] and result["records"]
    return {**_comparable(result), "records.json": _untimed(json.loads((out / "records.json").read_text()))}


def test_ray_not_installed_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ExecutorError, match=r"needs Ray, which is not installed: pip install 'leafx-widgets\[distributed\]'"):
        run_jobs([1], _double, executor="ray", model="tiny.en", on_result=print)


def test_an_unreachable_cluster_is_one_sentence():
    port = _free_port()  # nothing listens there
    start = time.time()
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at ray://127.0.0.1:{port}"):
        run_jobs([1], _double, executor=f"ray://127.0.0.1:{port}", model="tiny.en", on_result=print)
    assert time.time() - start < 10


def test_bad_executor_names_and_a_loaded_model_on_ray_are_refused(capsys):
    for bad in ("spark", "ray://nohostport", "ray://:10001"):
        with pytest.raises(ExecutorError, match="unknown executor|ray://HOST:PORT"):
            executors.check_executor(bad)
    with pytest.raises(ExecutorError, match="pass the model's name"):
        run_jobs([1], _double, executor="ray", model=object(), on_result=print)
    with pytest.raises(SystemExit):
        runner.build_parser().parse_args(["--manifest", "m.json", "--executor", "dask"])
    assert "unknown executor 'dask': use local, ray or ray://HOST:PORT" in capsys.readouterr().err


def _double(adapter, job):
    if job == 3:
        raise ValueError("three is refused")
    return {"value": job * 2, "adapter": adapter}


def test_local_executor_streams_results_errors_and_stops_when_asked():
    seen = []
    adapter = object()
    stats = run_jobs([1, 2, 3, 4, 5], _double, model=adapter, on_result=lambda *a: seen.append(a),
                     should_stop=lambda: len(seen) >= 4)
    assert [job for job, _, _ in seen] == [1, 2, 3, 4]  # asked to stop after 4: job 5 never starts
    assert seen[0][1] == {"value": 2, "adapter": adapter} and seen[0][2] is None
    job, result, error = seen[2]
    assert result is None and isinstance(error, ValueError) and str(error) == "three is refused"
    assert stats == {"executor": "local", "workers": 1, "lost_workers": 0}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_head(temp: str, gcs: int, client: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--ray-client-server-port", str(client), "--num-cpus", "2", "--include-dashboard", "false",
         "--object-store-memory", str(SMALL["object_store_memory"]), "--temp-dir", temp],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and head.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", client), timeout=1).close()
            return head
        except OSError:
            time.sleep(0.5)
    return head


def _stop_head(head: subprocess.Popen) -> None:
    """``--block`` keeps ``ray start`` in the foreground and SIGTERM makes it stop what it started;
    whatever of its session is left (a failed start leaves some) is killed by process group."""
    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()


@pytest.fixture
def ray_head():
    """``ray start --head`` on 127.0.0.1 with two CPUs; its client address; stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    try:
        for attempt in range(3):  # on a loaded machine a Ray node can miss its 30 s start-up deadline
            gcs, client = _free_port(), _free_port()
            head = _start_head(temp, gcs, client)
            if head.poll() is None:
                break
            _stop_head(head)
        assert head.poll() is None, "ray start --head failed three times"
        yield f"ray://127.0.0.1:{client}"
        _stop_head(head)
    finally:
        if head.poll() is None:
            _stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)


def test_the_cli_on_a_running_cluster_gives_the_serial_records(manifest, serial, ray_head, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "leafx_widgets.bench.runner", "--manifest", str(manifest), "--out", str(out),
           "--methods", *METHODS, "--no-stab", "--n-inf", "2", "--max-tokens-per-clip", "2", "--faith-per-clip", "1",
           "--levels", "0.5", "--quiet", "--executor", ray_head, "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
                               # the client server starts a process per client: slow on a loaded machine
                               "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "30", "RAY_AUTH_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _untimed(json.loads((out / "records.json").read_text())) == serial["records.json"]


def test_local_ray_cluster_gives_the_serial_records(manifest, serial, local_cluster, tmp_path):
    logs = []
    result = runner.run_bench(manifest, "tiny.en", METHODS, tmp_path / "out", settings=CHEAP, log=logs.append,
                              executor="ray", workers=2)
    assert _comparable(result) == {k: serial[k] for k in ("records", "clips")}
    assert sum(line.startswith("worker ") and " ready (pid " in line for line in logs) == 2
    # results streamed into the same cache: the serial executor resumes from it
    again = []
    runner.run_bench(manifest, "tiny.en", METHODS, tmp_path / "out", settings=CHEAP, log=again.append, report=False)
    assert sum(line.endswith(": cached") for line in again) == 3


def _kill_first_busy_worker(killed: list, stop: threading.Event):
    """SIGKILL the first Ray actor process caught running a job (its title is ``ray::Worker.run``)."""
    me = os.getpid()
    while not stop.is_set() and not killed:
        for pid in _children(me):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::Worker.run"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.05)


def test_a_worker_killed_mid_clip_costs_only_that_clip(manifest, serial, local_cluster, tmp_path):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_first_busy_worker, args=(killed, stop), daemon=True)
    killer.start()
    logs = []
    try:
        result = runner.run_bench(manifest, "tiny.en", METHODS, tmp_path / "out", settings=CHEAP, log=logs.append,
                                  executor="ray", workers=2)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught mid-clip"
    assert any(line.startswith("a worker was lost") for line in logs)
    assert not result["failed"] and _comparable(result) == {k: serial[k] for k in ("records", "clips")}
    assert len(list((tmp_path / "out" / "cache").glob("*.json"))) == 3
