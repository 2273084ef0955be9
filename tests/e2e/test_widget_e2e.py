"""The widget in JupyterLab against a live kernel, and its HTML export, in headless chromium.

One notebook holds three widgets: the bundled sample on the real tiny.en engine (index 0),
a 30 s LibriVox clip on the same engine (index 1), and a 10-minute recording (real speech,
repeated) whose maps come from a stand-in Explanation (index 2; explaining 10 minutes
with tiny.en takes minutes on CI's two cores, and the open time measured is the widget's).
Timings are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import time

import pytest

from harness import (default_method, dump_failure, new_page, nonblank_pixels, open_and_run_all, view_eval,
                     wait_key)

pytestmark = pytest.mark.e2e

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox"
SETUP = f"""\
import glob, json, sys, time
import numpy as np, soundfile as sf
from leafx_widgets import load_model, explain, sample_path
from leafx_widgets.widget import LeafXWidget
from widget_fakes import FakeExplanation, METHODS as FAKE_METHODS
t = time.perf_counter(); model = load_model("tiny.en"); load_s = time.perf_counter() - t
speech = np.concatenate([sf.read(f, dtype="float32")[0] for f in sorted(glob.glob("{LIBRIVOX}/*.wav"))])
"""
SAMPLE = """\
ex = explain(model, sample_path())
w = LeafXWidget(ex)
w.save_html("export.html")
w
"""
CLIP30 = """\
a30 = np.concatenate([speech, speech])[: 30 * 16000 - 4000]
t = time.perf_counter(); ex30 = explain(model, a30, sample_rate=16000); explain30_s = time.perf_counter() - t
t = time.perf_counter(); ex30.words; base30_s = time.perf_counter() - t   # base maps of the whole window
w30 = LeafXWidget(ex30)
w30
"""
LONG = """\
a600 = np.tile(speech, 600 * 16000 // len(speech) + 1)[: 600 * 16000]
t = time.perf_counter()
ex600 = FakeExplanation(words=tuple(f"w{i}" for i in range(1500)), duration_s=600, audio=a600)
w600 = LeafXWidget(ex600, methods=FAKE_METHODS)
build600_s = time.perf_counter() - t
w600
"""
REPORT = """\
print("LEAFX_TIMES " + json.dumps(dict(load_s=load_s, explain30_s=explain30_s, base30_s=base30_s,
      build600_s=build600_s, n_tokens=[len(ex.tokens), len(ex30.tokens), len(ex600.tokens)])))
"""


@pytest.fixture(scope="module")
def lab_page(lab, browser, workdir):
    from harness import write_notebook

    base, root = lab
    write_notebook(root / "e2e.ipynb", [SETUP, SAMPLE, CLIP30, LONG, REPORT])
    page, console = new_page(browser)
    try:
        open_and_run(page, base)
    except Exception:
        dump_failure(page, console, workdir, "/tmp/leafx-e2e-failure.png")
        raise
    yield page
    page.close()


def open_and_run(page, base):
    open_and_run_all(page, f"{base}/lab/tree/e2e.ipynb")
    page.wait_for_function("() => document.querySelectorAll('.leafx-root[data-ready]').length === 3",
                           timeout=120_000)
    page.wait_for_function("() => document.body.innerText.includes('LEAFX_TIMES')", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.leafx-root[data-audio]').length === 3",
                           timeout=30_000)


def kernel_execute(page, code):
    """Runs code in the notebook's kernel (as another cell would) and waits for it."""
    page.evaluate("""async (code) => {
        const panel = [...window.jupyterapp.shell.widgets('main')].find((w) => w.sessionContext);
        await panel.sessionContext.session.kernel.requestExecute({ code }).done; }""", code)


def open_output_view(page, cell):
    """Opens another view of a cell's output (JupyterLab's "Create New View for Cell Output");
    returns the index of its .leafx-root once it has drawn."""
    page.evaluate("""(cell) => { document.querySelectorAll('.leafx-root').forEach((r) => r.dataset.seen = '1');
        const app = window.jupyterapp;
        const panel = [...app.shell.widgets('main')].find((w) => w.content && 'activeCellIndex' in w.content);
        app.shell.activateById(panel.id);
        panel.content.activeCellIndex = cell;
        return window.jupyterapp.commands.execute('notebook:create-output-view'); }""", cell)
    page.wait_for_function("() => document.querySelector('.leafx-root:not([data-seen])[data-ready]')",
                           timeout=30_000)
    index = page.evaluate("() => [...document.querySelectorAll('.leafx-root')].findIndex((r) => !r.dataset.seen)")
    page.wait_for_function("(i) => document.querySelectorAll('.leafx-root')[i].__leafx.metrics.firstMapMs",
                           arg=index, timeout=30_000)
    return index


def kernel_times(page):
    text = page.inner_text(".jp-Notebook")
    line = next(l for l in text.splitlines() if l.startswith("LEAFX_TIMES "))
    return json.loads(line[len("LEAFX_TIMES "):])


def test_panes_render(lab_page):
    page = lab_page
    times = kernel_times(page)
    for i, n in enumerate(times["n_tokens"]):
        assert page.locator(".leafx-root").nth(i).locator(".lx-tok").count() == n
    for cls in (".lx-wave", ".lx-spec", ".lx-lane"):
        assert nonblank_pixels(page, 0, cls) > 500, cls
    page.wait_for_function("() => document.querySelector('.leafx-root').__leafx.overview?.rowsDone > 0")
    assert nonblank_pixels(page, 0, ".lx-overview") > 100
    width = view_eval(page, 0, "(v) => [v.axis.width, v.ui.wave.clientWidth]")
    assert width[0] > 300 and abs(width[0] - width[1]) < 2


def test_click_token_draws_kernel_map(lab_page):
    page = lab_page
    k = 5
    assert not view_eval(page, 0, "(v, k) => !!v.store.get(k, v.model.get('method'), v.params())", k), \
        "token 5's map must not be in the browser's cache before the click"
    n_before = view_eval(page, 0, "(v) => v.metrics.maps.length")
    page.locator(".leafx-root").nth(0).locator(f".lx-tok[data-i='{k}']").click(force=True)
    wait_key(page, 0, f"{k}|{default_method(page)}|")
    # the selection reaches the model (debounced write-back)
    page.wait_for_function("(k) => document.querySelector('.leafx-root').__leafx.model.get('selected_token') === k",
                           arg=k, timeout=5_000)
    info = view_eval(page, 0, """(v) => ({ key: v.root.dataset.mapKey, n: v.current.primary.map.length,
        sum: v.current.primary.map.reduce((a, b) => a + b, 0), sel: v.model.get('selected_token'),
        selected: v.root.querySelector('.lx-tok.lx-selected').dataset.i })""")
    assert info["sel"] == k and info["selected"] == str(k)
    assert abs(info["sum"] - 1) < 1e-3 and info["n"] > 100
    # it came over the wire: one more kernel reply, now cached in the browser
    assert view_eval(page, 0, "(v) => v.metrics.maps.length") > n_before
    assert view_eval(page, 0, "(v, k) => !!v.store.get(k, v.model.get('method'), v.params())", k)
    assert page.locator(".leafx-root").nth(0).get_attribute("data-map-source") == "kernel"
    assert nonblank_pixels(page, 0, ".lx-lane") > 200


def test_variant_toggle_changes_map(lab_page):
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    base = view_eval(page, 0, "(v) => Array.from(v.current.primary.map)")
    root.locator(".lx-variant").select_option("grad", force=True)
    # the slow method shows a busy state and keeps the previous map meanwhile
    page.wait_for_function("() => document.querySelector('.leafx-root').classList.contains('lx-is-busy')",
                           timeout=5_000)
    assert "LEAF-X +grad" in root.locator(".lx-status").inner_text()
    t0 = time.perf_counter()
    wait_key(page, 0, "5|grad|", timeout=120_000)
    grad = view_eval(page, 0, "(v) => Array.from(v.current.primary.map)")
    print(f"\n[e2e] +grad map for the 7 s sample arrived after {time.perf_counter() - t0:.1f} s")
    assert len(grad) == len(base)
    assert sum(abs(a - b) for a, b in zip(grad, base)) > 1e-3
    d = default_method(page)
    root.locator(".lx-variant").select_option(d, force=True)
    wait_key(page, 0, f"5|{d}|")


def test_ladder_toggle_shows_the_models_base_grad_causal(lab_page):
    """The toolbar's base / +grad / +causal buttons switch between the rungs of the ladder that works
    for the model (LEAF-X-SF's on Whisper), and follow the method chosen elsewhere."""
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    rungs = root.locator(".lx-rung")
    assert rungs.count() == 3 and [rungs.nth(i).inner_text() for i in range(3)] == ["base", "+grad", "+causal"]
    assert [rungs.nth(i).get_attribute("data-method") for i in range(3)] == ["leafx_sf", "leafx_sf_grad",
                                                                             "leafx_sf_causal"]
    rungs.nth(1).click(force=True)
    wait_key(page, 0, "5|leafx_sf_grad|", timeout=120_000)
    assert view_eval(page, 0, "(v) => v.model.get('method')") == "leafx_sf_grad"
    assert "lx-on" in rungs.nth(1).get_attribute("class") and "lx-on" not in rungs.nth(0).get_attribute("class")
    d = default_method(page)
    root.locator(".lx-variant").select_option(d, force=True)
    wait_key(page, 0, f"5|{d}|")
    assert "lx-on" in rungs.nth(0).get_attribute("class")


def test_slow_map_shows_progress_and_can_be_cancelled(lab_page):
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    k = view_eval(page, 0, "(v) => v.selected")
    root.locator(".lx-variant").select_option("occlusion", force=True)  # tens of seconds for the window
    # the busy marker names the method and the token, counts the seconds, and offers cancel
    page.wait_for_function("() => /for token .* · [1-9]\\d* s/.test(document.querySelector('.leafx-root .lx-status').textContent)",
                           timeout=60_000)
    assert f"Occlusion / SpecMask for token {k}" in root.locator(".lx-status").inner_text()
    assert root.locator(".lx-cancel").is_visible()
    root.locator(".lx-cancel").click(force=True)
    page.wait_for_function("() => !document.querySelector('.leafx-root').classList.contains('lx-is-busy')",
                           timeout=10_000)
    assert root.locator(".lx-cancel").is_hidden() and root.locator(".lx-error").is_hidden()
    assert view_eval(page, 0, "(v) => v.root.classList.contains('lx-stale')") is False
    # the kernel stopped: a map of another token is answered at once, not after the occlusion
    d = default_method(page)
    root.locator(".lx-variant").select_option(d, force=True)
    j = 1 if k != 1 else 2
    t0 = time.perf_counter()
    root.locator(f".lx-tok[data-i='{j}']").click(force=True)
    wait_key(page, 0, f"{j}|{d}|", timeout=10_000)
    print(f"\n[e2e] map after cancelling occlusion arrived in {time.perf_counter() - t0:.2f} s")
    root.locator(f".lx-tok[data-i='{k}']").click(force=True)  # back to token k: later tests start from it
    wait_key(page, 0, f"{k}|{d}|", timeout=10_000)


def test_compare_mode(lab_page):
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    root.locator(".lx-compare").select_option("grad", force=True)  # cached from the toggle above
    page.wait_for_function("() => document.querySelector('.leafx-root').__leafx.current.compare")
    assert nonblank_pixels(page, 0, ".lx-lane2") > 100
    root.locator(".lx-compare-mode").select_option("diff", force=True)
    page.wait_for_function("() => document.querySelector('.leafx-root .lx-lane').style.display === 'none'")
    root.locator(".lx-compare").select_option("", force=True)
    page.wait_for_function("() => !document.querySelector('.leafx-root').__leafx.current.compare")


def test_playing_moves_playhead(lab_page):
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    root.locator(".lx-play").click(force=True)
    page.wait_for_timeout(800)
    t = float(root.get_attribute("data-playhead"))
    assert 0.3 < t < 3.0, t
    root.locator(".lx-play").click(force=True)  # pause
    page.wait_for_timeout(400)
    synced = view_eval(page, 0, "(v) => v.model.get('current_time')")
    assert synced > 0.3, "current_time is written back to the model"
    # space bar toggles playback, arrow keys move the selection
    root.focus()
    page.keyboard.press("ArrowRight")
    assert view_eval(page, 0, "(v) => v.selected") == 6
    page.keyboard.press(" ")
    page.wait_for_timeout(300)
    assert view_eval(page, 0, "(v) => v.player.playing")
    page.keyboard.press(" ")
    assert not view_eval(page, 0, "(v) => v.player.playing")
    # "evidence" plays only the frames holding half of the selected token's mass
    wait_key(page, 0, "6|")
    span = view_eval(page, 0, """(v) => [v.regions[0].start * v.meta.frame_s,
        v.regions[v.regions.length - 1].end * v.meta.frame_s]""")
    root.locator(".lx-play-region").click(force=True)
    page.wait_for_timeout(100)
    t = view_eval(page, 0, "(v) => v.player.time")
    assert view_eval(page, 0, "(v) => v.player.playing") or t >= span[1] - 0.05
    assert span[0] - 0.01 <= t <= span[1] + 0.05, (t, span)
    root.locator(".lx-play").click(force=True)  # pause


def test_hover_shows_tokens_at_time(lab_page):
    page = lab_page
    root = page.locator(".leafx-root").nth(0)
    box = root.locator(".lx-spec").bounding_box()
    # hover the peak of the selected token's map
    x = view_eval(page, 0, """(v) => { const m = v.current.primary.map; let b = 0;
        for (let i = 1; i < m.length; i++) if (m[i] > m[b]) b = i;
        return v.axis.timeToX((v.current.primary.startFrame + b + 0.5) * v.meta.frame_s); }""")
    page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)
    text = root.locator(".lx-hover-info").inner_text()
    assert "s:" in text and root.locator(".lx-hover-tok").count() >= 1, text


