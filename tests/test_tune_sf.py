"""The sweep that chose LEAF-X-SF's defaults: its selection rule and one real run."""
import numpy as np
import pytest

from leafx_widgets.bench import tune_sf
from leafx_widgets.bench.manifests import SAMPLE_RATE, Clip, synthesise_sentence, write_manifest


def _cell(pg, iou, mass, inf):
    return {"pointing": [pg], "iou": [iou], "mass": [mass], "inf": [inf]}


def test_rule_takes_lowest_inf_among_settings_meeting_every_target():
    result = {
        "a": {"raa_last": _cell(0.9, 0.5, 0.5, 1.0), "sharp": _cell(0.97, 0.65, 0.7, 1.2),
              "smooth": _cell(0.96, 0.61, 0.61, 0.9), "blurry": _cell(0.99, 0.7, 0.55, 0.5)},
        "b": {"raa_last": _cell(0.9, 0.5, 0.5, 1.0), "sharp": _cell(0.96, 0.62, 0.7, 1.1),
              "smooth": _cell(0.95, 0.60, 0.60, 1.0), "blurry": _cell(0.99, 0.7, 0.7, 0.5)},
    }
    # "blurry" has the lowest INF but misses mass on a; "smooth" meets every target on both sets
    assert tune_sf.choose(result) == "smooth"
    result["b"]["smooth"]["iou"] = [0.59]
    assert tune_sf.choose(result) == "sharp"
    result["a"]["sharp"]["pointing"] = [0.5]
    assert tune_sf.choose(result) is None
    assert "raa_last" not in {tune_sf.choose(result)}


def test_grid_covers_every_combination():
    grid = tune_sf.settings_grid({"desink": (0.5, 1.0), "tau": (1.0,), "gamma": (1.0, 1.5, 2.0)})
    assert len(grid) == 6 and {"desink": 1.0, "tau": 1.0, "gamma": 2.0} in grid


def test_sweep_on_real_speech(tmp_path, model):
    import soundfile as sf

    audio, words = synthesise_sentence("seven green bottles", "en-us", 150, seed=0)
    sf.write(tmp_path / "clip.wav", audio, SAMPLE_RATE)
    manifest = write_manifest(tmp_path / "dev.json", [Clip("c", tmp_path / "clip.wav", "seven green bottles", words)])
    grid = {"desink": (0.0, 1.0), "tau": (1.0,), "gamma": (1.0,)}
    result = tune_sf.sweep([manifest], model, grid=grid, n_inf=6, log=lambda m: None)
    cells = result["dev"]
    assert set(cells) == {"raa_last", "desink=0,tau=1,gamma=1", "desink=1,tau=1,gamma=1"}
    n = len(cells["raa_last"]["inf"])
    assert n >= 1
    for cell in cells.values():
        assert len(cell["inf"]) == len(cell["mass"]) == n and np.all(np.isfinite(cell["inf"])) and min(cell["inf"]) >= 0
        assert set(cell["pointing"]) <= {0.0, 1.0} and all(0 <= m <= 1 for m in cell["mass"])
    # de-sinking changes the maps, hence the scores
    assert cells["desink=0,tau=1,gamma=1"]["inf"] != cells["desink=1,tau=1,gamma=1"]["inf"]
    text = tune_sf.table(result)
    assert "desink=1,tau=1,gamma=1" in text and "[" in text
