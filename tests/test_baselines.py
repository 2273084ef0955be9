"""Baselines: pure steps against hand cases / references, and every registered method on a real window."""
import numpy as np
import pytest
import torch

from leafx_widgets.methods._common import crop_normalise, frame_groups
from leafx_widgets.methods.timing import dtw, median_filter
from leafx_widgets.methods.leafx_sf import sink_free_maps

FAST = ["leafx_sf", "leafx_sf_full", "raa_last", "raa_mean", "rollout", "saco", "ta", "whisper_dtw"]
SLOW = {"ig": {"n_steps": 2}, "occlusion": {"window_frames": 50, "stride_frames": 50},
        "lime": {"n_samples": 4}, "kernelshap": {"n_samples": 4}, "spes": {"n_samples": 4}}


def test_crop_normalise():
    out = crop_normalise(np.array([[1.0, -1.0, 3.0, 9.0], [-1.0, 0.0, 0.0, 5.0]]), 3)
    np.testing.assert_allclose(out, [[0.25, 0.0, 0.75], [1 / 3, 1 / 3, 1 / 3]])


def test_frame_groups_padding_is_one_group():
    g = frame_groups(n_valid=5, n_frames=8, segment=2, per_frame=2)
    assert g.shape == (1, 1, 16)
    assert g[0, 0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3]


def test_median_filter_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).random((3, 40))
    np.testing.assert_allclose(median_filter(x, 7), ndimage.median_filter(x, size=(1, 7), mode="mirror"))
    assert median_filter(x, 1) is x


def test_dtw_hand_case():
    # cheap diagonal band: token 0 -> frames 0-1, token 1 -> frames 2-3
    cost = np.array([[0, 0, 5, 5], [5, 5, 0, 0.0]])
    text, time = dtw(cost)
    assert text.tolist() == [0, 0, 1, 1] and time.tolist() == [0, 1, 2, 3]


def test_sink_free_maps_hand_case():
    # one layer, one head, two text queries over 3 real frames + 1 padding frame.
    # frame 0 is a sink (both queries attend it), frames 1 / 2 are token-specific.
    a = torch.tensor([[[[0.5, 0.4, 0.0, 0.1], [0.5, 0.0, 0.4, 0.1]]]])  # (L'=1, H=1, P=2, S=4)
    r = sink_free_maps(a, [0, 1], 3, delta=1e-6, desink=1.0, gamma=1.0)
    # sink = (0.5, 0.2, 0.2); ratios row 0 = (1, 2, 0) -> (1/3, 2/3, 0)
    np.testing.assert_allclose(r[0].numpy(), [1 / 3, 2 / 3, 0.0], atol=1e-5)
    np.testing.assert_allclose(r[1].numpy(), [1 / 3, 0.0, 2 / 3], atol=1e-5)
    r2 = sink_free_maps(a, [0, 1], 3, delta=1e-6, desink=1.0, gamma=2.0)
    np.testing.assert_allclose(r2[0].numpy(), [0.2, 0.8, 0.0], atol=1e-5)
    # partial de-sink: row 0 = (0.5 / 0.5^0.5, 0.4 / 0.2^0.5, 0) = (0.7071, 0.8944, 0), normalised
    r3 = sink_free_maps(a, [0, 1], 3, delta=1e-6, desink=0.5, gamma=1.0)
    np.testing.assert_allclose(r3[0].numpy(), [0.7071 / 1.6016, 0.8944 / 1.6016, 0.0], atol=1e-4)
    # no de-sink: the attention itself over the real frames, renormalised
    r4 = sink_free_maps(a, [0, 1], 3, delta=1e-6, desink=0.0, gamma=1.0)
    np.testing.assert_allclose(r4[0].numpy(), [5 / 9, 4 / 9, 0.0], atol=1e-5)
    with pytest.raises(ValueError, match="tau"):
        sink_free_maps(a, [0, 1], 3, tau=0.0)
    with pytest.raises(ValueError, match="desink"):
        sink_free_maps(a, [0, 1], 3, desink=-0.5)


