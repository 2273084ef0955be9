"""explain() on real speech: maps are distributions over the right frames, lazily computed, serialisable."""
import json
import math

import numpy as np
import pytest
import torch

import leafx_widgets as lw
from leafx_widgets import leafx
from leafx_widgets.methods.leafx import LeafxConfig, leafx_window

VARIANTS = ("base", "grad", "causal", "base-vn", "grad-vn", "causal-vn")


def test_tokens_words_and_frames(sample_explanation):
    ex = sample_explanation
    assert ex.text.startswith("And Mr. John Dashwood")
    assert ex.n_frames == math.ceil(ex.duration_s / 0.02) == 355
    assert [w.text for w in ex.words][:4] == ["And", "Mr.", "John", "Dashwood"]
    dash = ex.words[3]
    assert "".join(ex.tokens[t].text for t in dash.tokens).strip() == "Dashwood" and len(dash.tokens) == 2
    assert all(t.start_frame == 0 and t.n_frames == ex.n_frames and t.logprob <= 0 for t in ex.tokens)
    assert all(ex.tokens[t].word == w.index for w in ex.words for t in w.tokens)


@pytest.mark.parametrize("variant", VARIANTS)
def test_maps_are_distributions_over_real_frames(sample_explanation, variant):
    ex = sample_explanation
    maps = np.stack([ex.map(t.index, variant) for t in ex.tokens])
    assert maps.shape == (len(ex.tokens), ex.n_frames) and maps.dtype == np.float32
    assert (maps >= 0).all() and np.allclose(maps.sum(1), 1.0, atol=1e-4)
    assert np.allclose(ex.map_global(5, variant), maps[5])


def test_maps_are_lazy_and_cached(model):
    ex = lw.explain(model, lw.sample_path(), precompute=())
    assert not ex._cache and ex.words[0].peak_s is not None  # words' peaks are computed on first access
    assert set(k[0] for k in ex._cache) == {lw.DEFAULT_METHOD}
    ex._cache.clear()
    first = ex.map(2, "base")
    assert np.shares_memory(ex.map(2, "base"), first)  # cached, not recomputed
    assert not first.flags.writeable
    assert len(ex._cache) == 1  # one LEAF-X call filled the whole window
    ex.map(2, "base", tau=0.5)
    assert len(ex._cache) == 2  # other parameters, other entry


def test_default_method_is_computed_with_each_window(model):
    """explain() computes DEFAULT_METHOD's maps for each window while its encoder output is at hand,
    so the words' peaks are there at once and no window is encoded twice."""
    ex = lw.explain(model, lw.sample_path())
    assert {k[0] for k in ex._cache} == {lw.DEFAULT_METHOD}
    assert all(w.peak_s is not None for w in ex._words)
    assert ex.windows[0].store.recomputed == 0


def test_one_default_method_for_maps_and_figures(sample_explanation):
    import inspect

    from leafx_widgets import figures

    ex = sample_explanation
    assert lw.DEFAULT_METHOD == "leafx_sf"
    assert np.shares_memory(ex.map(3), ex.map(3, lw.DEFAULT_METHOD))  # the same cached map
    np.testing.assert_array_equal(ex.maps(), ex.maps(lw.DEFAULT_METHOD))
    defaults = {f"{owner.__name__}.{name}": inspect.signature(fn).parameters["method"].default
                for owner, names in ((lw.Explanation, ("map", "map_global", "maps", "word_peaks")),
                                     (figures, ("word_map", "first_token_map", "word_peaks", "spectrogram",
                                                "token_matrix")))
                for name in names for fn in [getattr(owner, name)]}
    assert set(defaults.values()) == {lw.DEFAULT_METHOD}, defaults


def test_variants_differ_where_they_should(sample_explanation):
    ex = sample_explanation
    t = ex.words[3].tokens[0]  # " Dash"
    maps = {v: ex.map(t, v) for v in VARIANTS}
    for a, b in [("base", "grad"), ("grad", "causal"), ("base", "base-vn"), ("base-vn", "grad-vn")]:
        assert np.abs(maps[a] - maps[b]).sum() > 0.05, (a, b)
    # tau and depth change base-vn; the w/o-entropy ablation ignores tau
    assert np.abs(ex.map(t, "base-vn", tau=0.25) - maps["base-vn"]).sum() > 1e-3
    assert np.abs(ex.map(t, "base-vn", depth="one") - maps["base-vn"]).sum() > 1e-3


