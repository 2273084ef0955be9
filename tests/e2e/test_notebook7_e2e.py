"""The widget in Jupyter Notebook 7 (the /notebooks/ UI, not JupyterLab) against a live kernel.

Same server as the JupyterLab tests (the `notebook` package's server extension serves Notebook 7's
pages beside JupyterLab's), same headless chromium; one notebook, one cell: the quickstart's
``lw.show()`` on the bundled sample with the bundled tiny.en.
"""

from __future__ import annotations

import urllib.request

import notebook  # the Notebook 7 frontend; missing, this module fails to import (never skips)
import pytest

from harness import (default_method, dump_failure, new_page, nonblank_pixels, open_and_run_all, view_eval,
                     wait_key, write_notebook)

pytestmark = pytest.mark.e2e

CELL = """\
import leafx_widgets as lw
w = lw.show()
w
"""


@pytest.fixture(scope="module")
def nb7_page(lab, browser, workdir):
    base, root = lab
    assert int(notebook.__version__.split(".")[0]) >= 7, notebook.__version__
    write_notebook(root / "nb7.ipynb", [CELL])
    url = f"{base}/notebooks/nb7.ipynb"
    with urllib.request.urlopen(url, timeout=10) as r:  # the server serves Notebook 7's page
        assert "Jupyter Notebook" in r.read().decode()
    page, console = new_page(browser)
    try:
        open_and_run_all(page, url)
        page.wait_for_selector(".leafx-root[data-ready]", timeout=120_000)
        # show() decodes on the widget's worker: the transcript is complete once the indicator goes
        page.wait_for_selector(".leafx-root[data-ready]:not([data-decoding]) .lx-tok", timeout=60_000)
    except Exception:
        dump_failure(page, console, workdir, "/tmp/leafx-nb7-failure.png")
        raise
    yield page
    # free the kernel (the model and its maps) for the tests that follow
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.close()


def test_runs_in_notebook7(nb7_page):
    page = nb7_page
    app = page.evaluate("() => [window.jupyterapp.name, window.jupyterapp.version,"
                        " document.body.dataset.notebook, !!document.querySelector('#jp-main-dock-panel')]")
    name, version, body_page, lab_dock = app
    assert name == "Jupyter Notebook" and version.split(".")[0] == "7", app
    assert body_page == "notebooks" and not lab_dock, app
    assert page.locator(".leafx-root").count() == 1


def test_panes_render(nb7_page):
    page = nb7_page
    n = view_eval(page, 0, "(v) => v.meta.tokens.length")
    assert n > 5 and page.locator(".leafx-root .lx-tok").count() == n
    wait_key(page, 0, "0|")
    for cls in (".lx-wave", ".lx-spec", ".lx-lane"):
        assert nonblank_pixels(page, 0, cls) > 500, cls
    page.wait_for_function("() => document.querySelector('.leafx-root').__leafx.overview?.rowsDone > 0")
    assert nonblank_pixels(page, 0, ".lx-overview") > 100
    width = view_eval(page, 0, "(v) => [v.axis.width, v.ui.wave.clientWidth]")
    assert width[0] > 300 and abs(width[0] - width[1]) < 2, width


def test_click_token_draws_kernel_map(nb7_page):
    page = nb7_page
    k = 5
    assert not view_eval(page, 0, "(v, k) => !!v.store.get(k, v.model.get('method'), v.params())", k)
    n_before = view_eval(page, 0, "(v) => v.metrics.maps.length")
    page.locator(f".leafx-root .lx-tok[data-i='{k}']").click(force=True)
    wait_key(page, 0, f"{k}|{default_method(page)}|")
    page.wait_for_function("(k) => document.querySelector('.leafx-root').__leafx.model.get('selected_token') === k",
                           arg=k, timeout=5_000)
    info = view_eval(page, 0, """(v) => ({ n: v.current.primary.map.length,
        sum: v.current.primary.map.reduce((a, b) => a + b, 0), maps: v.metrics.maps.length,
        selected: v.root.querySelector('.lx-tok.lx-selected').dataset.i, source: v.root.dataset.mapSource })""")
    assert info["selected"] == str(k) and info["source"] == "kernel", info
    assert abs(info["sum"] - 1) < 1e-3 and info["n"] > 100, info
    assert info["maps"] > n_before, "one more map came over the wire"
    assert nonblank_pixels(page, 0, ".lx-lane") > 200


def test_variant_toggle_changes_map(nb7_page):
    page = nb7_page
    d = default_method(page)
    other = "base" if d != "base" else "base-vn"  # cheap on CPU, and a different map
    root = page.locator(".leafx-root")
    before = view_eval(page, 0, "(v) => Array.from(v.current.primary.map)")
    root.locator(".lx-variant").select_option(other, force=True)
    wait_key(page, 0, f"5|{other}|")
    after = view_eval(page, 0, "(v) => Array.from(v.current.primary.map)")
    assert len(after) == len(before) and sum(abs(a - b) for a, b in zip(after, before)) > 1e-3
    assert root.get_attribute("data-map-source") == "kernel"
    page.wait_for_function("(m) => document.querySelector('.leafx-root').__leafx.model.get('method') === m",
                           arg=other, timeout=5_000)
    root.locator(".lx-variant").select_option(d, force=True)  # back: from the browser's cache
    wait_key(page, 0, f"5|{d}|")
    again = view_eval(page, 0, "(v) => Array.from(v.current.primary.map)")
    assert again == before