def test_traits_drive_and_observe(lab_page, lab):
    page = lab_page
    _, root_dir = lab
    # a cell drives the widget ...
    kernel_execute(page, "w.selected_token = 3; w.variant = 'base'")
    page.wait_for_function("""() => { const v = document.querySelector('.leafx-root').__leafx;
        return v.selected === 3 && v.ui.variant.value === 'base'; }""", timeout=10_000)
    wait_key(page, 0, "3|base|")
    # ... and observes the user's choices
    page.locator(".leafx-root").nth(0).locator(".lx-tok[data-i='4']").click(force=True)
    page.locator(".leafx-root").nth(0).locator(".lx-compare").select_option("grad", force=True)
    page.wait_for_timeout(500)
    kernel_execute(page, "import json; open('state.json', 'w').write(json.dumps("
                         "[w.selected_token, w.variant, w.compare_variant, w.current_time]))")
    sel, variant, compare, current = json.loads((root_dir / "state.json").read_text())
    assert (sel, variant, compare) == (4, "base", "grad") and current > 0
    page.locator(".leafx-root").nth(0).locator(".lx-compare").select_option("", force=True)
    # clicking a row of the tokens x time overview selects that token
    ov = page.locator(".leafx-root").nth(0).locator(".lx-overview")
    box = ov.bounding_box()
    n = view_eval(page, 0, "(v) => v.meta.tokens.length")
    ov.click(position={"x": box["width"] / 2, "y": (2.5 / n) * box["height"]}, force=True)
    assert view_eval(page, 0, "(v) => v.selected") == 2
    d = default_method(page)
    page.locator(".leafx-root").nth(0).locator(".lx-variant").select_option(d, force=True)
    wait_key(page, 0, f"2|{d}|")