def test_base_matches_the_equations_by_hand(model, sample_explanation):
    """The registered "base" = Eqs. 2-6 applied to the captured attention, step by step."""
    w = sample_explanation.windows[0]
    with torch.no_grad():
        tp = model.teacher_forced(w.encoded, w.prompt, w.ids)
    n = w.n_valid
    cross = torch.stack([leafx.entropy_weighted_attention(leafx.crop_frames(a, n).transpose(0, 1))
                         for a in tp.cross])
    selfs = torch.stack([a.mean(0) for a in tp.self_attn])
    final = leafx.rollout(selfs, cross)[-1]
    rows = [len(w.prompt) - 1 + i for i in range(len(w.ids))]
    expected = leafx.crop_frames(final[rows], n).numpy()
    got = np.stack([sample_explanation.map(i, "base") for i in range(len(w.ids))])
    assert np.allclose(got, expected, atol=1e-5)


def test_batched_gradients_equal_one_backward_per_token(model, sample_explanation):
    w = sample_explanation.windows[0]
    args = (model, w.encoded, w.prompt, w.ids, w.n_valid)
    batched = leafx_window(*args, LeafxConfig(grad=True)).maps
    one_at_a_time = leafx_window(*args, LeafxConfig(grad=True, grad_memory_mb=1e-6)).maps  # chunk of 1
    assert torch.allclose(batched, one_at_a_time, atol=1e-5)


def test_grad_maps_equal_eq7_done_by_hand_with_autograd():
    """Token 3's +grad map against Eq. 7 by hand: a plain autograd backward for that token only,
    the step-by-step maths of leafx.py and the sequential rollout. In float64, because Eq. 7
    renormalises rows whose modulated mass is ~1e-10, which amplifies float32 rounding to ~1e-5."""
    model = lw.load_model("tiny.en", dtype=torch.float64)
    w = lw.explain(model, lw.sample_path()).windows[0]
    batched = leafx_window(model, w.encoded, w.prompt, w.ids, w.n_valid, LeafxConfig(grad=True)).maps
    with torch.enable_grad():
        kept = []
        tp = model.teacher_forced(w.encoded, w.prompt, w.ids, reduce_cross=lambda l, a: kept.append(a) or a[0])
        grads = torch.autograd.grad(tp.logprobs[3], kept)
    n, row = w.n_valid, len(w.prompt) - 1 + 3
    cross = torch.stack([leafx.entropy_weighted_attention(
        leafx.crop_frames(leafx.gradient_modulate(a[0].detach(), g[0]), n).transpose(0, 1))
        for a, g in zip(kept, grads)])
    selfs = torch.stack([a.mean(0) for a in tp.self_attn]).detach()
    by_hand = leafx.crop_frames(leafx.rollout(selfs, cross)[-1, row], n)
    assert torch.allclose(batched[3].double(), by_hand, atol=1e-6)


def test_causal_weights_come_from_layer_bypass(model, sample_explanation):
    w = sample_explanation.windows[0]
    out = leafx_window(model, w.encoded, w.prompt, w.ids, w.n_valid, LeafxConfig(grad=True, causal=True))
    assert out.delta_nll.shape == (len(w.ids), model.n_layers)
    assert torch.allclose(out.layer_weights.sum(-1), torch.ones(len(w.ids)), atol=1e-5)
    with torch.no_grad():
        full = model.teacher_forced(w.encoded, w.prompt, w.ids).logprobs
        skip2 = model.teacher_forced(w.encoded, w.prompt, w.ids, bypass_layer=2).logprobs
    assert torch.allclose(out.delta_nll[:, 2], full - skip2, atol=1e-4)
    assert torch.allclose(out.maps, leafx.combine_layers(out.layer_maps, out.layer_weights), atol=1e-6)


def test_vn_variant_points_inside_the_word(sample_explanation):
    """LibriVox forced-alignment span of "Dashwood" (pocketsphinx, see bench.manifests): 0.98-1.58 s."""
    ex = sample_explanation
    peak = (np.argmax(ex.map(ex.words[3].tokens[0], "base-vn")) + 0.5) * ex.frame_s
    assert 0.96 <= peak <= 1.60


