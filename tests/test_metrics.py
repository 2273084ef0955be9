"""Bench metrics against hand-computed tiny cases."""
import numpy as np
import pytest
import torch

from leafx_widgets.bench import metrics as M

F = 0.02  # seconds per encoder frame


def test_as_map_clips_and_normalises():
    np.testing.assert_allclose(M.as_map([1.0, -2.0, 3.0]), [0.25, 0.0, 0.75])
    np.testing.assert_allclose(M.as_map([-1.0, 0.0]), [0.5, 0.5])


def test_span_frames():
    assert M.span_frames((0.10, 0.15), F, 100) == (5, 8)
    assert M.span_frames((0.10, 0.10), F, 100) == (5, 6)    # at least one frame
    assert M.span_frames((1.9, 2.5), F, 100) == (95, 100)   # clipped to the map
    with pytest.raises(ValueError):
        M.span_frames((0.2, 0.1), F, 100)


def test_pointing_game_with_tolerance():
    r = np.zeros(50)
    r[10] = 1.0                      # frame 10 = [0.20, 0.22) s
    assert M.pointing_game(r, (0.20, 0.30), F) == 1.0
    assert M.pointing_game(r, (0.24, 0.30), F) == 0.0 + 1.0  # 0.22 > 0.24 - 0.02 -> touches
    assert M.pointing_game(r, (0.25, 0.30), F) == 0.0
    assert M.pointing_game(r, (0.05, 0.19), F) == 1.0         # 0.20 < 0.19 + 0.02
    assert M.pointing_game(r, (0.05, 0.17), F) == 0.0


def test_topk_iou_and_mass():
    r = np.array([0.0, 0.1, 0.4, 0.3, 0.2, 0.0])
    span = (0.04, 0.08)              # frames 2, 3 -> k = 2; top-2 = {2, 3}
    assert M.topk_iou(r, span, F) == 1.0
    assert M.mass_in_span(r, span, F) == pytest.approx(0.7)
    span = (0.06, 0.10)              # frames 3, 4; top-2 {2, 3}: inter 1, union 3
    assert M.topk_iou(r, span, F) == pytest.approx(1 / 3)
    assert M.mass_in_span(r, span, F) == pytest.approx(0.5)


def test_sparsity_top10pct():
    r = np.array([5.0] + [1.0] * 19)  # 20 frames -> top 2
    assert M.sparsity(r) == pytest.approx(6.0 / 24.0)
    assert M.sparsity(np.ones(10)) == pytest.approx(0.1)