def test_kernel_error_is_shown(lab_page):
    page = lab_page
    view_eval(page, 0, """(v) => v.model.send({type: 'map', id: 'bogus', key: 'bogus', token: 9999,
        method: 'base', params: {}})""")
    page.wait_for_function("() => !document.querySelector('.leafx-root .lx-error').hidden")
    assert "out of range" in page.locator(".leafx-root").nth(0).locator(".lx-error").inner_text()


def test_png_export(lab_page):
    page = lab_page
    page.locator(".leafx-root").nth(0).locator(".lx-png").click(force=True)
    assert view_eval(page, 0, "(v) => v.metrics.pngBytes") > 5000


def test_speed(lab_page):
    page = lab_page
    times = kernel_times(page)
    # cached token switch: click -> maps drawn -> next animation frame
    for k in (7, 8):
        page.locator(".leafx-root").nth(0).locator(f".lx-tok[data-i='{k}']").click(force=True)
        wait_key(page, 0, f"{k}|{default_method(page)}|")
    # painted = the click's work, then the next frame, then a task after that frame's paint
    switch = page.evaluate("""async () => {
        const v = document.querySelector('.leafx-root').__leafx, out = [], sync = [];
        await new Promise((res) => setTimeout(res, 300));
        for (let r = 0; r < 10; r++) for (const k of [7, 8]) {
          const t0 = performance.now();
          v.tokenEls[k].click();
          sync.push(performance.now() - t0);
          await new Promise((res) => requestAnimationFrame(() => setTimeout(res, 0)));
          if (!v.root.dataset.mapKey.startsWith(k + '|')) throw new Error('not drawn from cache');
          out.push(performance.now() - t0);
        }
        out.sort((a, b) => a - b); sync.sort((a, b) => a - b);
        return { median: out[out.length >> 1], max: out[out.length - 1], sync: sync[sync.length >> 1] }; }""")
    # 30 s clip: first map at open, and a first map at a new tau (kernel computes the window again)
    first_open = view_eval(page, 1, "(v) => v.metrics.firstMapMs")
    page.locator(".leafx-root").nth(1).locator(".lx-tau").fill("1.5", force=True)
    # the key lists only the parameters the default method takes (LEAF-X-SF has tau but no depth)
    page.wait_for_function(
        "([i, p]) => { const r = document.querySelectorAll('.leafx-root')[i]; const k = r.dataset.mapKey || '';"
        " return k.startsWith(p) && k.includes('tau=1.5') && !r.classList.contains('lx-stale'); }",
        arg=[1, f"0|{default_method(page, 1)}|"], timeout=60_000)
    fresh = view_eval(page, 1, "(v) => v.metrics.lastFetchMs")
    # and the paper's "base" method, never computed for this clip before
    assert not view_eval(page, 1, "(v) => [...v.store.cache.keys()].some((k) => k.includes('|base|'))")
    page.locator(".leafx-root").nth(1).locator(".lx-variant").select_option("base", force=True)
    wait_key(page, 1, "0|base|depth=full|tau=1.5", timeout=60_000)
    fresh_base = view_eval(page, 1, "(v) => v.metrics.lastFetchMs")
    # fresh views of the 30 s and 10-minute outputs, opened while the kernel is idle
    v30 = open_output_view(page, 2)
    first30 = view_eval(page, v30, "(v) => v.metrics.firstMapMs")
    v600 = open_output_view(page, 3)
    assert view_eval(page, v600, "(v) => v.meta.duration_s") == pytest.approx(600, abs=0.01)
    open600 = view_eval(page, v600, "(v) => v.metrics.openMs")
    page.wait_for_function("(i) => document.querySelectorAll('.leafx-root')[i].dataset.audio", arg=v600,
                           timeout=30_000)
    steps600 = view_eval(page, v600, "(v) => v.metrics.open")
    assert view_eval(page, v600, "(v) => v.player.duration") == pytest.approx(600, abs=0.01)
    report = {
        "cached_switch_painted_ms_median": round(switch["median"], 1),
        "cached_switch_painted_ms_max": round(switch["max"], 1),
        "cached_switch_js_ms_median": round(switch["sync"], 1),
        "clip30_first_map_at_open_busy_kernel_ms": round(first_open, 1),
        "clip30_first_map_at_open_ms": round(first30, 1),
        "clip30_kernel_base_compute_s": round(times["base30_s"], 3),
        "clip30_first_map_new_tau_ms": round(fresh, 1),
        "clip30_first_base_map_ms": round(fresh_base, 1),
        "long600_open_ms": round(open600, 1), "long600_open_steps_ms": steps600, "long600_widget_build_s": round(times["build600_s"], 2),
        "model_load_s": round(times["load_s"], 1), "clip30_explain_s": round(times["explain30_s"], 1),
    }
    print("\n[e2e speed] " + json.dumps(report))
    # generous bounds for a loaded CI machine; the targets (50 ms, 300 ms, 5 s) are reported above
    assert switch["median"] < 150
    assert fresh < 5_000 and fresh_base < 5_000
    assert open600 < 15_000