def test_long_audio_is_decoded_long_form(model, long_audio):
    """Over 30 s: Whisper's long-form decoding. Each window starts where the last complete segment of
    the one before ended (never at a fixed 30 s boundary), each token's map covers its own window."""
    ex = lw.explain(model, long_audio, sample_rate=16000)
    assert ex.duration_s > 60 and ex.complete and ex.n_frames == math.ceil(len(long_audio) / 320)
    starts = [w.offset_frames for w in ex.windows]
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:]))
    assert any(s % 1500 for s in starts[1:])  # seeks, not fixed windows
    for before, window in zip(ex.windows, ex.windows[1:]):
        last_segment = [s for s in ex.segments if s.window == before.index][-1]
        assert window.offset_frames * ex.frame_s == pytest.approx(last_segment.end)
    for seg, nxt in zip(ex.segments, ex.segments[1:]):
        assert seg.start < seg.end <= nxt.start + 1e-9 and seg.text and seg.tokens
    assert [t for s in ex.segments for t in s.tokens] == list(range(len(ex.tokens)))
    last = ex.tokens[-1]
    window = ex.windows[last.window]
    assert (last.start_frame, last.n_frames) == (window.offset_frames, window.n_valid)
    assert last.start_frame + last.n_frames == ex.n_frames
    local = ex.map(last.index, "base-vn")
    assert local.shape == (last.n_frames,) and abs(local.sum() - 1) < 1e-4
    glob = ex.map_global(last.index, "base-vn")
    assert glob.shape == (ex.n_frames,) and glob[:last.start_frame].sum() == 0
    assert np.allclose(ex.frame_times(last.index)[:2], np.array([0, 0.02]) + last.start_frame * 0.02)
    assert "Dashwood" in ex.text and ex.text.count("amiable") == 6  # said twice in each of 3 passes
    assert ex.log_mel().shape == (80, 2 * ex.n_frames)


def test_old_windows_maps_are_dropped_and_recomputed_the_same(model, long_audio):
    """Long recordings keep the maps of ``kept_map_windows`` windows (memory stays flat); a map of an
    older window is computed again from the audio, equal to the first."""
    ex = lw.explain(model, long_audio[: 70 * 16000], sample_rate=16000, kept_map_windows=1, kept_windows=1)
    assert len(ex.windows) >= 3
    first, last = ex.windows[0].tokens[0], ex.windows[-1].tokens[0]
    assert ex._cache.evicted >= len(ex.windows) - 1  # precomputed window by window, one kept
    kept = [k for k in ex._cache if k[2] == "window"]
    assert kept == [(lw.DEFAULT_METHOD, (), "window", len(ex.windows) - 1)]
    again = ex.map(first)  # window 0 re-encoded, its maps recomputed
    assert ex.windows[0].store.recomputed >= 1
    assert [k[3] for k in ex._cache if k[2] == "window"] == [0]
    assert np.allclose(again, ex.map(first)) and abs(again.sum() - 1) < 1e-4
    peak = ex.words[ex.tokens[first].word].peak_s  # computed while window 0 was hot, still right
    assert peak == ex._peak(ex.words[ex.tokens[first].word], lw.DEFAULT_METHOD, {})
    assert ex.map(last).shape == (ex.tokens[last].n_frames,)
    with pytest.raises(ValueError, match="kept_map_windows"):
        lw.explain(model, long_audio[:16000], sample_rate=16000, kept_map_windows=0)


def test_fixed_windows_on_request(model, long_audio):
    ex = lw.explain(model, long_audio, sample_rate=16000, timestamps=False)
    assert [w.offset_frames for w in ex.windows] == [0, 1500, 3000]
    assert sorted({t.start_frame for t in ex.tokens}) == [0, 1500, 3000]
    assert ex.tokens[-1].n_frames == ex.n_frames - 3000
    assert len(ex.segments) == 3  # one per window, without timestamps


def test_json_round_trip(sample_explanation, tmp_path):
    ex = sample_explanation
    doc = ex.to_json(("base", "base-vn"))
    assert doc["schema"] == "leafx-explanation/1" and doc["model"] == "tiny.en"
    assert doc["audio"]["sample_rate"] == 16000 and doc["frame_s"] == 0.02 and doc["n_frames"] == 355
    tok = doc["tokens"][0]
    assert {"index", "id", "text", "word", "logprob", "start_frame", "maps"} <= set(tok)
    # the words' peak method (DEFAULT_METHOD) is saved and named beside the variants asked for
    assert set(tok["maps"]) == {"base", "base-vn", lw.DEFAULT_METHOD} and len(tok["maps"]["base"]) == 355
    assert doc["peak_method"] == lw.DEFAULT_METHOD
    assert doc["words"][3]["text"] == "Dashwood" and isinstance(doc["words"][3]["peak_s"], float)
    path = ex.save_json(tmp_path / "ex.json", ("base-vn",))
    back = lw.Explanation.from_json(path)
    assert back.text == ex.text and len(back.tokens) == len(ex.tokens)
    assert back.peak_method == lw.DEFAULT_METHOD and [w.peak_s for w in back.words] == [w.peak_s for w in ex.words]
    assert back.to_json(["base-vn"])["words"] == ex.to_json(["base-vn"])["words"]  # re-saved: same peaks
    assert np.allclose(back.map(4, "base-vn"), ex.map(4, "base-vn"), atol=1e-6)
    assert [w.peak_s for w in back.words] == [w.peak_s for w in ex.words]
    with pytest.raises(ValueError, match="without a model"):
        back.map(4, "grad")
    with pytest.raises(ValueError, match="schema"):
        lw.Explanation.from_json(json.dumps({"schema": "other"}))


