"""The benchmark under bad input: no stale or mixed-up results, no run lost to one clip,
Ctrl-C leaves a report that a rerun resumes, every output written whole."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import leafx_widgets as lw
from leafx_widgets.bench import runner
from leafx_widgets.atomic import atomic_write
from leafx_widgets.bench.validate import ManifestError

# the bundled LibriVox clip, cut in two: its first 2.6 s and the 2.4 s after
TEXT_A = "and mister john dashwood had then leisure"
TEXT_B = "to consider how much there might be"
# one scored token per clip, no D-AOPC, no STAB: each clip costs a few encoder passes
CHEAP = runner.Settings(faith_per_clip=1, max_tokens_per_clip=1, n_inf=2, levels=(0.5,), stab=False, faith_methods=())
METHODS = ["raa_last"]
CLI_CHEAP = ["--methods", "leafx_no_grad", "--no-stab", "--n-inf", "2", "--max-tokens-per-clip", "1"]  # no D-AOPC


@pytest.fixture(scope="module")
def speech():
    samples, rate = sf.read(lw.sample_path(), dtype="float32")
    assert rate == 16000
    return samples[: int(2.6 * rate)], samples[int(2.6 * rate): int(5.0 * rate)]


def make_manifest(folder, entries, name="set.json"):
    """entries: (id, wav name, text, samples or None to keep an existing file). Word spans split
    the clip evenly: rough, but the runner only needs spans inside the clip to score tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip_id, wav, text, samples in entries:
        if samples is not None:
            sf.write(folder / wav, samples, 16000)
        edges = np.linspace(0, sf.info(folder / wav).duration, len(text.split()) + 1).round(3)
        words = [{"word": w, "start": float(s), "end": float(e)} for w, s, e in zip(text.split(), edges, edges[1:])]
        rows.append({"id": clip_id, "file": wav, "text": text, "words": words})
    path = folder / name
    path.write_text(json.dumps(rows))
    return path


def run(manifest, model, out, **kw):
    logs = []
    result = runner.run_bench(manifest, model, METHODS, out, settings=CHEAP, log=logs.append, **kw)
    return result, logs


def test_edited_text_and_edited_audio_are_recomputed(tmp_path, model, speech):
    a, b = speech
    manifest = make_manifest(tmp_path / "d", [("c1", "c1.wav", TEXT_A, a)])
    first, _ = run(manifest, model, tmp_path / "out", report=False)
    assert first["clips"][0]["ref"] == TEXT_A

    again, logs = run(manifest, model, tmp_path / "out", report=False)
    assert any(line.endswith("c1: cached") for line in logs)  # unchanged: served from the cache

    make_manifest(tmp_path / "d", [("c1", "c1.wav", TEXT_B, None)])  # the reference text edited
    edited, logs = run(manifest, model, tmp_path / "out", report=False)
    assert not any("cached" in line for line in logs)
    assert edited["clips"][0]["ref"] == TEXT_B and edited["clips"][0]["wer"] != first["clips"][0]["wer"]

    make_manifest(tmp_path / "d", [("c1", "c1.wav", TEXT_B, b)])  # now the audio file edited
    swapped, logs = run(manifest, model, tmp_path / "out", report=False)
    assert not any("cached" in line for line in logs)
    assert swapped["clips"][0]["hyp"] != edited["clips"][0]["hyp"]
    assert swapped["clips"][0]["wer"] < edited["clips"][0]["wer"]  # the new audio says TEXT_B


def test_same_content_under_two_ids_stays_two_clips(tmp_path, model, speech):
    a, _ = speech
    manifest = make_manifest(tmp_path / "d", [("one", "a.wav", TEXT_A, a), ("two", "a.wav", TEXT_A, None)])
    result, _ = run(manifest, model, tmp_path / "out", report=False)
    assert [c["clip"] for c in result["clips"]] == ["one", "two"]
    assert {r["clip"] for r in result["records"]} == {"one", "two"}
    again, logs = run(manifest, model, tmp_path / "out", report=False)
    assert sum(line.endswith(": cached") for line in logs) == 2
    assert [c["clip"] for c in again["clips"]] == ["one", "two"]  # each cached result keeps its own id
    assert {r["clip"] for r in again["records"]} == {"one", "two"}
    assert len(list((tmp_path / "out" / "cache").glob("*.json"))) == 2


def test_duplicate_ids_are_refused_before_the_model_loads(tmp_path, speech, monkeypatch):
    a, b = speech
    manifest = make_manifest(tmp_path / "d", [("c1", "a.wav", TEXT_A, a), ("c1", "b.wav", TEXT_B, b)])
    monkeypatch.setattr("leafx_widgets.models.load_model", _no_model)
    with pytest.raises(ManifestError, match="duplicate id"):
        runner.run_bench(manifest, "tiny.en", METHODS, tmp_path / "out", settings=CHEAP)


def _no_model(*args, **kwargs):
    raise AssertionError("the model was loaded before the manifest was checked")