def test_standalone_html(lab, browser):
    _, root = lab
    export = root / "export.html"
    assert export.exists()
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(export.as_uri())
    page.wait_for_selector(".leafx-root[data-ready]", timeout=30_000)
    data = json.loads(page.inner_text("#leafx-data"))
    tokens = page.locator(".lx-tok")
    assert tokens.count() == len(data["meta"]["tokens"]) > 5
    transcript = page.inner_text(".lx-transcript")
    assert data["meta"]["words"][2]["text"] in transcript
    d = data["meta"]["default_method"]
    assert data["methods"] == [d]
    wait_key(page, 0, f"0|{d}|", timeout=10_000)
    tokens.nth(3).click(force=True)
    wait_key(page, 0, f"3|{d}|", timeout=10_000)
    assert nonblank_pixels(page, 0, ".lx-wave") > 500
    page.wait_for_selector(".leafx-root[data-audio]", timeout=10_000)
    page.locator(".lx-play").click(force=True)
    page.wait_for_timeout(500)
    assert float(page.locator(".leafx-root").get_attribute("data-playhead")) > 0.2
    # a variant that was not exported: an error in the widget, not a dead view
    page.locator(".lx-variant").select_option("causal", force=True)
    page.wait_for_function("() => !document.querySelector('.lx-error').hidden")
    assert "no map for causal" in page.inner_text(".lx-error")
    assert errors == []
    page.close()
