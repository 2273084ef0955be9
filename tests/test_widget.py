"""The widget's traits, map request/reply protocol and HTML export, on the real tiny.en
Explanation of the bundled clip (tests/conftest.py), without a browser."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import time

import numpy as np
import pytest
import traitlets

from leafx_widgets import _codecs
from leafx_widgets.methods import DEFAULT_METHOD, METHODS, Method
from leafx_widgets.widget import DEPTHS, LeafXWidget, map_key, render_html


class Recorder:
    """Captures what the widget sends to the browser; acknowledges audio chunks like the view."""

    def __init__(self, widget, ack=True):
        self.sent = []

        def send(content, buffers=None):
            self.sent.append((content, buffers or []))
            if ack and content["type"] == "audio":
                widget._on_custom_msg(widget, {"type": "audio_ack", "stream": content["stream"]}, [])

        widget.send = send

    def of(self, kind):
        return [(c, b) for c, b in self.sent if c["type"] == kind]


@pytest.fixture
def ex(sample_explanation):
    return sample_explanation


@pytest.fixture
def widget(ex):
    w = LeafXWidget(ex)
    yield w
    w.close()


def request(w, **content):
    w._on_custom_msg(w, {"type": "map", "id": content.pop("id", "r1"), "key": content.pop("key", "k"),
                         **content}, [])
    w.wait_idle()


def leafx_params(**kw):
    return {"tau": 1.0, "depth": "full", **kw}


@pytest.fixture
def slow_and_broken(monkeypatch):
    """Two extra registry entries: a slowed-down copy of base, and one that always fails."""
    base = METHODS["base"]

    def slow(window, positions, **params):
        time.sleep(0.3)
        return base.compute(window, positions, **params)

    def broken(window, positions, **params):
        raise ValueError("this method always fails")

    monkeypatch.setitem(METHODS, "slow_base", dataclasses.replace(base, name="slow_base", label="slow", compute=slow,
                                                                  cost="slow"))
    monkeypatch.setitem(METHODS, "broken", Method("broken", "always fails", broken, cost="fast"))


# ---- traits ------------------------------------------------------------------------
def test_default_traits_and_meta(widget, ex):
    assert widget.selected_token == 0 and widget.current_time == 0.0
    assert widget.variant == DEFAULT_METHOD
    assert widget.compare_variant is None and widget.compare_mode == "side"
    # tau follows the shown method's own default (LEAF-X-SF: 0.5), depth falls back to base's
    assert (widget.tau, widget.depth) == (METHODS[DEFAULT_METHOD].params["tau"], "full")
    meta = widget._meta
    assert meta["n_frames"] == ex.n_frames and meta["frame_s"] == ex.frame_s
    assert meta["duration_s"] == pytest.approx(ex.duration_s) and meta["sample_rate"] == 16000
    assert [t["text"] for t in meta["tokens"]] == [t.text for t in ex.tokens]
    assert [w["tokens"] for w in meta["words"]] == [w.tokens for w in ex.words]
    names = [m["name"] for m in meta["methods"]]
    assert names == list(METHODS) and {"base", "grad", "causal", "base-vn"} <= set(names)
    by_name = {m["name"]: m for m in meta["methods"]}
    assert by_name["grad"]["cost"] == "slow" and by_name["base"]["params"] == {"tau": 1.0, "depth": "full"}
    assert meta["depths"] == list(DEPTHS) and meta["default_method"] == DEFAULT_METHOD
    json.dumps(meta)  # the metadata trait is plain JSON


def test_traits_validate(widget, ex):
    widget.variant = "grad"
    widget.compare_variant = "causal"
    widget.selected_token = len(ex.tokens) - 1
    widget.current_time = 99.0
    assert widget.current_time == pytest.approx(ex.duration_s)
    widget.compare_variant = ""
    assert widget.compare_variant is None
    for name, bad in [("variant", "nope"), ("compare_variant", "nope"), ("selected_token", len(ex.tokens)),
                      ("selected_token", -1), ("tau", 0.0), ("depth", "half"), ("compare_mode", "x")]:
        with pytest.raises(traitlets.TraitError):
            setattr(widget, name, bad)


def test_tau_follows_each_method_until_the_user_sets_it(widget, ex):
    sf_tau, base_tau = METHODS["leafx_sf"].params["tau"], METHODS["base"].params["tau"]
    assert sf_tau != base_tau
    # the constructor's own settings are no user choice, whatever order traitlets fires them in
    for kwargs in ({}, {"variant": "base"}, {"variant": "leafx_sf"}, {"selected_token": 1}):
        w = LeafXWidget(ex, background=False, **kwargs)
        assert w._user_params == set() and w.tau == METHODS[w.variant].params["tau"]
        w.close()
    assert LeafXWidget(ex, background=False, tau=2.0)._user_params == {"tau"}
    # traitlets may fire the variant change before tau's inside __init__: following the
    # variant must not end the constructor's grace period early
    w = LeafXWidget(ex, background=False)
    w._following = True
    w._follow_method_defaults({"new": "base"})
    assert w._following and w.tau == base_tau
    w._following = False
    widget.variant = "leafx_sf"
    assert widget.tau == sf_tau
    widget.variant = "base"
    assert widget.tau == base_tau
    widget.variant = "leafx_sf"
    assert widget.tau == sf_tau and widget.method_params("leafx_sf") == {"tau": sf_tau}
    widget.tau = 2.0  # a user's choice applies to every method from then on
    widget.variant = "base"
    assert widget.tau == 2.0 and widget.method_params("base") == {"tau": 2.0, "depth": "full"}


def test_constructor_traits_and_unknown_kwargs(ex):
    w = LeafXWidget(ex, variant="base", selected_token=2, tau=2.5, compare_variant="grad")
    assert (w.variant, w.selected_token, w.tau, w.compare_variant) == ("base", 2, 2.5, "grad")
    with pytest.raises(TypeError, match="colour"):
        LeafXWidget(ex, colour="red")


def test_show_builds_the_widget(ex, monkeypatch):
    import leafx_widgets as lw

    assert isinstance(lw.show(ex), LeafXWidget)
    calls = []
    monkeypatch.setattr(lw, "explain", lambda model, source, **kw: calls.append((model, source, kw)) or ex)
    w = lw.show("clip.wav", model=object(), selected_token=1)
    assert isinstance(w, LeafXWidget) and w.selected_token == 1 and calls[0][1] == "clip.wav"
    assert calls[0][2] == {"wait": False}  # the widget decodes on its worker


# ---- init: spectrogram, waveform summary, then PCM in chunks ------------------------
def test_init_sends_mel_peaks_and_pcm16(ex, monkeypatch):
    import leafx_widgets.widget.protocol as wmod

    monkeypatch.setattr(wmod, "AUDIO_CHUNK_SAMPLES", 10000)
    monkeypatch.setattr(wmod, "MEL_CHUNK_BYTES", 80 * 100)
    w = LeafXWidget(ex)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
    kinds = [c["type"] for c, _ in rec.sent]
    assert kinds.index("mel") < kinds.index("peaks") < kinds.index("audio")
    audio = rec.of("audio")
    assert len(audio) == -(-ex.audio.size // 10000)
    pcm = np.concatenate([np.frombuffer(b[0], dtype=np.int16) for _, b in audio])
    assert pcm.size == audio[0][0]["total"] == ex.audio.size
    assert np.abs(pcm / 32768 - ex.audio).max() < 1e-4
    mel = rec.of("mel")
    c0 = mel[0][0]
    codes = np.concatenate([np.frombuffer(b[0], dtype=np.uint8) for _, b in mel]).reshape(-1, c0["n_mels"])
    log_mel = ex.log_mel()
    assert codes.shape == log_mel.T.shape == (c0["total_cols"], c0["n_mels"])
    decoded = _codecs.dequantize_uint8(codes, c0["lo"], c0["hi"]).T
    assert np.abs(decoded - log_mel).max() <= (c0["hi"] - c0["lo"]) / 255
    assert c0["col_s"] == pytest.approx(ex.frame_s / 2)
    (pk, pb), = rec.of("peaks")
    pairs = np.frombuffer(pb[0], np.int16).reshape(-1, 2)
    assert pairs.shape[0] == pk["n_blocks"] == -(-ex.audio.size // pk["block"])
    blocks = np.array_split(pcm, np.arange(pk["block"], pcm.size, pk["block"]))
    assert pairs[:, 0].tolist() == [b.min() for b in blocks]
    assert pairs[:, 1].tolist() == [b.max() for b in blocks]
    w.close()


def test_audio_flow_control(ex, monkeypatch):
    import leafx_widgets.widget.protocol as wmod

    monkeypatch.setattr(wmod, "AUDIO_CHUNK_SAMPLES", 10000)
    w = LeafXWidget(ex)
    rec = Recorder(w, ack=False)
    w._on_custom_msg(w, {"type": "init", "stream": "v1"}, [])
    assert len(rec.of("audio")) == wmod.AUDIO_WINDOW
    w._on_custom_msg(w, {"type": "audio_ack", "stream": "v1"}, [])
    assert [c["offset"] for c, _ in rec.of("audio")] == [0, 10000, 20000]
    for _ in range(100):
        w._on_custom_msg(w, {"type": "audio_ack", "stream": "v1"}, [])
    assert sum(c["n"] for c, _ in rec.of("audio")) == ex.audio.size
    assert "v1" not in w._streams
    w._on_custom_msg(w, {"type": "audio_ack", "stream": "unknown"}, [])  # ignored
    w.close()


def test_ten_minute_recording_fits_the_message_limit():
    """Transport only, so a stand-in with 10 minutes of audio (explaining 10 minutes with
    tiny.en takes minutes on CI): every message stays far under Jupyter's ~10 MB."""
    from widget_fakes import METHODS as FAKE_METHODS, FakeExplanation

    ex = FakeExplanation(duration_s=600.0, words=("a",) * 3)
    w = LeafXWidget(ex, methods=FAKE_METHODS)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
    assert sum(len(b[0]) for _, b in rec.of("audio")) == 600 * 16000 * 2
    assert max(len(b[0]) for _, b in rec.sent) <= 4 * 2**20
    w.close()