def test_an_id_with_a_slash_runs_and_caches_under_a_safe_name(tmp_path, model, speech):
    a, _ = speech
    manifest = make_manifest(tmp_path / "d", [("speaker/../0001", "a.wav", TEXT_A, a)])
    result, _ = run(manifest, model, tmp_path / "out")
    assert [c["clip"] for c in result["clips"]] == ["speaker/../0001"] and not result["failed"]
    (cached,) = (tmp_path / "out" / "cache").iterdir()
    assert cached.name.startswith("set__speaker_0001__") and cached.suffix == ".json"
    assert "speaker/../0001" in (tmp_path / "out" / "report.md").read_text()


def test_a_failing_clip_is_reported_and_the_run_goes_on(tmp_path, model, speech, capsys):
    a, b = speech
    # silence has a fine header, so it passes the manifest check, and fails when decoded
    manifest = make_manifest(tmp_path / "d", [("good1", "a.wav", TEXT_A, a),
                                              ("silent", "s.wav", "nothing", np.zeros(16000, np.float32)),
                                              ("good2", "b.wav", TEXT_B, b)])
    result, _ = run(manifest, model, tmp_path / "out")
    assert [c["clip"] for c in result["clips"]] == ["good1", "good2"]
    (failed,) = result["failed"]
    assert failed["clip"] == "silent" and failed["reason"].startswith("AudioError: ") and "silent" in failed["reason"]
    assert "\n" not in failed["reason"]
    err = capsys.readouterr().err
    assert "set/silent: failed: AudioError" in err and "Traceback" not in err
    out = tmp_path / "out"
    md = (out / "report.md").read_text()
    assert "## Failed clips" in md and "| set | silent |" in md and "1 clip failed" in md
    assert json.loads((out / "summary.json").read_text())["failed"] == result["failed"]
    html = (out / "report.html").read_text()
    assert "Failed clips" in html and "silent" in html
    # a failure is not cached: the rerun tries that clip again and serves the two others
    _, logs = run(manifest, model, out, report=False)
    assert sum(line.endswith(": cached") for line in logs) == 2


