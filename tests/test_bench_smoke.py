"""Smoke run of LEAF-XBench: every metric on every registered method, on a few tokens."""
import json
import math
import shutil

import pytest

from leafx_widgets.bench import runner
from leafx_widgets.bench.manifests import SAMPLE_RATE, Clip, synthesise_sentence, write_manifest


def test_espeak_is_installed():
    assert shutil.which("espeak-ng"), "needs Debian espeak-ng (see .ci/run)"

CHEAP = {"lime": {"n_samples": 4}, "kernelshap": {"n_samples": 4}, "spes": {"n_samples": 4},
         "ig": {"n_steps": 2}, "occlusion": {"window_frames": 40, "stride_frames": 40}}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    import soundfile as sf

    root = tmp_path_factory.mktemp("bench")
    audio, words = synthesise_sentence("seven green bottles", "en-us", 150, seed=0)
    sf.write(root / "clip.wav", audio, SAMPLE_RATE)
    return write_manifest(root / "smoke.json", [Clip("smoke", root / "clip.wav", "seven green bottles", words)])


@pytest.fixture(scope="module")
def adapter():
    from leafx_widgets import load_model

    return load_model("tiny.en")


@pytest.fixture(scope="module")
def result(manifest, adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    settings = runner.Settings(faith_per_clip=1, max_tokens_per_clip=1, n_inf=4, levels=(0.5,),
                               faith_methods=None, stab_expensive_clips=0, params=CHEAP)
    methods = [m for m in runner.DEFAULT_METHODS if "@" not in m] + ["causal@tau=0.5"]
    res = runner.run_bench(manifest, adapter, methods, out, settings=settings)
    return res, out, methods


def test_every_metric_on_every_method(result):
    res, out, methods = result
    by_method = {r["method"]: r for r in res["records"]}
    assert set(by_method) == set(methods)
    for name, rec in by_method.items():
        for key in ("pointing", "iou", "mass", "spr", "daopc", "ins_auc", "inf", "mean_logp_drop"):
            assert math.isfinite(rec[key]), (name, key)
        assert 0 <= rec["iou"] <= 1 and 0 <= rec["mass"] <= 1 and 0 < rec["spr"] <= 1
        assert len(rec["del_curve"]) == 2 and rec["del_curve"][0] == 1.0
        assert rec["runtime_s"] >= 0
        # STAB when the perturbed clip decodes the token identically
        if "stab_noise_cos" in rec:
            assert -1 <= rec["stab_noise_spearman"] <= 1


def test_reports_written(result):
    res, out, methods = result
    for name in ("records.csv", "records.json", "summary.json", "report.md", "report.html"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["normalised"]["smoke"]) == set(methods)
    assert "D-AOPC" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "Bokeh" in html and "cdn.bokeh.org" not in html  # bokeh inlined: the report opens offline


def test_resume_uses_cache(result, manifest, adapter):
    res, out, methods = result
    settings = runner.Settings(faith_per_clip=1, max_tokens_per_clip=1, n_inf=4, levels=(0.5,),
                               faith_methods=None, stab_expensive_clips=0, params=CHEAP)
    logs = []
    again = runner.run_bench(manifest, adapter, methods, out, settings=settings, log=logs.append,
                             report=False)
    assert any("cached" in line for line in logs)
    assert len(again["records"]) == len(res["records"])


def test_cli_parsing():
    args = runner.build_parser().parse_args(["--manifest", "m.json", "--param", "lime.n_samples=8",
                                             "--methods", "base", "causal@tau=0.5"])
    s = runner.settings_from_args(args)
    assert s.params == {"lime": {"n_samples": 8}}
    spec = runner.parse_method("causal@tau=0.5,depth=one")
    assert spec.params["tau"] == 0.5 and spec.params["depth"] == "one"
    with pytest.raises(ValueError):
        runner.parse_method("base@nonsense=1")


def test_stab_shift_is_counted_in_the_models_frames():
    """The 40 ms shift is 2 frames of Whisper's 20 ms and 1 frame of a 40 ms model, not a fixed 0.02 s."""
    import numpy as np

    audio = np.ones(1600, np.float32)
    settings = runner.Settings()
    for frame_s, frames in [(0.02, 2), (0.04, 1)]:
        pert, shift = runner.perturbed_versions(audio, 16000, frame_s, settings, seed=0)["shift"]
        assert shift == frames and len(pert) == 1600 + 640