def test_bad_requests(sample_explanation, model):
    ex = sample_explanation
    with pytest.raises(IndexError, match="out of range.*26 tokens"):
        ex.map(26)
    with pytest.raises(IndexError, match="out of range"):
        ex.map(-1)
    with pytest.raises(TypeError, match="int index"):
        ex.map("3")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        ex.map(0, "nope")
    with pytest.raises(ValueError, match="no parameter"):
        ex.map(0, "base", temperature=2)
    with pytest.raises(ValueError, match="tau"):
        ex.map(0, "base", tau=0)
    with pytest.raises(ValueError, match="depth"):
        ex.map(0, "base", depth="sideways")
    with pytest.raises(lw.AudioError, match="silent"):
        lw.explain(model, np.zeros(16000, np.float32), sample_rate=16000)


@pytest.mark.parametrize("switches", [{}, {"value_norm": True}, {"entropy": False}, {"frames": "all"}])
def test_fused_gradient_maths_equal_the_equations(switches):
    """attribution._modulated_heads (Eq. 7 then Eqs. 2-4 in few passes) against leafx.py step by step,
    with one head whose gradient is negative everywhere (modulated to all zero: no weight)."""
    from leafx_widgets.methods.leafx import _modulated_heads, _reduce_heads

    torch.manual_seed(1)
    heads, tokens, n_pos, frames, n_valid = 3, 2, 4, 9, 9
    attn = torch.softmax(torch.randn(heads, n_pos, frames), dim=-1)
    d_attn = torch.randn(heads, tokens, n_pos, frames)
    d_attn[1, 0] = -d_attn[1, 0].abs()
    value_norm = torch.rand(heads, frames) + 0.5 if switches.get("value_norm") else None
    cfg = LeafxConfig(grad=True, **switches)
    fused = _modulated_heads(attn, d_attn.clone(), cfg, value_norm)
    modulated = leafx.gradient_modulate(attn[:, None], d_attn).transpose(0, 1)  # (C, H, n, S)
    by_steps = _reduce_heads(modulated, n_valid, cfg, value_norm)
    assert fused.shape == (tokens, n_pos, frames)
    assert torch.allclose(fused, by_steps, atol=1e-6)


def test_grad_maps_without_kept_attention_are_the_same(model, sample_explanation, monkeypatch):
    """Large models: the +grad pass recomputes each layer's cross-attention instead of keeping
    layers x heads x positions x frames; the maps must not change."""
    from leafx_widgets.models import whisper_backward

    w = sample_explanation.windows[0]
    args = (model, w.encoded, w.prompt, w.ids, w.n_valid, LeafxConfig(grad=True))
    kept = leafx_window(*args).maps
    monkeypatch.setattr(whisper_backward, "KEEP_ATTENTION_MB", 0.0)
    assert whisper_backward.trace(model.model.model.decoder, torch.tensor(w.prompt + w.ids),
                                  w.encoded[0])[0][0].p_cross is None
    assert torch.allclose(leafx_window(*args).maps, kept, atol=1e-6)


def test_causal_after_grad_reuses_the_gradient_pass(model, sample_explanation, monkeypatch):
    w = sample_explanation.windows[0]
    args = (model, w.encoded, w.prompt, w.ids, w.n_valid)
    fresh = leafx_window(*args, LeafxConfig(grad=True, causal=True)).maps
    calls = []
    real = type(model).token_gradients
    monkeypatch.setattr(type(model), "token_gradients", lambda self, *a: calls.append(1) or real(self, *a))
    cache = {}
    grad = leafx_window(*args, LeafxConfig(grad=True), cache=cache).maps
    causal = leafx_window(*args, LeafxConfig(grad=True, causal=True), cache=cache).maps
    hotter = leafx_window(*args, LeafxConfig(grad=True, causal=True, tau=0.5), cache=cache).maps
    assert len(calls) == 2  # tau=1 once for +grad and +causal, then tau=0.5
    assert torch.allclose(causal, fresh, atol=1e-6) and not torch.allclose(causal, grad)
    assert not torch.allclose(hotter, causal)


def test_blank_log_mel_has_the_shape_of_the_features(sample_explanation):
    """A view without features (all silent, or read from JSON) draws zeros in the model's input shape,
    or one cell per frame when the model is unknown."""
    ex = sample_explanation
    assert ex.blank_log_mel().shape == ex.log_mel().shape == (ex.model.n_mels, 2 * ex.n_frames)
    shared = lw.Explanation.from_json(ex.to_json(variants=("raa_last",)))
    assert not shared.blank_log_mel().any() and shared.blank_log_mel().shape == (1, ex.n_frames)