# ---- map protocol --------------------------------------------------------------------
def test_map_reply_shape_dtype_and_key(widget, ex):
    rec = Recorder(widget)
    request(widget, id="a1", key="3|base|depth=full|tau=1", token=3, method="base", params=leafx_params())
    (content, buffers), = rec.of("map")
    assert content["id"] == "a1" and content["key"] == "3|base|depth=full|tau=1"
    assert content["dtype"] == "float32" and content["start_frame"] == ex.tokens[3].start_frame
    arr = np.frombuffer(buffers[0], dtype=np.float32)
    assert arr.shape == (ex.tokens[3].n_frames,) == (content["n_frames"],)
    assert arr.sum() == pytest.approx(1.0, rel=1e-4) and (arr >= 0).all()
    np.testing.assert_array_equal(arr, ex.map(3, "base", tau=1.0, depth="full"))


def test_maps_are_cached(widget, ex, monkeypatch):
    """The Explanation's cache is the one map cache: repeated requests compute the map once."""
    base, computed = METHODS["base"], []
    monkeypatch.setitem(METHODS, "base", dataclasses.replace(
        base, compute=lambda window, positions, **p: computed.append(p) or base.compute(window, positions, **p)))
    rec = Recorder(widget)
    for i in range(3):  # a tau no other test asks for: not yet in the session's Explanation
        request(widget, id=f"c{i}", token=2, method="base", params=leafx_params(tau=1.7))
    assert len(rec.of("map")) == 3 and len(computed) == 1
    request(widget, id="c9", token=2, method="base", params=leafx_params(tau=2.3))
    assert len(computed) == 2, "another tau is another map"
    a, b = (np.frombuffer(x[1][0], np.float32) for x in (rec.of("map")[0], rec.of("map")[-1]))
    assert not np.array_equal(a, b)


