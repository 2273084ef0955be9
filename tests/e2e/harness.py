"""Helpers of the end-to-end harness: a Jupyter server (JupyterLab 4 and Notebook 7), Debian's chromium,
and the page-side probes the tests share."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
CHROMIUM = os.environ.get("LEAFX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_bundle() -> None:
    static = REPO / "leafx_widgets" / "static"
    if not (static / "widget.js").exists() or not (static / "standalone.js").exists():
        if not (REPO / "js" / "node_modules").exists():
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=REPO / "js", check=True)
        subprocess.run(["npm", "run", "build"], cwd=REPO / "js", check=True)


def write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    nb = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None,
                   "outputs": [], "source": src} for i, src in enumerate(cells)],
    }
    path.write_text(json.dumps(nb))


def write_lab_settings(settings: pathlib.Path) -> None:
    """No virtual scrolling (every output renders) and no news prompt."""
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    }.items():
        f = settings / plugin
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))


# --- in the page --------------------------------------------------------------------------------

VIEW = "(i) => document.querySelectorAll('.leafx-root')[i].__leafx"


def new_page(browser):
    """(page, console): a 1400x1000 page with a 60 s default timeout, its console and errors collected."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    return page, console


def dump_failure(page, console, workdir: pathlib.Path, screenshot: str) -> None:
    """Prints what a failed notebook open leaves behind: the widgets' states, the page, its console, the server log."""
    page.screenshot(path=screenshot, full_page=True)
    print("---- views ----\n" + json.dumps(page.evaluate("""() => [...document.querySelectorAll('.leafx-root')]
        .map((r) => ({data: {...r.dataset}, status: r.querySelector('.lx-status')?.textContent,
                      error: r.querySelector('.lx-error-text')?.textContent,
                      width: r.querySelector('.lx-panes')?.clientWidth}))""")))
    print("---- notebook ----\n" + page.inner_text("body")[-4000:])
    print("---- console ----\n" + "\n".join(console[-40:]))
    print("---- lab.log ----\n" + (workdir / "lab.log").read_text()[-3000:])


def open_and_run_all(page, url: str) -> None:
    """Opens a notebook (JupyterLab's /lab/tree/... or Notebook 7's /notebooks/...), waits for its
    kernel, then runs every cell. Needs the app exposed as window.jupyterapp."""
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')")
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.sessionContext && w.sessionContext.session &&"
        " w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle'; }",
        timeout=60_000)
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


SAMPLE_WIDGET_CELLS = ["""\
from leafx_widgets import load_model, explain, sample_path
from leafx_widgets.widget import LeafXWidget
model = load_model("tiny.en")
w = LeafXWidget(explain(model, sample_path()))
w
"""]  # a notebook with one widget: tiny.en's explanation of the bundled sample


def open_notebook(lab, browser, workdir: pathlib.Path, name: str, cells: list[str],
                  ready: str = ".leafx-root[data-ready]"):
    """The notebook ``{name}.ipynb`` of ``cells`` opened in JupyterLab's own workspace ``leafx-{name}`` (its
    own tabs: the notebooks other tests opened are not restored next to it), run, until ``ready`` (a CSS
    selector) shows; (page, console). A failure to get there is dumped (/tmp/leafx-{name}-e2e-failure.png)."""
    base, root = lab
    write_notebook(root / f"{name}.ipynb", cells)
    page, console = new_page(browser)
    try:
        open_and_run_all(page, f"{base}/lab/workspaces/leafx-{name}/tree/{name}.ipynb")
        page.wait_for_selector(ready, timeout=120_000)
    except Exception:
        dump_failure(page, console, workdir, f"/tmp/leafx-{name}-e2e-failure.png")
        raise
    return page, console


def widget_notebook(lab, browser, workdir: pathlib.Path, name: str, cells: list[str] = SAMPLE_WIDGET_CELLS):
    """A module fixture's body: ``open_notebook`` until its widget is ready; yields (page, root, console)
    and closes the page after."""
    page, console = open_notebook(lab, browser, workdir, name, cells)
    yield page, lab[1], console
    page.close()


def kernel_execute(page, code):
    """Runs code in the notebook's kernel (as another cell would) and waits for it."""
    page.evaluate("""async (code) => {
        const panel = [...window.jupyterapp.shell.widgets('main')].find((w) => w.sessionContext);
        await panel.sessionContext.session.kernel.requestExecute({ code }).done; }""", code)


def view_eval(page, i, body, arg=None):
    """Evaluates `body` (a JS arrow function of (view, arg)) on widget i's View."""
    return page.evaluate(f"([i, arg]) => ({body})(({VIEW})(i), arg)", [i, arg])


def default_method(page, i=0):
    return view_eval(page, i, "(v) => v.meta.default_method")


def nonblank_pixels(page, i, cls):
    """How many pixels of widget i's canvas `cls` differ from its top-left pixel."""
    return page.evaluate(
        """([i, cls]) => {
          const c = document.querySelectorAll('.leafx-root')[i].querySelector(cls);
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const bg = [d[0], d[1], d[2]]; let n = 0;
          for (let p = 0; p < d.length; p += 4)
            if (Math.abs(d[p] - bg[0]) + Math.abs(d[p + 1] - bg[1]) + Math.abs(d[p + 2] - bg[2]) > 30) n++;
          return n; }""", [i, cls])


def wait_key(page, i, prefix, timeout=60_000):
    """Waits until widget i draws a (not stale) map whose key starts with `prefix` ("token|method|...")."""
    page.wait_for_function(
        "([i, p]) => { const r = document.querySelectorAll('.leafx-root')[i];"
        " return r.dataset.mapKey && r.dataset.mapKey.startsWith(p) && !r.classList.contains('lx-stale'); }",
        arg=[i, prefix], timeout=timeout)


def fake_microphone_args(wav: pathlib.Path, *, deny: bool = False) -> list[str]:
    """Chromium flags for a fake microphone that plays `wav` (16-bit PCM, looped) with the permission
    answered without a prompt: granted, or denied. Only the browsers that record launch with them."""
    return [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            "--use-fake-ui-for-media-stream=deny" if deny else "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required"]