def test_sink_free_head_weights_read_each_row_as_a_distribution():
    """A decoder-only model's attention rows over the audio sum to its audio share: a head that looks
    at the audio less must not gain weight (lower raw entropy) just for that."""
    a = torch.tensor([[[[0.5, 0.5, 0.0, 0.0]], [[0.2, 0.0, 0.8, 0.0]]]])  # (L'=1, H=2, P=1, S=4)
    scaled = a.clone()
    scaled[0, 1] *= 0.25  # head 1 gives only a quarter of its attention to the audio
    full = sink_free_maps(a, [0], 3, desink=0.0)
    # the head weights are those of the unscaled rows: entropy of head 0 (ln 2) vs head 1 (H(0.2, 0.8))
    from leafx_widgets import leafx as eqs

    weights = eqs.entropy_weights(eqs.head_entropy(a[0, :, 0]).unsqueeze(0), 0.5)[0]
    abar = weights[0] * a[0, 0, 0, :3] + weights[1] * 0.25 * a[0, 1, 0, :3]
    np.testing.assert_allclose(sink_free_maps(scaled, [0], 3, desink=0.0, tau=0.5)[0].numpy(),
                               (abar / abar.sum()).numpy(), atol=1e-5)
    assert not np.allclose(full.numpy(), sink_free_maps(scaled, [0], 3, desink=0.0).numpy())


def test_sink_free_causal_layer_weights_hand_case():
    # two layers, one head, two text queries, 3 real frames; no de-sink so each layer's map is its attention
    a = torch.tensor([[[[0.6, 0.4, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]]],
                      [[[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]]])  # (L'=2, H=1, P=2, S=4)
    mean = sink_free_maps(a, [0, 1], 3, desink=0.0)
    np.testing.assert_allclose(mean[0].numpy(), [0.3, 0.2, 0.5], atol=1e-5)  # mean of the two layers
    # Eq. 10 with per-row weights: row 0 all on layer 0, row 1 0.25 / 0.75
    w = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    r = sink_free_maps(a, [0, 1], 3, desink=0.0, layer_weights=w)
    np.testing.assert_allclose(r[0].numpy(), [0.6, 0.4, 0.0], atol=1e-5)
    np.testing.assert_allclose(r[1].numpy(), [0.75, 0.125, 0.125], atol=1e-5)
    uniform = sink_free_maps(a, [0, 1], 3, desink=0.0, layer_weights=torch.full((2, 2), 0.5))
    np.testing.assert_allclose(uniform.numpy(), mean.numpy(), atol=1e-6)


def test_sink_free_causal_weights_follow_the_bypass(sample_explanation):
    """leafx_sf_causal: each token's layer weights are Eq. 9 of its own bypass deltas (Eq. 8)."""
    from leafx_widgets import leafx as eqs
    from leafx_widgets.methods.leafx import causal_deltas
    from leafx_widgets.methods.leafx_sf import _causal_weights

    ex = sample_explanation
    window = ex.windows[0]
    rows = window.adapter.query_rows(window.prompt, range(len(window.ids)))
    layers = list(range(window.adapter.n_layers))
    weights = _causal_weights(window, layers, rows, len(window.prompt) + len(window.ids))
    deltas = causal_deltas(window.adapter, window.encoded, window.prompt, window.ids, layers)
    np.testing.assert_allclose(weights[rows].numpy(), eqs.causal_layer_weights(deltas)[0].numpy(), atol=1e-6)
    assert torch.allclose(weights[: rows[0]], torch.full((rows[0], len(layers)), 1 / len(layers)))
    maps = ex.maps("leafx_sf_causal")
    assert np.allclose(maps.sum(1), 1, atol=1e-4) and not np.allclose(maps, ex.maps("leafx_sf_grad"))


def test_all_baselines_registered():
    from leafx_widgets.methods import get_method

    for name in FAST + list(SLOW):
        m = get_method(name)
        assert m.name == name and m.label


class _NoGradientsNoAlignmentHeads:
    """A model that runs teacher-forced passes but offers no per-token gradients nor alignment heads."""

    token_gradients = None
    alignment_heads = None

    def __init__(self, inner):
        self._inner = inner
        self.supports = inner.supports - {"token_gradients", "alignment_heads"}

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_methods_offered_are_those_the_model_supports(sample_explanation):
    from dataclasses import replace

    from leafx_widgets.explanation import Explanation
    from leafx_widgets.methods import METHODS, available_methods

    ex = sample_explanation
    assert available_methods(ex.model) == available_methods()  # Whisper runs every method
    limited = _NoGradientsNoAlignmentHeads(ex.model)
    offered = available_methods(limited)
    for name in ("grad", "causal", "grad-vn", "leafx_sf_grad", "saco", "ta"):
        assert name not in offered and not METHODS[name].supports(limited)
    # whisper_dtw falls back to the upper half's heads (openai-whisper's rule) without alignment heads
    for name in ("base", "base-vn", "leafx_no_grad", "leafx_sf", "raa_last", "rollout", "occlusion", "whisper_dtw"):
        assert name in offered or not METHODS[name].available

    from leafx_widgets.windows import WindowStore

    store = WindowStore(ex.audio)  # the limited model's own features, encoder outputs and method caches
    windows = [replace(w, adapter=limited, store=store) for w in ex.windows]
    other = Explanation(model_name="no-gradients", audio=None, frame_s=ex.frame_s, n_frames=ex.n_frames,
                        text=ex.text, tokens=ex.tokens, words=ex.words, windows=windows)
    np.testing.assert_array_equal(other.map(0, "leafx_sf"), ex.map(0, "leafx_sf"))
    with pytest.raises(ValueError, match=r"method 'grad' needs token_gradients from the model, which 'no-gradients'"):
        other.map(0, "grad")

    from leafx_widgets.bench import runner

    runner.check_supported([runner.parse_method("leafx_sf"), runner.parse_method("raa_last")], limited)
    with pytest.raises(ValueError, match=r"method 'saco' needs token_gradients"):
        runner.check_supported([runner.parse_method("leafx_sf"), runner.parse_method("saco")], limited)


@pytest.fixture(scope="module")
def window():
    from leafx_widgets import explain, load_model, sample_path

    ex = explain(load_model("tiny.en"), sample_path())
    return ex.windows[0]


@pytest.mark.parametrize("name", FAST + list(SLOW))
def test_baseline_maps_are_distributions(window, name):
    from leafx_widgets.methods import get_method

    m = get_method(name)
    positions = [0, min(2, len(window.ids) - 1)]
    maps = m.compute(window, positions, **m.resolve(SLOW.get(name, {})))
    assert maps.shape == (2, window.n_valid)
    assert np.all(maps >= 0)
    np.testing.assert_allclose(maps.sum(1), 1.0, rtol=1e-4)


def test_rise_estimate_hand_case():
    from leafx_widgets.methods.perturbation import _rise

    probs = np.array([[0.8], [0.6], [0.2], [0.0]])  # one target, four samples
    kept = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)  # two features
    # feature 0 kept in samples 0, 1: mean 0.7; feature 1 in 1, 2: 0.4; overall mean 0.4
    np.testing.assert_allclose(_rise(probs, kept), [[0.3, 0.0]], atol=1e-12)


