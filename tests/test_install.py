"""A real install, as a user gets it: the committed tree is cloned, built into a wheel (the build hook
builds the JavaScript bundle), installed into a fresh virtual environment with the pinned CPU torch
first, and used there: a save_html page renders its transcript in Debian chromium, and
`leafx-widgets lab` copies the shipped notebooks and serves the quickstart.

It builds and installs for real (npm, pip from the registries; torch from this machine's disk), so it
takes minutes; `.ci/run` runs it with the rest of the suite.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("LEAFX_CHROMIUM", "/usr/bin/chromium")
STATIC = ("leafx_widgets/static/widget.js", "leafx_widgets/static/widget.css", "leafx_widgets/static/standalone.js")
NOTEBOOKS = tuple(sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))  # every one ships
TORCH = "torch==2.13.0"  # as binder/requirements.txt and .ci/run pin it: a bare torch pulls a CUDA build


def clean_env(**extra) -> dict:
    """The user's environment, without anything that points Python at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, **extra}


def run(cmd, cwd=None, env=None, timeout=900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The committed tree only, as `pip install git+...` sees it: no node_modules, no built bundle."""
    if not (ROOT / ".git").exists():
        pytest.fail("the install test needs the git checkout (it clones the committed tree)")
    repo = tmp_path_factory.mktemp("install") / "repo"
    run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)])
    assert not (repo / "leafx_widgets" / "static").exists() and not (repo / "js" / "node_modules").exists()
    return repo


@pytest.fixture(scope="module")
def wheel(clone) -> Path:
    """`pip wheel .` on the clean clone: the build hook runs npm and esbuild."""
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", ".", "-w", str(clone / "dist")], cwd=clone)
    (built,) = (clone / "dist").glob("leafx_widgets-*.whl")
    return built


def test_wheel_carries_the_bundle_and_the_notebooks(wheel):
    files = wheel_files(wheel)
    for path in STATIC:
        assert path in files, f"{path} missing from the wheel"
    for nb in NOTEBOOKS:
        assert f"leafx_widgets/notebooks/{nb}" in files, f"notebook {nb} missing from the wheel"
    assert "leafx_widgets/data/librivox_dashwood.wav" in files
    with zipfile.ZipFile(wheel) as z:
        assert len(z.read("leafx_widgets/static/widget.js")) > 10_000


def test_sdist_carries_js_and_builds_a_complete_wheel(clone, tmp_path):
    """sdist -> wheel, as `pip install leafx-widgets-X.tar.gz` does: js/ travels, node_modules does not."""
    import tarfile

    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(clone)])
    (sdist,) = tmp_path.glob("leafx_widgets-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"js/package.json", "js/package-lock.json", "js/build.mjs", "js/src/widget.js"} <= names
    assert not any(n.startswith("js/node_modules") for n in names)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(sdist), "-w", str(tmp_path / "w")])
    (built,) = (tmp_path / "w").glob("leafx_widgets-*.whl")
    assert set(STATIC) <= wheel_files(built)


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv: the pinned CPU torch first, then the wheel with its lab extra."""
    where = tmp_path_factory.mktemp("venv") / "v"
    run([sys.executable, "-m", "venv", str(where)])
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, TORCH])
    run([*pip, f"{wheel}[lab]"])
    return where


def test_installed_wheel_renders_a_page_with_its_transcript(venv, tmp_path):
    python = venv / "bin" / "python"
    page = tmp_path / "clip.html"
    script = (
        "import leafx_widgets as lw\n"
        "ex = lw.explain(lw.load_model(), lw.sample_path())\n"
        f"lw.LeafXWidget(ex).save_html({str(page)!r}, variants=['leafx_sf'])\n"
        "print(lw.__file__)\n")
    done = run([str(python), "-c", script], cwd=tmp_path)
    assert str(venv) in done.stdout, "the venv's own copy of the package was used"
    dom = run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
               page.as_uri()], timeout=120).stdout
    start = dom.find('class="lx-transcript"')
    assert start >= 0, "the page drew no transcript pane"
    transcript = dom[start:start + 20_000]
    for word in ("Dashwood", "leisure"):
        assert word in transcript, f"{word!r} not in the rendered transcript"


def test_installed_cli_answers_and_lab_serves_the_copied_quickstart(venv, tmp_path):
    cli = venv / "bin" / "leafx-widgets"
    version = run([str(cli), "--version"]).stdout.strip()
    installed = run([str(venv / "bin" / "python"), "-c",
                     "import importlib.metadata as m; print(m.version('leafx-widgets'))"]).stdout.strip()
    assert version == f"leafx-widgets {installed}"
    port, token = free_port(), "leafx-install-test"
    env = clean_env(JUPYTER_CONFIG_DIR=str(tmp_path / "jcfg"), JUPYTER_DATA_DIR=str(tmp_path / "jdata"),
                    JUPYTER_RUNTIME_DIR=str(tmp_path / "jrun"))
    lab = subprocess.Popen([str(cli), "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}"],
                           cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/api/contents/quickstart.ipynb?token={token}&content=0"
        deadline, body = time.time() + 120, None
        while time.time() < deadline and lab.poll() is None:
            try:
                body = json.loads(urllib.request.urlopen(url, timeout=5).read())
                break
            except OSError:
                time.sleep(1)
        assert body is not None, f"jupyter lab did not serve the quickstart (exit {lab.poll()})"
        assert body["type"] == "notebook"
        for nb in NOTEBOOKS:
            assert (tmp_path / "leafx-notebooks" / nb).is_file(), f"{nb} was not copied to the working folder"
    finally:
        lab.terminate()
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            lab.kill()
        shutil.rmtree(tmp_path / "jrun", ignore_errors=True)
