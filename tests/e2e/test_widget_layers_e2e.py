"""The layers pane in JupyterLab against a live tiny.en kernel: closed, it asks the kernel for nothing;
opened, clicking a token draws that token's logit lens strip and its patching lane, both computed by
the kernel's engine (the values drawn are the kernel's own)."""

from __future__ import annotations

import json

import pytest

from harness import kernel_execute, nonblank_pixels, view_eval, widget_notebook

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab_page(lab, browser, workdir):
    yield from widget_notebook(lab, browser, workdir, "layers")


def test_clicking_a_token_draws_its_lens_and_patching_lane_from_the_kernel(lab_page):
    page, root, console = lab_page
    pane = page.locator(".leafx-root").nth(0).locator(".lx-layers")
    # closed by default: nothing asked of the kernel, no lane
    assert pane.locator(".lx-layers-body").is_hidden()
    assert view_eval(page, 0, "(v) => [v.layers.store.counter, v.ui.patching.style.display]") == [0, "none"]
    pane.locator(".lx-layers-toggle").click(force=True)
    k = 3
    page.locator(".leafx-root").nth(0).locator(f".lx-tok[data-i='{k}']").click(force=True)
    try:
        page.wait_for_function(
            "(k) => { const el = document.querySelector('.leafx-root .lx-layers');"
            " return el.dataset.lensToken === String(k) && el.dataset.patchingKey === `${k}|patching|noise`; }",
            arg=k, timeout=180_000)
    except Exception:
        dump_failure(page, console, root.parent, "/tmp/leafx-layers-e2e-failure.png")
        raise
    kernel_execute(page, "import json; open('layers.json', 'w').write(json.dumps("
                         "[w.show_layers, w.selected_token, w._layers.computed()]))")
    shown, selected, computed = json.loads((root / "layers.json").read_text())
    assert shown is True and selected == k, "the toggle and the click reached the kernel"
    lens, patching = computed[f"{k}|lens"], computed[f"{k}|patching|noise"]
    # the strip: one cell per decoder layer, ranked and titled from the kernel's lens
    cells = pane.locator(".lx-lens-cell")
    assert cells.count() == len(lens["layers"]) == 4
    ranks = [int(cells.nth(i).get_attribute("data-rank")) for i in range(cells.count())]
    assert ranks == lens["rank"] and ranks[-1] == 0, "the last layer is the model's own output"
    title = cells.nth(3).get_attribute("title")
    assert title.startswith(f"dec.3: {json.dumps(lens['text'])} ranks #1") and json.dumps(lens["top"][3][1][0]) in title
    # the lane: the kernel's effects drawn on the shared time axis
    drawn = view_eval(page, 0, "(v) => v.layers.shown.patching.value")
    assert drawn["effect"] == patching["effect"] and len(drawn["start_s"]) == 30
    assert nonblank_pixels(page, 0, ".lx-patching") > 300
    # its bars sit where the spans are on the axis, the strongest one's hover names its stretch
    best = max(range(30), key=lambda i: patching["effect"][i] if patching["effect"][i] is not None else -9)
    x = view_eval(page, 0, "(v, t) => v.axis.timeToX(t)", (patching["start_s"][best] + patching["end_s"][best]) / 2)
    lane = page.locator(".leafx-root").nth(0).locator(".lx-patching")
    lane.hover(position={"x": x, "y": 30}, force=True)
    assert "restored: effect" in lane.get_attribute("title")
    # closing hides the lane and the strip
    pane.locator(".lx-layers-toggle").click(force=True)
    page.wait_for_function("() => document.querySelector('.leafx-root .lx-patching').style.display === 'none'")
    assert pane.locator(".lx-layers-body").is_hidden()
    assert not [line for line in console if line.startswith("pageerror")], console