def test_cli_exit_codes(tmp_path, speech, monkeypatch, capsys):
    a, _ = speech
    silent = make_manifest(tmp_path / "d", [("silent", "s.wav", "nothing", np.zeros(16000, np.float32))])
    args = [*CLI_CHEAP, "--quiet"]
    assert runner.main(["--manifest", str(silent), "--out", str(tmp_path / "o1"), *args]) == 1
    assert "1 failed" in capsys.readouterr().out

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"not audio")
    (bad / "m.json").write_text(json.dumps([
        {"id": "x/1", "file": "a.wav", "text": 12, "words": [{"word": "a", "start": 1, "end": 0}]},
        {"id": "x/1", "file": "../../etc/passwd", "text": "hi"}]))
    monkeypatch.setattr("leafx_widgets.models.load_model", _no_model)
    assert runner.main(["--manifest", str(bad / "m.json"), "--out", str(tmp_path / "o2"), *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "5 problems" in err
    for reason in ("cannot be read as audio", "'text' must be a string", "ends before it starts",
                   "duplicate id", "outside the manifest's folder"):
        assert reason in err
    assert not (tmp_path / "o2").exists()  # nothing was run


def test_ctrl_c_stops_after_the_clip_with_one_line_and_a_rerun_resumes(tmp_path, speech, capsys):
    a, b = speech
    clips = [(f"c{i}", f"c{i}.wav", TEXT_A if i % 2 == 0 else TEXT_B, a if i % 2 == 0 else b) for i in range(3)]
    manifest = make_manifest(tmp_path / "d", clips)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "leafx_widgets.bench.runner", "--manifest", str(manifest), "--out", str(out),
           *CLI_CHEAP]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd + ["--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list((out / "cache").glob("*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the first clip is done: interrupt the second
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        f"leafx-widgets bench: interrupted; finishing the current clip, then writing a partial report to {out} "
        "(Ctrl-C again to stop at once)"]
    summary = json.loads((out / "summary.json").read_text())
    done = [c["clip"] for c in summary["clips"]]
    assert summary["interrupted"] and 1 <= len(done) < 3 and summary["planned_clips"] == 3
    assert "Partial report: interrupted after" in (out / "report.md").read_text()
    cached = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.json")}
    assert len(cached) == len(done)

    assert runner.main(cmd[3:]) == 0  # the same command again, in this process
    rerun = capsys.readouterr().err
    assert sorted(line.split()[1] for line in rerun.splitlines() if line.endswith(": cached")) \
        == sorted(f"set/{c}:" for c in done)
    assert all(p.stat().st_mtime_ns == t for p, t in cached.items())  # not recomputed, not rewritten
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["interrupted"] and [c["clip"] for c in summary["clips"]] == ["c0", "c1", "c2"]


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    atomic_write(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_every_report_file_is_written_by_rename(tmp_path, monkeypatch):
    from leafx_widgets.bench import report

    renamed, real = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(os.path.basename(dst)), real(src, dst)))
    result = {"records": [], "clips": [], "planned_clips": 1, "interrupted": True,
              "failed": [{"dataset": "set", "clip": "a|b", "file": "a.wav", "reason": "AudioError: silent"}],
              "settings": {"model": "tiny.en", "faith_per_clip": 1, "levels": [0.5], "wall_s": 1.0}}
    report.write_reports(result, tmp_path)
    assert sorted(renamed) == ["records.csv", "records.json", "report.html", "report.md", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(renamed)  # no temporary file left
    md = (tmp_path / "report.md").read_text()
    assert "| set | a\\|b | a.wav | AudioError: silent |" in md and "Partial report" in md


def test_progress_bars_follow_the_terminal_and_quiet(tmp_path, model, speech, capsys, monkeypatch):
    from leafx_widgets import _progress as console

    class Tty:
        def isatty(self):
            return True

    assert console.bars_enabled(stream=Tty()) and not console.bars_enabled(quiet=True, stream=Tty())
    assert not console.bars_enabled(stream=open(os.devnull, "w"))
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", object())  # inside a Jupyter kernel
    assert console.bars_enabled(stream=open(os.devnull, "w")) and not console.bars_enabled(quiet=True)
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell")

    a, _ = speech
    manifest = make_manifest(tmp_path / "d", [("c1", "a.wav", TEXT_A, a)])
    runner.run_bench(manifest, model, METHODS, tmp_path / "o1", settings=CHEAP, report=False)
    assert "it/s" not in capsys.readouterr().err  # stderr is not a terminal here: no bars
    runner.run_bench(manifest, model, METHODS, tmp_path / "o2", settings=CHEAP, report=False, progress=True)
    err = capsys.readouterr().err
    for stage in ("clips: 100%", "shared passes", "methods", "raa_last: metrics"):
        assert stage in err, stage


def test_tune_sf_progress_bars(tmp_path, model, speech, capsys):
    from leafx_widgets.bench import tune_sf

    a, _ = speech
    manifest = make_manifest(tmp_path / "d", [("c1", "a.wav", TEXT_A, a)])
    tune_sf.sweep([manifest], model, grid={"desink": (0.5,), "tau": (1.0,), "gamma": (1.0,)}, n_inf=2,
                  log=lambda m: None, progress=True)
    err = capsys.readouterr().err
    assert "clips: 100%" in err and "grid" in err


# every bench module with a command line (found, not listed, so that a new one cannot be missed)
BENCH_CLIS = sorted(p.stem for p in (Path(__file__).parents[1] / "leafx_widgets" / "bench").glob("*.py")
                    if '__name__ == "__main__"' in p.read_text())
HELP_SCRIPT = """
import contextlib, io, runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        runpy.run_module("leafx_widgets.bench." + name, run_name="__main__")
    print("=====" + name + "\\n" + text.getvalue())
"""


def test_every_bench_cli_option_has_help_with_its_default_and_examples():
    proc = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *BENCH_CLIS], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    helps = dict(part.split("\n", 1) for part in proc.stdout.split("=====")[1:])
    assert list(helps) == BENCH_CLIS
    for module, text in helps.items():
        assert "\nexamples:\n" in text, module
        first = min(i for i in (text.find("positional arguments:"), text.find("options:")) if i >= 0)
        listing = re.sub(r"\n(positional arguments|options):\n", "\n", text[first:].split("\nexamples:")[0])
        # one block per argument: a line indented by two spaces, then its wrapped help
        blocks = [b for b in re.split(r"\n  (?=\S)", listing)[1:] if not b.startswith("-h, --help")]
        assert blocks or module == "widget_speed", module  # widget_speed has no options
        for block in blocks:
            help_text = " ".join(block.split())
            assert "(default:" in help_text or help_text.endswith("(required)"), (module, help_text)


def test_a_second_ctrl_c_stops_at_once(capsys):
    from leafx_widgets.bench.console import GracefulStop

    with GracefulStop("stopping soon") as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # Python runs the handler between bytecodes
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert capsys.readouterr().err == "stopping soon\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back


def test_a_clip_stopped_midway_is_not_cached_and_the_report_is_partial(tmp_path, speech, monkeypatch):
    a, b = speech
    manifest = make_manifest(tmp_path / "d", [("c1", "a.wav", TEXT_A, a), ("c2", "b.wav", TEXT_B, b)])

    def interrupted(*args, **kwargs):  # the second Ctrl-C lands inside the first clip's work
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "evaluate_clip", interrupted)
    from types import SimpleNamespace

    from leafx_widgets.models.base import CAPABILITIES

    stub = SimpleNamespace(name="stub", supports=CAPABILITIES)  # never runs: evaluate_clip is replaced
    result = runner.run_bench(manifest, stub, METHODS, tmp_path / "out", settings=CHEAP, quiet=True)
    assert result["interrupted"] and result["clips"] == [] and result["failed"] == []
    assert list((tmp_path / "out" / "cache").iterdir()) == []
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] and summary["planned_clips"] == 2
    assert "Partial report: interrupted after 0 of 2 clips" in (tmp_path / "out" / "report.md").read_text()
