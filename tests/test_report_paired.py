"""The benchmark report's head-to-head (paired) section."""
import json

import numpy as np
import pytest

from leafx_widgets.bench import report as R


def _rec(dataset, clip, token, method, **metrics):
    return {"dataset": dataset, "clip": clip, "token_index": token, "method": method, **metrics}


def _records():
    """Two datasets, two clips each; the reference beats raa_last on pointing and INF in "a"."""
    recs = []
    for ds in ("a", "b"):
        for clip in ("c1", "c2"):
            for t in range(8):
                base = 0.1 * t + (0.5 if clip == "c2" else 0.0)
                shift = 0.2 if ds == "a" else 0.0
                recs.append(_rec(ds, clip, t, "leafx_sf", pointing=1.0, iou=0.5 + base, inf=1.0 + base - shift,
                                 spr=0.8, mass=0.6))
                recs.append(_rec(ds, clip, t, "raa_last", pointing=0.0 if ds == "a" else 1.0, iou=0.5 + base,
                                 inf=1.0 + base, spr=0.8, mass=0.6))
    return recs


def test_paired_direction_inf_vs_pointing():
    pair = R.paired(_records(), n_boot=200)
    a = pair["datasets"]["a"]["raa_last"]
    assert a["pointing"]["diff"] == pytest.approx(1.0) and a["pointing"]["verdict"] == "win"
    assert a["inf"]["diff"] == pytest.approx(-0.2) and a["inf"]["verdict"] == "win"   # lower INF is better
    assert a["iou"]["verdict"] == "tie" and a["iou"]["diff"] == pytest.approx(0.0)
    b = pair["datasets"]["b"]["raa_last"]
    assert b["pointing"]["verdict"] == "tie" and b["inf"]["verdict"] == "tie"
    assert a["inf"]["n"] == 16 and "daopc" not in a                                     # no D-AOPC in these records
    # the other way round the same gaps are losses
    rev = R.paired(_records(), "raa_last", n_boot=200)["datasets"]["a"]["leafx_sf"]
    assert rev["pointing"]["verdict"] == "loss" and rev["inf"]["verdict"] == "loss"


def test_paired_pairs_by_dataset_clip_token():
    recs = []
    # reference on tokens 0..19 of clip x, other on tokens 10..29 of clip x and tokens 0..19 of clip y:
    # only tokens 10..19 of clip x pair up; the reference is 1.0 better there, 5.0 worse elsewhere
    for t in range(20):
        recs.append(_rec("d", "x", t, "leafx_sf", daopc=0.2))
    for t in range(10, 30):
        recs.append(_rec("d", "x", t, "other", daopc=1.2 if t < 20 else -4.8))
    for t in range(20):
        recs.append(_rec("d", "y", t, "other", daopc=-4.8))
        recs.append(_rec("e", "x", t, "other", daopc=-4.8))   # same clip and token, other dataset
    recs.append(_rec("d", "x", 12, "other", ins_auc=0.5))       # a metric the reference lacks: no cell
    pair = R.paired(recs, n_boot=200)
    cell = pair["datasets"]["d"]["other"]["daopc"]
    assert cell["n"] == 10 and cell["diff"] == pytest.approx(-1.0) and cell["verdict"] == "win"
    assert "ins_auc" not in pair["datasets"]["d"]["other"]
    assert "e" not in pair["datasets"]                          # no reference records there
    assert R.paired(recs, "missing") is None


def test_paired_default_order_and_min_n():
    recs = [_rec("d", "x", t, m, iou=v) for t in range(5)
            for m, v in (("zeta", 0.1), ("leafx_sf", 0.9), ("raa_mean", 0.1), ("raa_last", 0.1))]
    pair = R.paired(recs, n_boot=100)
    assert list(pair["datasets"]["d"]) == ["raa_last", "raa_mean", "zeta"]
    cell = pair["datasets"]["d"]["zeta"]["iou"]
    assert cell["low"] > 0 and cell["n"] == 5 < R.PAIRED_MIN_N and cell["verdict"] == "tie"
    assert list(R.paired(recs, compare=["zeta"], n_boot=100)["datasets"]["d"]) == ["zeta"]


def test_paired_includes_stab_metrics_present():
    recs = [_rec("d", "x", t, m, stab=s, stab_noise_spearman=s) for t in range(12)
            for m, s in (("leafx_sf", 0.9), ("raa_last", 0.7))]
    pair = R.paired(recs, n_boot=100)
    keys = [k for k, _, _ in pair["metrics"]]
    assert "stab" in keys and "stab_noise_spearman" in keys and "stab_shift_cos" not in keys
    assert pair["datasets"]["d"]["raa_last"]["stab"]["verdict"] == "win"


def _result(records):
    clips = [{"dataset": ds, "clip": c, "wer": 0.1, "n_tokens": 8, "n_faith": 8, "seconds": 1.0, "hyp": "x"}
             for ds in ("a", "b") for c in ("c1", "c2")]
    settings = {"model": "tiny.en", "faith_per_clip": 0, "levels": [0.2, 0.5], "wall_s": 1.0}
    return {"records": records, "clips": clips, "settings": settings}


def test_write_reports_writes_paired_section(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "html_report", _fake_html)      # bokeh is slow to import; the HTML table is checked below
    R.write_reports(_result(_records()), tmp_path)
    md = (tmp_path / "report.md").read_text()
    title = "## Head-to-head: leafx_sf vs each method (paired, 95% bootstrap over tokens)"
    assert title in md
    section = md.split(title)[1].split("## Per-clip")[0]
    assert "| method | metric | a | b |" in section
    assert "| raa_last | PG ↑ | +1.000 [+1.000, +1.000] win (n=16) | +0.000 [+0.000, +0.000] tie (n=16) |" in section
    assert "| raa_last | INF ↓ | -0.200 [-0.200, -0.200] win (n=16) |" in section
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["paired"]["reference"] == "leafx_sf"
    assert summary["paired"]["datasets"]["a"]["raa_last"]["pointing"]["verdict"] == "win"
    html = (tmp_path / "report.html").read_text()
    assert "Head-to-head" in html and "+1.000 [+1.000, +1.000] win (n=16)" in html

    R.write_reports(_result(_records()), tmp_path, reference="nobody")
    assert "Head-to-head" not in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["paired"] is None


def _fake_html(result, summary, curve_data, path, pair=None):
    path.write_text(R._paired_html(pair) if pair else "")


def test_paired_html_table_marks_verdicts():
    out = R._paired_html(R.paired(_records(), n_boot=100))
    assert out.count("<tr>") == 1 + 5                 # header + raa_last x (inf, pointing, iou, mass, spr)
    assert out.count(R._VERDICT_STYLE["win"]) == 2 and "n &lt; 10" in out   # two wins in "a"; text escaped
    assert np.isfinite(R.paired(_records(), n_boot=100)["datasets"]["b"]["raa_last"]["iou"]["high"])