def test_dropping_a_prefix_token_changes_only_later_predictions(window):
    adapter, ids = window.adapter, window.ids
    feats = window.features
    with torch.no_grad():
        clean = adapter.score(feats, window.prompt, ids)
        all_kept = adapter.score(feats, window.prompt, ids, keep_tokens=torch.ones(1, len(ids), dtype=torch.bool))
        keep = torch.ones(1, len(ids), dtype=torch.bool)
        keep[0, 2] = False  # drop the third token's input
        dropped = adapter.score(feats, window.prompt, ids, keep_tokens=keep)
    assert torch.allclose(clean, all_kept, atol=1e-5)
    assert torch.allclose(dropped[0, :3], clean[0, :3], atol=1e-5)  # y_0..y_2 do not see input 2
    assert (dropped[0, 3:] - clean[0, 3:]).abs().max() > 1e-3  # y_3 onwards do


def test_spes_explains_the_token_prefix_too(window):
    from leafx_widgets.methods.perturbation import spes, spes_scores

    positions = [0, 3]
    frames, prefix = spes_scores(window, positions, n_samples=8)
    assert frames.shape == (2, window.n_valid) and np.all(frames >= 0)
    assert prefix.shape == (2, 4)
    assert np.isnan(prefix[0]).all()  # the first token has no text prefix
    assert np.isfinite(prefix[1, :3]).all() and np.isnan(prefix[1, 3:]).all()
    assert np.abs(prefix[1, :3]).max() > 0  # dropping earlier tokens moves p(y_3)
    np.testing.assert_allclose(spes(window, positions, n_samples=8), crop_normalise(frames, window.n_valid))


@pytest.mark.parametrize("old, names, new", [
    ("leafx_widgets.baselines", ("raa_last", "saco", "whisper_dtw", "leafx_sf", "spes_scores", "integrated_gradients"),
     "leafx_widgets.methods"),
    ("leafx_widgets.attribution", ("LeafxConfig", "leafx_window", "causal_deltas"), "leafx_widgets.methods.leafx"),
])
def test_old_import_paths_still_work_and_say_where_to_go(monkeypatch, old, names, new):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated: import from {new}"):
        module = importlib.import_module(old)
    import leafx_widgets.methods as methods

    everything = {n: getattr(m, n) for m in (methods.leafx, methods.leafx_sf, methods.attention, methods.timing,
                                           methods.gradient, methods.perturbation) for n in dir(m)}
    assert all(getattr(module, n) is everything[n] for n in names)
