"""The widget reads the audit, in JupyterLab against a live kernel, and in its HTML export.

Two widgets of the bundled sample on the real tiny.en engine: the first computes no audit until its
audit table is opened in the page (then ``ex.audit()`` runs on the widget's worker); the second is given
``ex.audit()`` with its four highest scores flagged (the sample is read cleanly: the default threshold
flags few of its tokens, if any). Flagged tokens are marked, the flag stepper (buttons and the
n / p keys) moves the selection, and a click on a table row selects its token and draws its map.
"""

from __future__ import annotations

import json
import re

import pytest

from harness import default_method, dump_failure, new_page, nonblank_pixels, open_and_run_all, view_eval, wait_key

pytestmark = pytest.mark.e2e

SETUP = """\
import json
import leafx_widgets as lw
from leafx_widgets.widget import LeafXWidget
model = lw.load_model("tiny.en")
ex = lw.explain(model, lw.sample_path(), progress=False)
"""
LAZY = """\
lazy = LeafXWidget(ex)
lazy
"""
GIVEN = """\
table = ex.audit()
table["flag"] = table.score >= table.score.nlargest(4).min()  # the clean sample has few tokens over the threshold
flagged = LeafXWidget(ex, audit=table)
flagged.save_html("audit.html")
print("LEAFX_AUDIT " + json.dumps(dict(flags=sorted(int(k) for k in table.token[table.flag]), n=len(ex.tokens))))
flagged
"""


def root(page, i):
    return page.locator(".leafx-root").nth(i)


def rows_of(page, i):
    """The audit table's rows as the page shows them: (token, score)."""
    return view_eval(page, i, """(v) => [...v.root.querySelectorAll('.lx-audit-table tbody tr')].map((tr) =>
        [+tr.dataset.i, parseFloat(tr.querySelector('td[data-col=score]').textContent)])""")


def selected(page, i):
    return view_eval(page, i, "(v) => v.selected")


@pytest.fixture(scope="module")
def audit_page(lab, browser, workdir):
    from harness import write_notebook

    base, root_dir = lab
    write_notebook(root_dir / "audit.ipynb", [SETUP, LAZY, GIVEN])
    page, console = new_page(browser)
    try:
        # a workspace of its own: JupyterLab would otherwise reopen the other e2e notebooks beside this one
        open_and_run_all(page, f"{base}/lab/workspaces/leafx-audit/tree/audit.ipynb")
        page.wait_for_function("() => document.querySelectorAll('.leafx-root[data-ready]').length === 2",
                               timeout=180_000)
        page.wait_for_function("() => document.body.innerText.includes('LEAFX_AUDIT')", timeout=60_000)
    except Exception:
        dump_failure(page, console, workdir, "/tmp/leafx-e2e-audit-failure.png")
        raise
    kernel = json.loads(re.search(r"LEAFX_AUDIT (\{.*\})", page.inner_text(".jp-Notebook")).group(1))
    yield page, kernel, root_dir
    page.close()


def test_the_audit_table_is_computed_when_opened_and_a_row_click_selects(audit_page):
    page, kernel, _ = audit_page
    lazy = root(page, 0)
    assert lazy.get_attribute("data-audit") is None, "show() computes no audit"
    assert lazy.locator(".lx-audit").is_hidden()
    lazy.locator(".lx-audit-toggle").click()
    page.wait_for_function("() => document.querySelectorAll('.leafx-root')[0].dataset.audit === 'ready'",
                           timeout=120_000)
    rows = rows_of(page, 0)
    assert len(rows) == kernel["n"] and sorted(t for t, _ in rows) == list(range(kernel["n"]))
    scores = [s for _, s in rows]
    assert scores == sorted(scores, reverse=True), "the table is sorted by score, highest first"
    # a row's click selects its token and draws its map
    k = rows[2][0]
    assert selected(page, 0) != k
    lazy.locator(f".lx-audit-table tr[data-i='{k}']").click()
    wait_key(page, 0, f"{k}|{default_method(page, 0)}|")
    page.wait_for_function("(k) => document.querySelectorAll('.leafx-root')[0].__leafx.model.get('selected_token') === k",
                           arg=k, timeout=5_000)
    assert lazy.locator(".lx-tok.lx-selected").get_attribute("data-i") == str(k)
    assert lazy.locator("tr.lx-row-selected").get_attribute("data-i") == str(k)
    assert nonblank_pixels(page, 0, ".lx-lane") > 200


def test_flagged_tokens_are_marked_and_the_stepper_moves_the_selection(audit_page):
    page, kernel, _ = audit_page
    flags = kernel["flags"]
    assert len(flags) >= 4, "the four highest scores (and their ties) are flagged"
    given = root(page, 1)
    page.wait_for_function("() => document.querySelectorAll('.leafx-root')[1].dataset.audit === 'ready'")
    marked = [int(e.get_attribute("data-i")) for e in given.locator(".lx-tok.lx-flagged").all()]
    assert marked == flags
    assert re.match(r"flagged: score \d\.\d\d", given.locator(".lx-tok.lx-flagged").first.get_attribute("title"))
    assert view_eval(page, 1, "(v) => v.root.querySelectorAll('.lx-tok:not(.lx-flagged)').length") == \
        kernel["n"] - len(flags)
    # the flag stepper: the next flag after the selection (token 0), then the keys
    after0 = [k for k in flags if k > selected(page, 1)]
    given.locator(".lx-flag-next").click()
    d = default_method(page, 1)
    wait_key(page, 1, f"{after0[0]}|{d}|")
    assert given.locator(".lx-flag-count").inner_text() == f"flag {flags.index(after0[0]) + 1} of {len(flags)}"
    given.locator(".lx-flag-next").focus()
    page.keyboard.press("n")
    nxt = flags[(flags.index(after0[0]) + 1) % len(flags)]
    wait_key(page, 1, f"{nxt}|{d}|")
    page.keyboard.press("p")
    wait_key(page, 1, f"{after0[0]}|{d}|")
    page.wait_for_function("(k) => document.querySelectorAll('.leafx-root')[1].__leafx.model.get('selected_token') === k",
                           arg=after0[0], timeout=5_000)
    assert nonblank_pixels(page, 1, ".lx-lane") > 200


def test_the_export_carries_the_flags_and_table(audit_page, browser):
    _, kernel, root_dir = audit_page
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto((root_dir / "audit.html").as_uri())
        page.wait_for_selector(".leafx-root[data-ready][data-audit='ready']", timeout=30_000)
        marked = [int(e.get_attribute("data-i")) for e in page.locator(".lx-tok.lx-flagged").all()]
        assert marked == kernel["flags"]
        page.locator(".lx-audit-toggle").click()
        rows = rows_of(page, 0)
        assert len(rows) == kernel["n"] and [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
        k = rows[1][0]
        page.locator(f".lx-audit-table tr[data-i='{k}']").click()
        wait_key(page, 0, f"{k}|{default_method(page, 0)}|", timeout=10_000)
        page.locator(".lx-flag-next").click()
        page.wait_for_function("(k) => document.querySelector('.leafx-root').__leafx.selected === k",
                               arg=next((f for f in kernel["flags"] if f > k), kernel["flags"][0]), timeout=10_000)
        assert not errors, errors
    finally:
        page.close()