def test_stability_measures():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert M.cosine(a, 2 * a) == pytest.approx(1.0)
    assert M.spearman(a, a ** 2) == pytest.approx(1.0)
    assert M.spearman(a, -a) == pytest.approx(-1.0)
    np.testing.assert_allclose(M.rankdata([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = np.random.default_rng(0).random((2, 30))
    assert M.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y)[0])


def test_shift_back():
    r = np.array([0, 0, 1, 2, 3.0])
    np.testing.assert_allclose(M.shift_back(r, 2, 4), [1, 2, 3, 0])


def test_topk_frames_and_aopc():
    r = np.array([0.1, 0.5, 0.2, 0.2])
    assert list(M.topk_frames(r, 0.5)) == [1, 2]
    assert M.topk_frames(r, 0.0).size == 0
    assert M.aopc(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5)


def test_bootstrap_ci_covers_mean():
    v = np.random.default_rng(1).normal(3.0, 1.0, 200)
    ci = M.bootstrap_ci(v)
    assert ci.low < v.mean() < ci.high
    assert ci.high - ci.low < 0.5
    assert np.isnan(M.bootstrap_ci([np.nan]).low)


def test_infidelity_optimal_hand_case():
    # two frames, attribution (1, 0); masks e1, e2, both; drops 2, 0, 2 -> perfect after scaling
    masks = np.array([[1, 0], [0, 1], [1, 1]])
    assert M.infidelity_optimal(np.array([1.0, 0.0]), masks, np.array([2.0, 0.0, 2.0])) == pytest.approx(0.0)
    # attribution (0.5, 0.5): I.a = .5,.5,1; beta = (1+0+2)/(.25+.25+1)=2 -> errors (1-2, 1-0, 2-2)
    assert M.infidelity_optimal(np.array([0.5, 0.5]), masks, np.array([2.0, 0.0, 2.0])) == pytest.approx(2 / 3)


def test_infidelity_matches_captum():
    from captum.metrics import infidelity

    n = 6
    w = torch.tensor([[0.5, -1.0, 2.0, 0.0, 1.0, 0.3]])
    f = lambda z: (z * w).sum(1) + 0.3 * (z[:, 0] * z[:, 2])  # noqa: E731  (not additive)
    rng = np.random.default_rng(0)
    masks = (rng.random((40, n)) < 0.3).astype(np.float32)
    def perturb(inputs):  # captum passes all samples at once, (n_perturb_samples, n)
        m = torch.from_numpy(masks[: len(inputs)])
        return m, inputs - m

    attr = torch.tensor([[0.1, 0.0, 0.5, 0.1, 0.2, 0.1]])
    ones = torch.ones(1, n)
    got = infidelity(f, perturb, ones, attr, n_perturb_samples=40, normalize=True).item()
    drops = (f(ones) - f(ones - torch.from_numpy(masks))).numpy()
    assert got == pytest.approx(M.infidelity_optimal(attr[0].numpy(), masks, drops), rel=1e-4)


def test_minmax():
    out = M.minmax({"a": 1.0, "b": 3.0, "c": float("nan"), "d": 2.0})
    assert out["a"] == 0.0 and out["b"] == 1.0 and out["d"] == 0.5 and np.isnan(out["c"])


def test_paired_difference_identical_is_zero_tie():
    a = np.array([0.3, 0.1, 0.7, 0.2, 0.9])
    d = M.paired_difference(a, a.copy(), n_boot=200, seed=0)
    assert (d.mean, d.low, d.high, d.n) == (0.0, 0.0, 0.0, 5)
    assert M.paired_verdict(d, True) == "tie" and M.paired_verdict(d, False) == "tie"


def test_paired_difference_constant_shift_and_direction():
    rng = np.random.default_rng(1)
    b = rng.random(40)
    d = M.paired_difference(b + 0.25, b, n_boot=200, seed=0)   # reference higher by 0.25 on every token
    assert d.mean == pytest.approx(0.25) and d.low == pytest.approx(0.25) and d.high == pytest.approx(0.25)
    assert M.paired_verdict(d, higher_is_better=True) == "win"     # e.g. pointing: higher is better
    assert M.paired_verdict(d, higher_is_better=False) == "loss"   # e.g. inf: lower is better
    d = M.paired_difference(b - 0.25, b, n_boot=200, seed=0)
    assert M.paired_verdict(d, higher_is_better=True) == "loss"
    assert M.paired_verdict(d, higher_is_better=False) == "win"
    assert M.paired_verdict(d, False, min_n=41) == "tie"          # too few pairs: no claim


def test_paired_difference_pairs_not_pools():
    # large spread across tokens, tiny consistent per-token gain: the unpaired intervals overlap,
    # the paired one excludes 0
    b = np.linspace(0.0, 10.0, 30)
    a = b + 0.01 + 0.001 * np.sin(np.arange(30))
    ci_a, ci_b = M.bootstrap_ci(a, n_boot=300), M.bootstrap_ci(b, n_boot=300)
    assert ci_a.low < ci_b.high
    d = M.paired_difference(a, b, n_boot=300, seed=0)
    assert 0.0 < d.low <= d.mean <= d.high < 0.02


def test_paired_difference_drops_nonfinite_pairs_and_is_seeded():
    a = np.array([1.0, np.nan, 3.0, 4.0, 0.5, 2.0])
    b = np.array([0.0, 1.0, np.inf, 1.0, 1.0, 2.5])
    d = M.paired_difference(a, b, n_boot=500, seed=3)
    assert d.n == 4 and d.mean == pytest.approx((1.0 + 3.0 - 0.5 - 0.5) / 4)
    assert d.low < d.mean < d.high
    assert M.paired_difference(a, b, n_boot=500, seed=3) == d
    empty = M.paired_difference([np.nan], [1.0])
    assert empty.n == 0 and np.isnan(empty.mean) and M.paired_verdict(empty, True) == "tie"
    with pytest.raises(ValueError):
        M.paired_difference([1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- the metric registry

def test_deletion_masks_and_curves_are_the_bench_convention():
    r = np.array([0.1, 0.5, 0.3, 0.1])
    dm = M.deletion_masks(r, (0.25, 0.5), n=5)
    assert dm.tolist() == [[False, True, False, False, False], [False, True, True, False, False]]
    dele, ins = M.ratio_curves(0.0, np.log([0.5, 0.25]), np.log(0.1), np.log([0.4, 0.8]))
    np.testing.assert_allclose(dele, [1.0, 0.5, 0.25])
    np.testing.assert_allclose(ins, [0.1, 0.4, 0.8])


def test_registry_refuses_bad_metrics():
    with pytest.raises(ValueError, match="direction"):
        M.Metric("x", lambda i: {}, "up")
    with pytest.raises(ValueError, match="unknown"):
        M.Metric("x", lambda i: {}, "higher", frozenset({"gpu"}))
    with pytest.raises(ValueError, match="already registered"):
        M.register_metric(M.Metric("iou", lambda i: {}, "higher"))
    with pytest.raises(ValueError, match="no bench metric"):
        M.unregister_metric("nonexistent")
    assert M.column("daopc").direction == "lower" and M.column("ins_auc").higher_is_better


@pytest.fixture
def toy_metric():
    """A registered toy metric (lower is better): the map's mass on the first frame."""
    metric = M.register_metric(M.Metric("toy_first", lambda i: {"toy_first": float(i.r[0])}, "lower",
                                        frozenset({"spans"}), "Toy first"))
    yield metric
    M.unregister_metric("toy_first")


def test_a_registered_metric_reaches_records_and_report(toy_metric, model, tmp_path):
    import json

    import soundfile as sf

    from leafx_widgets.bench import report, runner
    from leafx_widgets.bench.manifests import SAMPLE_RATE, Clip, synthesise_sentence, write_manifest

    audio, words = synthesise_sentence("seven green bottles", "en-us", 150, seed=0)
    sf.write(tmp_path / "clip.wav", audio, SAMPLE_RATE)
    manifest = write_manifest(tmp_path / "toy.json", [Clip("toy", tmp_path / "clip.wav", "seven green bottles", words)])
    settings = runner.Settings(faith_per_clip=1, max_tokens_per_clip=2, n_inf=2, levels=(0.5,), stab=False)
    res = runner.run_bench(manifest, model, ["raa_last", "leafx_sf"], tmp_path / "out", settings=settings,
                           quiet=True)
    assert res["records"] and all(0 <= rec["toy_first"] <= 1 for rec in res["records"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["summary"]["toy"]["raa_last"]["toy_first"]["n"] == len(res["records"]) // 2
    assert ["toy_first", "Toy first ↓", False] in summary["paired"]["metrics"]  # direction from the registry
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Toy first" in md and "lower is better: D-AOPC, INF, Toy first" in md
    M.unregister_metric("toy_first")
    assert "toy_first" not in {k for k, _, _ in report.table_metrics()}
    M.register_metric(toy_metric)  # the fixture unregisters it
