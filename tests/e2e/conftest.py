"""A real Jupyter server + kernel driven by Playwright through Debian's chromium: one server for
JupyterLab 4 (/lab/...) and, through the `notebook` package's server extension, Notebook 7 (/notebooks/...)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from harness import CHROMIUM, CHROMIUM_ARGS, REPO, TESTS, ensure_bundle, free_port, write_lab_settings  # noqa: I001


@pytest.fixture(scope="session")
def workdir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="leafx-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def lab(workdir):
    """(base_url, root_dir) of a JupyterLab server with a token-free API on localhost; with the `notebook`
    package installed the same server serves Notebook 7's pages. Both expose window.jupyterapp."""
    ensure_bundle()
    port = free_port()
    root = workdir / "root"
    root.mkdir()
    write_lab_settings(workdir / "settings")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    env["JUPYTER_CONFIG_DIR"] = str(workdir / "config")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(workdir / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(workdir / "workspaces")
    log = open(workdir / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", "--LabApp.expose_app_in_browser=True",
         "--JupyterNotebookApp.expose_app_in_browser=True",
         "--ServerApp.allow_root=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("JupyterLab did not start:\n" + (workdir / "lab.log").read_text()[-3000:])
            time.sleep(0.3)
    yield base, root
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(autouse=True, scope="module")
def kernels_end_with_their_module(lab):
    """Every kernel a module started is shut down after it (its pages are closed by then): a kernel left
    running, still decoding a long recording, would slow every test after it."""
    yield
    base, _ = lab
    for kernel in json.load(urllib.request.urlopen(f"{base}/api/kernels", timeout=10)):
        request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}", method="DELETE")
        urllib.request.urlopen(request, timeout=30)


@pytest.fixture(scope="session")
def browser(workdir):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # Playwright gives every launch a fresh temporary profile (--user-data-dir).
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
