"""Executors: the bench's clips and the corpus audit on a Ray cluster (a driver connected to it, and
the CLI through its client address) give the records and tables of the serial run; a worker killed
mid-clip costs only that clip's retry; Ray missing or out of reach is one clear sentence.

One ``ray start --head`` on 127.0.0.1 with two CPUs (two workers) serves the whole module and is
stopped afterwards; token authentication is off on it (``RAY_AUTH_MODE=disabled`` in the head's and
the clients' environments only): Ray 2.60 turns it on for ``ray start --head`` wherever
``~/.ray/auth_token`` exists (any earlier local ``ray.init()`` writes one), and a client without the
token then only times out."""
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
import pandas as pd
import pytest
import soundfile as sf

import leafx_widgets as lw
from leafx_widgets import executors
from leafx_widgets.bench import runner
from leafx_widgets.executors import ExecutorError, run_jobs

TEXTS = ["and mister john dashwood had then leisure", "to consider how much there might be"]
METHODS = ["raa_last", "leafx_no_grad"]
CHEAP_ARGS = ["--methods", *METHODS, "--no-stab", "--n-inf", "2", "--max-tokens-per-clip", "2",
              "--faith-per-clip", "1", "--levels", "0.5"]
# the CLI's settings for those options, so the serial run and the CLI's run compute the same things
CHEAP = runner.settings_from_args(runner.build_parser().parse_args(["--manifest", "m.json", *CHEAP_ARGS]))
OBJECT_STORE = 80 * 2**20  # the smallest object store Ray takes
CARDS = Path("/usr/share/pocketsphinx/test/data/cards")


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