def test_params_are_filtered_to_what_the_widget_sets(widget, ex, monkeypatch):
    calls = []
    real_map = ex.map
    monkeypatch.setattr(ex, "map", lambda *a, **k: calls.append(k) or real_map(*a, **k))
    rec = Recorder(widget)
    request(widget, token=0, method="base", params={"tau": 1.5, "depth": "one", "eps": 5, "junk": 1})
    assert rec.of("map")[0][0]["params"] == {"tau": 1.5, "depth": "one"}
    assert calls == [{"tau": 1.5, "depth": "one"}]


@pytest.mark.parametrize("content, match", [
    ({"token": 999, "method": "base"}, "ValueError: token 999 is out of range"),
    ({"token": 0, "method": "nope"}, "ValueError: unknown method 'nope'"),
    ({"token": 0, "method": "broken"}, "ValueError: this method always fails"),
    ({"token": 0, "method": "base", "params": {"depth": "half"}}, "depth must be one of"),
    ({"token": 0, "method": "base", "params": {"tau": -1}}, "tau must be finite and positive"),
])
def test_errors_are_replied(ex, slow_and_broken, content, match):
    w = LeafXWidget(ex)
    rec = Recorder(w)
    request(w, id="e1", key="kk", **content)
    (err, buffers), = rec.of("error")
    assert err["id"] == "e1" and err["key"] == "kk" and match in err["message"]
    assert buffers == [] and rec.of("map") == []
    w.close()


