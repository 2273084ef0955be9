"""Helpers of the end-to-end harness: a JupyterLab server and Debian's chromium."""

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