@pytest.fixture(scope="module", autouse=True)
def one_thread_like_the_workers():
    """The serial runs here compute with one torch thread, as each Ray worker does (one CPU each):
    float sums in another order differ in their last digits, and the tables are compared byte for byte."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


TEST_ENV = {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _start_head(temp: str, gcs: int, client: int) -> subprocess.Popen:
    repo = str(Path(__file__).resolve().parents[1])  # the workers import this checkout's leafx_widgets
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    head = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
         "--ray-client-server-port", str(client), "--num-cpus", "2", "--include-dashboard", "false",
         "--object-store-memory", str(OBJECT_STORE), "--temp-dir", temp],
        env={**os.environ, **TEST_ENV, "PYTHONPATH": path},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head`` on 127.0.0.1 with two CPUs for the module (starting one costs seconds);
    its client address ``ray://127.0.0.1:PORT`` and GCS address; stopped afterwards. Ray turns
    127.0.0.1 into the machine's own address for the cluster's processes, but the client port
    listens on 127.0.0.1 too."""
    temp = tempfile.mkdtemp(prefix="lfray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    head = None
    try:
        for attempt in range(3):  # on a loaded machine a Ray node can miss its start-up deadline
            gcs, client = _free_port(), _free_port()
            head = _start_head(temp, gcs, client)
            if head.poll() is None:
                break
            _stop_head(head)
        assert head.poll() is None, "ray start --head failed three times"
        yield {"client": f"ray://127.0.0.1:{client}", "gcs": f"127.0.0.1:{gcs}"}
    finally:
        if head is not None and head.poll() is None:
            _stop_head(head)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def connected(ray_head, monkeypatch):
    """This process connected to the module's cluster as a driver: ``executor="ray"`` uses that
    connection (as in a notebook after ``ray.init(address=...)``) and leaves it up."""
    import ray

    for key, value in TEST_ENV.items():
        monkeypatch.setenv(key, value)
    ray.init(address=ray_head["gcs"], log_to_driver=False, logging_level="warning")
    yield
    ray.shutdown()


def test_the_cli_on_a_running_cluster_gives_the_serial_records(manifest, serial, ray_head, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "leafx_widgets.bench.runner", "--manifest", str(manifest), "--out", str(out),
           *CHEAP_ARGS, "--quiet", "--executor", ray_head["client"], "--workers", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **TEST_ENV, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _untimed(json.loads((out / "records.json").read_text())) == serial["records.json"]


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


def test_a_worker_killed_mid_clip_costs_only_that_clip_and_the_records_are_the_serial_ones(
        manifest, serial, connected, tmp_path):
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
    assert sum(line.startswith("worker ") and " ready (pid " in line for line in logs) >= 2
    assert any(line.startswith("a worker was lost") for line in logs)
    assert not result["failed"] and _comparable(result) == {k: serial[k] for k in ("records", "clips")}
    # results streamed into the same cache: the serial executor resumes from it
    again = []
    runner.run_bench(manifest, "tiny.en", METHODS, tmp_path / "out", settings=CHEAP, log=again.append, report=False)
    assert sum(line.endswith(": cached") for line in again) == 3


def test_the_corpus_audit_gives_the_serial_tables_on_ray(connected, tmp_path):
    """``leafx-widgets audit`` with the Ray executor writes the local run's tokens.csv byte for byte:
    stability's seeded noise and a substitution's contrast included."""
    from leafx_widgets import cli

    data = tmp_path / "data"
    data.mkdir()
    clips = []
    for name, text in [("001.wav", "ten of hearts"), ("003.wav", "seven of clubs")]:  # "hearts": a substitution
        shutil.copy(CARDS / name, data / name)
        clips.append({"id": f"cards-{name[:3]}", "file": name, "text": text})
    (data / "cards.json").write_text(json.dumps(clips))
    argv = ["audit", "--manifest", str(data / "cards.json"), "--contrast-steps", "2", "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"]) == 0
    local = (tmp_path / "local" / "tokens.csv").read_text()
    assert (tmp_path / "ray" / "tokens.csv").read_text() == local
    assert "cards-001" in local and "cards-003" in local and ",substitution," in local and ",hearts," in local
    for name in ("clips.csv", "deletions.csv"):  # clips.csv without its wall times
        tables = [pd.read_csv(tmp_path / run / name) for run in ("local", "ray")]
        assert tables[0].drop(columns="seconds", errors="ignore").equals(tables[1].drop(columns="seconds", errors="ignore"))


class _FakeRay:
    """``ray`` whose client connection fails as told: a list of exceptions (None: connects)."""

    def __init__(self, outcomes):
        self.outcomes, self.inits, self.shutdowns = list(outcomes), 0, 0

    def is_initialized(self):
        return False

    def init(self, **kwargs):
        self.inits += 1
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome

    def shutdown(self):
        self.shutdowns += 1


@pytest.fixture
def listening():
    """A port something listens on (the client's port check passes), as ``ray://127.0.0.1:PORT``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"ray://127.0.0.1:{s.getsockname()[1]}"


SERVER_FAILED = ConnectionAbortedError("Initialization failure from server:\nTraceback (most recent call last):\n"
                                       "  File \"proxier.py\", line 772\nRuntimeError: Starting Ray client server "
                                       "failed. See ray_client_server_23000.err for detailed logs.")


def test_a_client_server_that_fails_to_start_is_tried_once_more_then_named(listening):
    fake = _FakeRay([SERVER_FAILED, None])
    assert executors._connect(fake, listening, {}) is True and fake.inits == 2
    fake = _FakeRay([SERVER_FAILED, SERVER_FAILED])
    with pytest.raises(ExecutorError) as err:
        executors._connect(fake, listening, {})
    assert str(err.value) == (f"cannot connect to the Ray cluster at {listening}: ConnectionAbortedError: "
                              "Initialization failure from server: RuntimeError: Starting Ray client server failed. "
                              "See ray_client_server_23000.err for detailed logs.")
    assert fake.shutdowns == 2


def test_a_client_timeout_points_at_token_authentication(listening):
    fake = _FakeRay([ConnectionError("ray client connection timeout")])
    with pytest.raises(ExecutorError, match=r"ConnectionError: ray client connection timeout \(if the cluster uses "
                                            r"token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"):
        executors._connect(fake, listening, {})
    assert fake.inits == 1