def test_unknown_message_is_replied_as_error(widget):
    rec = Recorder(widget)
    widget._on_custom_msg(widget, {"type": "nonsense"}, [])
    assert "unknown message type" in rec.of("error")[0][0]["message"]


def test_slow_method_does_not_block_the_handler(ex, slow_and_broken):
    w = LeafXWidget(ex)
    rec = Recorder(w)
    t0 = time.perf_counter()
    w._on_custom_msg(w, {"type": "map", "id": "s", "key": "k", "token": 0, "method": "slow_base",
                         "params": leafx_params(tau=0.7)}, [])
    assert time.perf_counter() - t0 < 0.15, "the handler returned before the slow map was computed"
    assert rec.of("map") == []
    w.wait_idle()
    assert rec.of("map")[0][0]["id"] == "s"
    w.close()


def test_map_requests_run_before_overview_rows(ex, slow_and_broken):
    w = LeafXWidget(ex)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "overview", "method": "slow_base", "params": {}}, [])
    w._on_custom_msg(w, {"type": "map", "id": "m", "key": "k", "token": 3, "method": "base", "params": {}}, [])
    w.wait_idle()
    kinds = [c["type"] for c, _ in rec.sent]
    assert kinds.index("map") < len(kinds) - 1, kinds
    w.close()


def test_overview_rows(widget, ex):
    rec = Recorder(widget)
    widget._on_custom_msg(widget, {"type": "overview", "method": "base", "params": {}}, [])
    widget.wait_idle()
    chunks = rec.of("overview")
    n_bins = chunks[0][0]["n_bins"]
    assert n_bins == min(ex.n_frames, 2000)
    rows = np.zeros((len(ex.tokens), n_bins), np.uint8)
    for c, b in chunks:
        rows[c["row0"]:c["row0"] + c["n_rows"]] = np.frombuffer(b[0], np.uint8).reshape(c["n_rows"], n_bins)
    assert (rows.max(axis=1) == 255).all()
    for k in range(len(ex.tokens)):
        assert rows[k].argmax() == ex.map_global(k, "base").argmax() * n_bins // ex.n_frames
    np.testing.assert_array_equal(rows, widget.overview("base"))
    # a second view gets the finished overview in one piece
    widget._on_custom_msg(widget, {"type": "overview", "method": "base", "params": {}}, [])
    assert rec.of("overview")[-1][0]["n_rows"] == len(ex.tokens)


def test_get_map_and_map_key(widget, ex):
    m = widget.get_map(1, "base", tau=2.0)
    assert m.dtype == np.float32 and m.shape == (ex.tokens[1].n_frames,)
    np.testing.assert_array_equal(m, ex.map(1, "base", tau=2.0, depth="full"))
    assert map_key(3, "base", {"tau": 1.0, "depth": "full"}) == "3|base|depth=full|tau=1"
    assert map_key(3, "base", {"tau": 0.5, "depth": "one"}) == "3|base|depth=one|tau=0.5"
    assert map_key(3, "ig", {}) == "3|ig|"


def test_synchronous_mode(ex, slow_and_broken):
    w = LeafXWidget(ex, background=False)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "map", "id": "x", "key": "k", "token": 0, "method": "slow_base",
                         "params": {}}, [])
    assert rec.of("map")[0][0]["id"] == "x"


# ---- save_html ----------------------------------------------------------------------
def _embedded(html_text):
    m = re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>', html_text, re.S)
    return json.loads(m.group(1))


