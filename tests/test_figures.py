"""leafx_widgets.figures on the bundled clip: figures build, curves follow the benchmark's
convention, and export writes real PNG / SVG / standalone HTML files through chromium."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from leafx_widgets import figures as F


@pytest.fixture(scope="module")
def driver():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian chromium + chromium-driver are not installed (see .ci/run)")
    d = F.webdriver()
    yield d
    d.quit()


def _png_ok(path, min_kb=8):
    from PIL import Image

    assert path.stat().st_size > min_kb * 1024, f"{path} is only {path.stat().st_size} bytes"
    with Image.open(path) as im:
        im.load()
        pixels = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    # not blank: many colours and real contrast
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3)[::7], axis=0)) > 30
    return pixels.shape


def _svg_ok(path, min_kb=4):
    assert path.stat().st_size > min_kb * 1024
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 20  # drawn elements, not an empty canvas


def _html_ok(path):
    text = path.read_text(encoding="utf-8")
    assert "Bokeh" in text and "<script" in text
    assert "cdn.bokeh.org" not in text  # inline resources: works offline


def test_word_lookup(sample_explanation):
    ex = sample_explanation
    assert ex.words[F._word_index(ex, "consider")].text == "consider"
    assert F._word_index(ex, "them") == len(ex.words) - 1  # punctuation ignored
    with pytest.raises(ValueError, match="no word"):
        F._word_index(ex, "elephant")
    with pytest.raises(IndexError):
        F._word_index(ex, 999)
    with pytest.raises(TypeError):
        F._word_index(ex, 1.5)


def test_word_map_and_peaks(sample_explanation):
    ex = sample_explanation
    r = F.word_map(ex, "Dashwood", "base-vn")  # two tokens summed
    assert r.shape == (ex.n_frames,) and np.isclose(r.sum(), 1, atol=1e-5)
    peaks = F.word_peaks(ex, "base-vn")
    assert [w for w, _ in peaks] == [w.text for w in ex.words]
    times = [t for _, t in peaks]
    assert all(0 <= t <= ex.duration_s for t in times)
    # base-vn points inside the sentence in order: peaks mostly increase with the word index
    assert np.mean(np.diff(times) > 0) > 0.7


def test_figures_build(sample_explanation):
    from bokeh.models import Plot

    ex = sample_explanation
    assert isinstance(F.spectrogram(ex, 10, method="base-vn"), Plot)
    assert isinstance(F.spectrogram(ex, word="consider", spans=[("consider", 2.8, 3.4)]), Plot)
    with pytest.raises(ValueError, match="exactly one"):
        F.spectrogram(ex)
    m = F.token_matrix(ex, "base-vn", tokens=range(5))
    assert m.height >= 220
    grid = F.comparison_grid(ex, ["John", "consider"], ["base", "base-vn"], spans={"John": (0.7, 1.0)})
    assert len(list(grid.select({"type": Plot}))) == 4
    with pytest.raises(ValueError, match="per must"):
        F.comparison_grid(ex, ["John"], ["base"], per="sentence")


def test_faithfulness_curves(sample_explanation):
    ex = sample_explanation
    data = F.faithfulness_curves(ex, ["consider"], ["base-vn"], levels=(0.2,))
    assert data["levels"] == [0.0, 0.2]
    c = data["curves"]["base-vn"]
    assert c["n"] == 1 and c["del"][0] == pytest.approx(1.0)
    assert 0 <= c["ins"][0] < 0.05  # nothing restored: the word is gone
    # base-vn points at the word: deleting its top 20% frames destroys the token, restoring them brings it back
    assert c["del"][1] < 0.2 and c["ins"][1] > c["ins"][0]
    with pytest.raises(ValueError, match="levels"):
        F.faithfulness_curves(ex, ["consider"], ["base-vn"], levels=(0.0,))


def test_curves_from_records():
    records = [{"dataset": "d", "method": m, "del_curve": [1, .5, .2, .1, .1, 0], "ins_curve": [0, .2, .5, .7, .9, 1]}
               for m in ("base", "base-vn") for _ in range(2)]
    data = F.curves_from_records(records)
    assert data["levels"] == [0.0, *F.DEFAULT_LEVELS]
    assert data["curves"]["base"]["n"] == 2
    assert F.curves_from_records(records[:1], levels=(.1, .2, .3, .4, .6))["levels"][-1] == .6
    with pytest.raises(ValueError, match="levels"):
        F.curves_from_records(records, levels=(0.5,))
    with pytest.raises(ValueError, match="no records"):
        F.curves_from_records([{"dataset": "d", "method": "base"}])


def test_export_all_formats(sample_explanation, driver, tmp_path):
    ex = sample_explanation
    fig = F.spectrogram(ex, word="consider", method="base-vn", width=600, height=260)
    out = F.export(fig, tmp_path / "sub" / "spec", driver=driver)
    assert set(out) == {"png", "svg", "html"}
    h, w, _ = _png_ok(out["png"])
    assert w >= 2 * 600 - 10  # scale_factor 2: print resolution
    _svg_ok(out["svg"])
    _html_ok(out["html"])
    assert fig.output_backend == "canvas"  # restored after the SVG pass


def test_export_layouts(sample_explanation, driver, tmp_path):
    ex = sample_explanation
    grid = F.comparison_grid(ex, ["John", "power"], ["base", "base-vn"], title="grid")
    out = F.export(grid, tmp_path / "grid", driver=driver, formats=("png", "svg"))
    _png_ok(out["png"])
    _svg_ok(out["svg"])
    curves = {"levels": [0, .1, .5], "curves": {"base": {"del": [1, .9, .5], "ins": [0, .3, 1]},
                                                "base-vn": {"del": [1, .1, 0], "ins": [0, .8, 1]}}}
    out = F.export(F.curves_figure(curves, title="curves"), tmp_path / "curves", driver=driver, formats=("png",))
    _png_ok(out["png"])
    with pytest.raises(ValueError, match="unknown format"):
        F.export(grid, tmp_path / "x", formats=("pdf",))


def test_png_export_without_selenium_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "selenium" else real(name, *a))
    with pytest.raises(RuntimeError, match=r'pip install "leafx-widgets\[export\]"'):
        F.webdriver()
