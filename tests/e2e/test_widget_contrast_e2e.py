"""The contrast lane in JupyterLab against a live tiny.en kernel: select a token, type a foil, and the kernel's
contrast (the written word against the foil) is drawn as a signed lane with its legend; the word itself as foil
is refused with a message and the widget lives on; the HTML export shows the same lane without a kernel."""

from __future__ import annotations

import json

import pytest

from harness import kernel_execute, nonblank_pixels, view_eval, widget_notebook

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def lab_page(lab, browser, workdir):
    yield from widget_notebook(lab, browser, workdir, "contrast")


def test_typing_a_foil_draws_the_kernels_contrast_lane(lab_page, browser):
    page, root, console = lab_page
    view = page.locator(".leafx-root").nth(0)
    foil = view.locator(".lx-contrast-foil")
    # nothing typed: no lane, no legend, nothing asked of the kernel
    assert view_eval(page, 0, "(v) => [v.contrast.store.counter, v.ui.contrast.style.display]") == [0, "none"]
    assert view.locator(".lx-contrast-legend").is_hidden()
    k = 3  # " John" in "And Mr. John Dashwood had then leisure ..."
    view.locator(f".lx-tok[data-i='{k}']").click(force=True)
    assert foil.get_attribute("placeholder") == 'foil for "John"'
    # the word itself: the kernel refuses it, the page says why
    foil.fill("John")
    foil.press("Enter")
    status = view.locator(".lx-contrast-status.lx-contrast-error")
    status.wait_for(timeout=30_000)
    assert "is the word the model wrote" in status.inner_text()
    assert view_eval(page, 0, "(v) => v.ui.contrast.style.display") == "none"
    # an unrelated foil: computed by the kernel, drawn on the time axis
    foil.fill("hearts")
    foil.press("Enter")
    try:
        page.wait_for_function(
            "(key) => document.querySelector('.leafx-root').dataset.contrastKey === key",
            arg=f"{k}|contrast|hearts", timeout=180_000)
    except Exception:
        dump_failure(page, console, root.parent, "/tmp/leafx-contrast-e2e-failure.png")
        raise
    kernel_execute(page, "import json; c = w._contrasts.computed()['3|contrast|hearts']; open('contrast.json', 'w')"
                         ".write(json.dumps([w.contrast_foils, w.selected_token, c.delta, c.map.tolist()]))")
    foils, selected, delta, kernel_map = json.loads((root / "contrast.json").read_text())
    assert foils == {str(k): "hearts"} and selected == k, "the foil and the click reached the kernel"
    assert delta > 0, "the sound favours the decoded word over an unrelated foil"
    drawn = view_eval(page, 0, "(v) => Array.from(v.contrast.shown.value.map)")
    assert drawn == pytest.approx(kernel_map, rel=1e-6, abs=1e-9), "the lane is the kernel's map"
    assert view.locator(".lx-contrast-pos").inner_text() == 'favours "John"'
    assert view.locator(".lx-contrast-neg").inner_text() == 'favours "hearts"'
    assert view.locator(".lx-contrast-delta").inner_text() == f"Δ log p +{delta:.2f}"
    assert view.locator(".lx-contrast-status").inner_text() == ""
    assert nonblank_pixels(page, 0, ".lx-contrast-lane") > 200
    # the pointer over the frame that most favours the word says so
    peak = view_eval(page, 0, "(v) => v.contrast.shown.value.peak_s")
    x = view_eval(page, 0, "(v, t) => v.axis.timeToX(t)", peak)
    lane = view.locator(".lx-contrast-lane")
    lane.hover(position={"x": x, "y": 10}, force=True)
    assert '(favours "John")' in lane.get_attribute("title")
    # another token has no foil: no lane; back on John it is drawn again from the page's cache
    view.locator(".lx-tok[data-i='6']").click(force=True)
    page.wait_for_function("() => document.querySelector('.leafx-root .lx-contrast-lane').style.display === 'none'")
    assert foil.input_value() == ""
    view.locator(f".lx-tok[data-i='{k}']").click(force=True)
    page.wait_for_function("() => document.querySelector('.leafx-root').dataset.contrastKey === '3|contrast|hearts'")
    assert foil.input_value() == "hearts" and view_eval(page, 0, "(v) => v.contrast.store.counter") == 2
    assert not [line for line in console if line.startswith("pageerror")], console

    # the HTML export shows the same lane without a kernel
    kernel_execute(page, "w.save_html('contrast.html', methods=[w.default_method])")
    offline = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    offline.on("pageerror", lambda e: errors.append(str(e)))
    try:
        offline.goto((root / "contrast.html").as_uri())
        offline.wait_for_function("() => document.querySelector('.leafx-root').dataset.contrastKey === '3|contrast|hearts'",
                                  timeout=30_000)
        assert offline.locator(".lx-contrast-neg").inner_text() == 'favours "hearts"'
        assert view_eval(offline, 0, "(v) => Array.from(v.contrast.shown.value.map)") == pytest.approx(kernel_map, rel=1e-6)
        assert nonblank_pixels(offline, 0, ".lx-contrast-lane") > 200
        assert not errors, errors
    finally:
        offline.close()