@pytest.fixture
def html_ex(ex):
    """The real explanation with markup in its transcript, to check escaping."""
    hostile = copy.copy(ex)
    hostile.tokens = [dataclasses.replace(t) for t in ex.tokens]
    hostile.tokens[1].text = " <b>Mr</b>&amp;"
    hostile._words = [dataclasses.replace(w) for w in ex.words]
    hostile._words[1].text = "<script>alert(1)</script>"
    hostile.text = "And <script>alert(1)</script> John"
    return hostile


def test_save_html_is_self_contained_and_escaped(html_ex, tmp_path):
    w = LeafXWidget(html_ex, variant="base", compare_variant="base-vn")
    text = w.save_html(tmp_path / "view.html").read_text()
    assert text.startswith("<!doctype html>")
    assert "<b>Mr</b>" not in text and "<script>alert" not in text, "transcript must be escaped everywhere"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the <noscript> copy
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text), "no external resources"
    data = _embedded(text)
    assert data["methods"] == ["base", "base-vn"]
    assert len(data["maps"]) == 2 * len(html_ex.tokens)
    key = map_key(4, "base-vn", {"tau": 1.0, "depth": "full"})
    arr = np.frombuffer(base64.b64decode(data["maps"][key]["b64"]), np.float32)
    np.testing.assert_array_equal(arr, html_ex.map(4, "base-vn", tau=1.0, depth="full"))
    assert data["meta"]["words"][1]["text"] == "<script>alert(1)</script>"  # intact once parsed
    assert data["audio"]["total"] == html_ex.audio.size
    assert data["overview"]["n_tokens"] == len(html_ex.tokens)
    assert "LeafX.mount" in text and len(text) > 100_000  # bundle and data inlined
    w.close()


def test_save_html_explicit_variants(widget, tmp_path):
    data = _embedded(widget.save_html(tmp_path / "v.html", variants=["base"]).read_text())
    assert data["methods"] == ["base"] and data["state"]["method"] == "base"
    with pytest.raises(traitlets.TraitError):
        widget.save_html(tmp_path / "w.html", variants=["nope"])


def test_script_safe_json_cannot_close_the_script():
    html_text = render_html({"meta": {"text": "</script><script>alert(1)</script>"}}, title="<t>")
    assert html_text.count("</script>") == 3  # data, bundle, mount
    assert "<title>&lt;t&gt;</title>" in html_text


# ---- codecs -------------------------------------------------------------------------
def test_codecs():
    pcm = _codecs.to_pcm16(np.array([-1.5, -1.0, 0.0, 0.5, 1.0], np.float32))
    assert pcm.dtype == np.int16 and pcm.tolist() == [-32768, -32768, 0, 16384, 32767]
    with pytest.raises(ValueError):
        _codecs.to_pcm16(np.zeros((2, 3), np.float32))
    codes, lo, hi = _codecs.quantize_uint8(np.array([[-2.0, 0.0], [1.0, 3.0]]))
    assert (lo, hi) == (-2.0, 3.0) and codes.tolist() == [[0, 102], [153, 255]]
    assert list(_codecs.chunk_ranges(5, 2)) == [(0, 2), (2, 4), (4, 5)]
    enc = _codecs.encode_array(np.arange(6, dtype=np.float32).reshape(2, 3), "float32")
    assert enc["dtype"] == "float32" and enc["shape"] == [2, 3] and enc["view"].nbytes == 24
    with pytest.raises(ValueError):
        _codecs.encode_array(np.arange(3.0), "float32")
    with pytest.raises(ValueError):
        _codecs.float32_map(np.array([np.nan]))
    peaks = _codecs.minmax_peaks(np.array([1, -3, 2, 5, -1], np.int16), 2)
    assert peaks.tolist() == [[-3, 1], [2, 5], [-1, -1]]
    row = _codecs.row_overview(np.array([0.0, 1.0, 0.5], np.float32), 2, 10, 5)
    assert row.tolist() == [0, 255, 180, 0, 0]  # sqrt(0.5) * 255


