"""The command line: `leafx-widgets explain` prints word peaks and writes the JSON schema, and answers
at once: every argument is checked before torch or the model loads."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import leafx_widgets as lw
from leafx_widgets import cli


def cli_run(*args, env=None, timeout=300) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "leafx_widgets.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    return done, time.perf_counter() - t0


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("leafx-widgets: error: ")
    return lines[0]


def test_explain_prints_words_and_writes_json(tmp_path, capsys):
    out = tmp_path / "ex.json"
    assert cli.main(["explain", str(lw.sample_path()), "--methods", "base,base-vn", "--json", str(out),
                     "--peaks", "base-vn", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "transcript: And Mr. John Dashwood had then leisure" in printed
    assert "peak (s) [base-vn]" in printed  # the column names its method
    assert any(line.split()[:1] == ["Dashwood"] for line in printed.splitlines())
    doc = json.loads(out.read_text())
    assert doc["schema"] == "leafx-explanation/1" and doc["audio"]["path"].endswith("librivox_dashwood.wav")
    assert set(doc["tokens"][0]["maps"]) == {"base", "base-vn"} and doc["peak_method"] == "base-vn"
    assert [w["text"] for w in doc["words"]][-1] == "them."
    # the saved peaks are the argmax of the saved maps of the named method
    for word in doc["words"]:
        mass = [sum(doc["tokens"][t]["maps"]["base-vn"][f] for t in word["tokens"])
                for f in range(len(doc["tokens"][word["tokens"][0]]["maps"]["base-vn"]))]
        assert word["peak_s"] == pytest.approx((mass.index(max(mass)) + 0.5) * doc["frame_s"], abs=1e-3)


def test_peaks_default_is_named_and_saved(tmp_path, capsys):
    out = tmp_path / "ex.json"
    assert cli.main(["explain", "--variants", "base", "--json", str(out), "-q"]) == 0  # --variants: the alias of --methods
    assert f"peak (s) [{lw.DEFAULT_METHOD}]" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["peak_method"] == lw.DEFAULT_METHOD and set(doc["tokens"][0]["maps"]) == {"base", lw.DEFAULT_METHOD}


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert cli.main(["explain", str(tmp_path / "nothing.wav")]) == 2
    assert "error: audio file not found" in capsys.readouterr().err
    assert cli.main(["explain", "--methods", "base,bogus"]) == 2
    assert "unknown method 'bogus'" in capsys.readouterr().err
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert cli.main(["explain", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    assert cli.main(["explain", str(text)]) == 2
    assert f"cannot read {text} as audio" in capsys.readouterr().err
    assert cli.main(["explain", "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert cli.main(["explain", "--model", "tiny"]) == 2
    assert "unknown model 'tiny'" in capsys.readouterr().err


def test_help_and_version_import_nothing_heavy():
    code = ("import sys\nfrom leafx_widgets import cli\n"
            "for argv in (['--help'], ['explain', '--help'], ['lab', '--help'], ['--version']):\n"
            "    try:\n        cli.main(argv)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
            "heavy = [m for m in ('torch', 'transformers', 'librosa', 'anywidget', 'bokeh') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout
    version, _ = cli_run("--version")
    from importlib.metadata import version as installed

    assert version.stdout.strip() == f"leafx-widgets {installed('leafx-widgets')}" == f"leafx-widgets {lw.__version__}"


def test_every_option_has_help_and_the_default_method_is_the_registry_s():
    from leafx_widgets.methods import DEFAULT_METHOD

    assert cli.DEFAULT_METHOD == DEFAULT_METHOD
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and name != "bench":  # bench's own parser: tests/test_bench_*.py
                assert action.help, f"{name} {action.option_strings} has no help text"
    assert "examples:" in parser.format_help()


def test_bad_paths_fail_well_before_the_model_would_load(tmp_path):
    """A missing audio file and an unwritable --json path are refused before torch loads: compare with
    how long loading the model takes, in the same test."""
    load = subprocess.run([sys.executable, "-c", "import leafx_widgets as lw; lw.load_model('tiny.en')"],
                          capture_output=True, text=True)
    assert load.returncode == 0, load.stderr
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import leafx_widgets as lw; lw.load_model('tiny.en')"], check=True)
    load_s = time.perf_counter() - t0
    missing, missing_s = cli_run("explain", str(tmp_path / "missing.wav"))
    assert "audio file not found" in one_line_error(missing)
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the --json folder should be
    unwritable, unwritable_s = cli_run("explain", "--json", str(blocked / "out.json"))
    assert f"cannot write --json {blocked / 'out.json'}" in one_line_error(unwritable)
    assert missing_s < 0.5 * load_s and unwritable_s < 0.5 * load_s, (missing_s, unwritable_s, load_s)


@pytest.mark.parametrize("device, says", [("cuda:99", "cuda:99"), ("tpu0", "unknown device 'tpu0'"),
                                          ("xla", "is not supported")])
def test_unusable_device_is_one_line(device, says):
    done, _ = cli_run("explain", "--device", device)
    assert says in one_line_error(done)


def test_unreachable_hub_is_one_sentence_without_retries(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    done, _ = cli_run("explain", "--model", "openai/whisper-tiny", env=env)
    line = one_line_error(done)
    assert "cannot reach the Hugging Face hub" in line and "not in the local cache" in line
    assert "Retry" not in done.stdout + done.stderr


def test_ctrl_c_is_one_line_and_exit_130():
    proc = subprocess.Popen([sys.executable, "-m", "leafx_widgets.cli", "explain", "--methods", "ig"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)  # inside main(): importing torch, loading the model or computing
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines() == ["leafx-widgets: interrupted"], err


def test_threads_option_sets_torch_threads():
    code = ("import torch\nfrom leafx_widgets import threads\nthreads.set_threads(1)\nprint(torch.get_num_threads())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        **os.environ, "OMP_NUM_THREADS": "2"})
    assert done.stdout.strip() == "1", done.stderr
    respected = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert respected.stdout.strip() == "1"  # no --threads: OMP_NUM_THREADS is left to torch


def test_missing_extra_names_the_pip_command(monkeypatch):
    from leafx_widgets import methods

    with pytest.raises(cli.UsageError, match=r'pip install "leafx-widgets\[bench\]"'):
        cli.check_extra({"leafx_no_such_module": "no-such-package"}, "bench", "the benchmark")
    fake = methods.Method("needs_missing", "Needs a missing package", lambda *a, **k: None,
                          requires=("leafx_no_such_module",))
    monkeypatch.setitem(methods.METHODS, fake.name, fake)
    assert "needs_missing" not in methods.available_methods()
    with pytest.raises(methods.MethodUnavailable, match=r"needs leafx_no_such_module.*leafx-widgets\[bench\]"):
        methods.get_method("needs_missing")
    assert cli.main(["explain", "--methods", "needs_missing"]) == 2


def test_methods_lists_availability(capsys):
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "leafx_sf" in out and "*" in out and "ig" in out


def test_lab_passes_arguments_and_allows_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    cmd = cli.lab_command(["--no-browser", "--port", "8899"], tmp_path)
    assert cmd[1:4] == ["-m", "jupyter", "lab"] and "--allow-root" in cmd
    assert cmd[-3:] == ["--no-browser", "--port", "8899"]  # in order, after ours
    assert f"--ServerApp.root_dir={tmp_path}" in cmd and str(tmp_path / "quickstart.ipynb") in cmd
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "--allow-root" not in cli.lab_command([], tmp_path)
    assert cli.lab_command(["--allow-root"], tmp_path).count("--allow-root") == 1


def test_lab_copies_notebooks_once_and_keeps_edits(monkeypatch, tmp_path):
    shipped = tmp_path / "pkg" / "notebooks"
    shipped.mkdir(parents=True)
    for name in ("quickstart.ipynb", "teaching.ipynb"):
        (shipped / name).write_text("{}")
    monkeypatch.setattr(cli, "shipped_notebooks", lambda: shipped)
    work = tmp_path / "work"
    assert cli.notebooks_for_lab(str(work)) == work
    assert sorted(p.name for p in work.iterdir()) == ["quickstart.ipynb", "teaching.ipynb"]
    (work / "quickstart.ipynb").write_text('{"edited": true}')
    cli.notebooks_for_lab(str(work))
    assert (work / "quickstart.ipynb").read_text() == '{"edited": true}'


def test_explain_progress_bar_over_windows(model, capsys):
    import numpy as np

    samples = lw.load_audio(lw.sample_path()).samples
    long = np.concatenate([samples] * 5)  # > 30 s: two windows
    lw.explain(model, long, sample_rate=16000, progress=True)
    assert "decoding" in capsys.readouterr().err
    lw.explain(model, long, sample_rate=16000, progress=None)  # stderr is not a terminal here
    assert "decoding" not in capsys.readouterr().err


def test_bench_and_tune_sf_take_threads():
    from leafx_widgets.bench import runner, tune_sf

    for build in (runner.build_parser, tune_sf.build_parser):
        assert build().parse_args(["--manifest", "m.json", "--threads", "1"]).threads == 1
    assert runner.main(["--manifest", "m.json", "--threads", "0"]) == 2  # refused before any work


# -- long recordings ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """The bundled clip six times over: 42.6 s, two decoding windows."""
    import numpy as np
    import soundfile

    path = tmp_path_factory.mktemp("cli_long") / "long.wav"
    soundfile.write(path, np.concatenate([lw.load_audio(lw.sample_path()).samples] * 6), 16000)
    return path


def test_long_audio_lists_segments_and_saves_them(long_wav, tmp_path, capsys):
    out = tmp_path / "long.json"
    assert cli.main(["explain", str(long_wav), "--methods", "base", "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "segments (" in printed and " in 2 windows):" in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith("  ") and " s  " in line]
    starts = [float(r[0]) for r in rows]
    assert len(rows) >= 6 and starts[0] == 0.0 and starts == sorted(starts) and 29 < max(starts) < 42.6
    assert "fallback" not in printed and "*" not in printed  # nothing was sampled
    doc = json.loads(out.read_text())
    assert len(doc["segments"]) == len(rows) and doc["segments"][0]["start"] == 0.0
    assert all(t["temperature"] == 0.0 and t["segment"] >= 0 for t in doc["tokens"])
    back = lw.Explanation.from_json(out)
    assert [s.text for s in back.segments] == [s["text"] for s in doc["segments"]]


def test_fixed_windows_and_options_reach_explain(long_wav, capsys, monkeypatch):
    """--timestamps off: fixed 30 s windows, the second segment starting at 30.00 s."""
    seen = []
    real = lw.explain

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("condition_on_previous_text", "timestamps", "temperatures") if k in kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(lw, "explain", spy)
    assert cli.main(["explain", str(long_wav), "--methods", "base", "--timestamps", "off", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "segments (2 in 2 windows):" in printed and "\n     30.00 - " in printed
    assert seen == [{"condition_on_previous_text": True, "timestamps": False}]
    assert cli.main(["explain", "--methods", "base", "--timestamps", "on", "--no-condition", "--no-fallback",
                     "-q"]) == 0
    assert seen[1] == {"condition_on_previous_text": False, "timestamps": True, "temperatures": (0.0,)}
    assert "segments (" not in capsys.readouterr().out  # one window: no segment list
    with pytest.raises(SystemExit) as exit_:  # argparse: one of auto, on, off
        cli.main(["explain", "--timestamps", "maybe"])
    assert exit_.value.code == 2 and "invalid choice: 'maybe'" in capsys.readouterr().err


def test_fallback_is_marked_in_the_output():
    """A document whose second segment was sampled at temperature 0.4: its segment and words are marked."""
    doc = {"schema": "leafx-explanation/1", "model": "tiny.en", "frame_s": 0.02, "n_frames": 3000, "text": "a b",
           "params": {}, "audio": {"path": None, "duration_s": 60.0, "sample_rate": 16000},
           "tokens": [{"index": k, "id": 400 + k, "text": f" w{k}", "word": k, "logprob": -0.1, "window": k,
                       "start_frame": 1500 * k, "n_frames": 1500, "temperature": 0.4 * k, "segment": k,
                       "maps": {"base": [1.0] + [0.0] * 1499}} for k in range(2)],
           "words": [{"index": k, "text": f"w{k}", "tokens": [k], "peak_s": 30.0 * k} for k in range(2)],
           "segments": [{"index": k, "start": 30.0 * k, "end": 30.0 * k + 2, "text": f"w{k}", "tokens": [k],
                         "window": k, "temperature": 0.4 * k} for k in range(2)]}
    ex = lw.Explanation.from_json(doc)
    ex.windows = [None, None]  # two decoding windows (read from JSON, an explanation keeps none)
    lines = cli.report(ex, ex.word_peaks("base"), "base")
    assert lines[1] == "segments (2 in 2 windows):"
    assert lines[2] == "      0.00 -     2.00 s  w0"
    assert lines[3] == "     30.00 -    32.00 s  w1  [fallback: sampled at temperature 0.4]"
    assert lines[5].startswith("w0 ") and lines[6].startswith("w1 *")
    assert lines[-1].startswith("* decoded under a fallback")


def test_max_duration_is_checked_before_torch_loads(long_wav):
    code = ("import sys\nfrom leafx_widgets import cli\n"
            f"rc = cli.main(['explain', {str(long_wav)!r}, '--max-duration', '40'])\n"
            "print('TORCH', 'torch' in sys.modules)\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert one_line_error(done) == f"leafx-widgets: error: {long_wav} lasts 42.6 s, over --max-duration 40 s; " \
                                   "cut it, or raise --max-duration"
    assert "TORCH False" in done.stdout
    for bad in ("0", "-5", "nan"):
        assert "--max-duration must be a positive number" in one_line_error(cli_run("explain", "--max-duration", bad)[0])


def test_truncated_file_names_the_cli_flag(tmp_path, capsys):
    wav = tmp_path / "cut.wav"
    wav.write_bytes(lw.sample_path().read_bytes()[:-80000])  # the header still promises 7.1 s: 2.5 s missing
    assert cli.main(["explain", str(wav), "--methods", "base", "-q"]) == 2
    err = capsys.readouterr().err
    assert "is truncated" in err and "pass --allow-truncated to use what is there" in err
    assert "allow_truncated=True" not in err
    with pytest.warns(UserWarning, match="truncated"):
        assert cli.main(["explain", str(wav), "--methods", "base", "-q", "--allow-truncated"]) == 0
    assert "(4.60 s, model tiny.en" in capsys.readouterr().out


def test_language_task_and_forced_text(tmp_path, capsys):
    """--text explains a given transcript; --task translate and --language reach explain, and a model
    that cannot do them says so in one line (exit 2)."""
    assert cli.main(["explain", "--text", "And Mrs. John Dashwood", "--methods", "base", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "transcript: And Mrs. John Dashwood" in printed and "(7.10 s, model tiny.en, 6 tokens)" in printed
    mrs = next(line for line in printed.splitlines() if line.startswith("Mrs."))
    assert float(mrs.split()[-1]) < 0.05  # p(first token): the model would not say "Mrs"
    done, _ = cli_run("explain", "--task", "translate", "-q")
    assert done.returncode == 2 and one_line_error(done) == \
        "leafx-widgets: error: tiny.en is English-only and cannot translate; load a multilingual model such as 'base'"
    done, _ = cli_run("explain", "--model", "base", "--language", "xx", "-q")
    assert done.returncode == 2 and "unknown language 'xx' for base" in one_line_error(done)
    wav = tmp_path / "de.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-s", "130", "-w", str(wav),
                    "Guten Morgen, wie geht es Ihnen heute? Ich möchte gerne einen Kaffee bestellen."], check=True)
    assert cli.main(["explain", str(wav), "--model", "base", "--task", "translate", "--methods", "leafx_sf", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "language: de (detected, p 0." in printed and "task: translate" in printed
    assert "transcript: Good morning" in printed
