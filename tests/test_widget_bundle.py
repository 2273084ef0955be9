"""A source checkout whose JS bundle was never built: the widget says how to build it, in one
sentence, instead of anywidget's FileNotFoundError (at import, or at construction)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from widget_fakes import METHODS, FakeExplanation

import leafx_widgets.widget.export as wmod
from leafx_widgets.widget import LeafXWidget, MissingBundleError

REPO = Path(__file__).resolve().parents[1]


def check_message(message):
    assert "\n" not in message and message.count(". ") == 0, "one sentence"
    assert "pip install -e ." in message and "cd js && npm ci && npm run build" in message
    assert "widget.js" in message or "standalone.js" in message


def test_missing_bundle_is_explained(tmp_path, monkeypatch):
    w = LeafXWidget(FakeExplanation(), methods=METHODS, background=False)
    monkeypatch.setattr(wmod, "STATIC", tmp_path)
    with pytest.raises(MissingBundleError) as err:
        LeafXWidget(FakeExplanation(), methods=METHODS)
    check_message(str(err.value))
    assert "widget.js, widget.css" in str(err.value)
    with pytest.raises(MissingBundleError) as err:
        w.save_html(tmp_path / "view.html")
    check_message(str(err.value))
    assert not (tmp_path / "view.html").exists()
    (tmp_path / "widget.css").write_text("")  # half a bundle: the missing file is named
    with pytest.raises(MissingBundleError, match=r"\(standalone\.js in "):
        w.save_html(tmp_path / "view.html")


def test_import_without_bundle_then_build(tmp_path):
    """The package imported from a checkout without static/ (anywidget reads _esm when the class
    is defined), then the bundle built in the same session: the next widget works."""
    pkg = tmp_path / "leafx_widgets"
    shutil.copytree(REPO / "leafx_widgets", pkg, ignore=shutil.ignore_patterns("static", "__pycache__"))
    script = textwrap.dedent(f"""\
        import shutil
        from widget_fakes import METHODS, FakeExplanation
        from leafx_widgets.widget import LeafXWidget, MissingBundleError
        try:
            LeafXWidget(FakeExplanation(), methods=METHODS)
        except MissingBundleError as err:
            print("ERROR:", err)
        shutil.copytree({str(REPO / "leafx_widgets" / "static")!r}, {str(pkg / "static")!r})
        w = LeafXWidget(FakeExplanation(), methods=METHODS)
        print("BUILT:", "LeafX" in w._esm or len(w._esm) > 1000, len(w._css) > 100)
        w.close()
        """)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'tests'}", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    error = next(l for l in out.stdout.splitlines() if l.startswith("ERROR: "))[len("ERROR: "):]
    check_message(error)
    assert str(pkg / "static") in error
    assert "BUILT: True True" in out.stdout