# ---- long audio: several 30 s windows ------------------------------------------------
def test_multi_window_recording(model, long_audio):
    """Two 30 s windows with 3 s of speech each (few tokens to decode keeps it cheap)."""
    import leafx_widgets as lw

    speech = long_audio[: 3 * 16000]
    audio = np.concatenate([speech, np.zeros(27 * 16000 + 8000, np.float32), speech])
    ex = lw.explain(model, audio, sample_rate=16000)
    assert len({t.start_frame for t in ex.tokens}) == 2, "expected two 30 s windows"
    w = LeafXWidget(ex, variant="base")
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
    mel = rec.of("mel")
    assert mel[0][0]["total_cols"] == 2 * ex.n_frames
    assert sum(c["n"] for c, _ in rec.of("audio")) == ex.audio.size
    last = ex.tokens[-1]
    assert last.start_frame > 0
    request(w, id="late", token=last.index, method="base", params=leafx_params())
    (content, buffers), = rec.of("map")
    assert content["start_frame"] == last.start_frame
    arr = np.frombuffer(buffers[0], np.float32)
    np.testing.assert_array_equal(arr, ex.map_global(last.index, "base")[last.start_frame:last.start_frame + arr.size])
    assert last.start_frame + arr.size <= ex.n_frames
    w.close()


def test_explanation_from_json_without_model_features(ex):
    """A shared JSON explanation: stored maps are served, the spectrogram is blank with a note."""
    from leafx_widgets import Explanation

    shared = Explanation.from_json(json.loads(json.dumps(ex.to_json(variants=("base",)))))
    w = LeafXWidget(shared, variant="base")
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
    notes = [c["message"] for c, _ in rec.of("note")]
    assert any("No spectrogram" in m for m in notes)
    assert any("without its recording" in m and "load_audio=True" in m for m in notes)
    assert rec.of("mel")[0][0]["total_cols"] == shared.blank_log_mel().shape[1] == shared.n_frames
    request(w, id="j", token=2, method="base", params=leafx_params())
    arr = np.frombuffer(rec.of("map")[0][1][0], np.float32)
    np.testing.assert_allclose(arr, ex.map(2, "base"), atol=1e-6)
    w.close()


def test_a_method_whose_extra_is_missing_is_listed_but_refused(ex, monkeypatch):
    """Greyed out in the page with the pip command, and refused by name if chosen anyway."""
    from leafx_widgets import methods

    missing = methods.Method("needs_missing", "Needs a missing package", lambda *a, **k: None,
                             requires=("leafx_no_such_module",))
    monkeypatch.setitem(methods.METHODS, missing.name, missing)
    w = LeafXWidget(ex)
    listed = {m["name"]: m for m in w._meta["methods"]}
    assert listed["needs_missing"]["available"] is False
    assert listed["needs_missing"]["needs"] == 'pip install "leafx-widgets[bench]"'
    assert listed["base"]["available"] is True and listed["base"]["needs"] is None
    with pytest.raises(traitlets.TraitError, match=r"needs leafx_no_such_module"):
        w.variant = "needs_missing"
    w.close()


def test_method_is_the_synced_trait_and_variant_its_alias(ex):
    """One word: "method" in Python, JS and the CLI; "variant" (the paper's) kept as an alias."""
    synced = LeafXWidget.class_trait_names(sync=True)
    assert {"method", "compare_method"} <= set(synced) and "variant" not in synced
    w = LeafXWidget(ex, variant="base", compare_variant="base-vn")
    assert (w.method, w.compare_method) == ("base", "base-vn")
    w.variant = "raa_last"
    assert w.method == "raa_last" and w.variant == "raa_last"
    w.compare_method = None
    assert w.compare_variant is None
    w.close()


def test_the_ladder_toggle_follows_what_the_model_can_run(sample_explanation):
    import leafx_widgets as lw
    from leafx_widgets.methods import LADDERS, METHODS

    w = lw.LeafXWidget(sample_explanation, background=False)
    assert w._meta["ladder"] == list(LADDERS["LEAF-X-SF"])
    paper_only = {k: v for k, v in METHODS.items() if not k.startswith("leafx_sf")}
    assert lw.LeafXWidget(sample_explanation, methods=paper_only, background=False)._meta["ladder"] == \
        ["base", "grad", "causal"]
    neither = {k: v for k, v in paper_only.items() if k not in ("grad", "causal")}
    assert lw.LeafXWidget(sample_explanation, methods=neither, background=False)._meta["ladder"] == []
