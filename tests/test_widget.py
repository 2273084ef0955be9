"""The widget's traits, map request/reply protocol and HTML export (no browser)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import traitlets

from leafx_widgets import _codecs
from leafx_widgets.widget import DEPTHS, LeafXWidget, map_key, render_html
from widget_fakes import METHODS, FakeExplanation


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
def ex():
    return FakeExplanation()


@pytest.fixture
def widget(ex):
    w = LeafXWidget(ex, methods=METHODS)
    yield w
    w.close()


def request(w, **content):
    w._on_custom_msg(w, {"type": "map", "id": content.get("id", "r1"),
                      "key": content.get("key", "k"), **content}, [])
    w.wait_idle()


# ---- traits ------------------------------------------------------------------------
def test_default_traits_and_meta(widget, ex):
    assert widget.selected_token == 0
    assert widget.variant == "base"
    assert widget.compare_variant is None
    assert (widget.tau, widget.depth) == (1.0, "full")
    meta = widget._meta
    assert meta["n_frames"] == ex.n_frames and meta["frame_s"] == 0.02
    assert [t["text"] for t in meta["tokens"]] == [t.text for t in ex.tokens]
    assert meta["words"][1]["text"] == "<b>world</b>"
    assert {m["name"]: m["cost"] for m in meta["methods"]}["grad"] == "slow"
    assert meta["depths"] == list(DEPTHS)
    json.dumps(meta)  # the metadata trait is plain JSON


def test_traits_validate(widget, ex):
    widget.variant = "grad"
    widget.compare_variant = "causal"
    widget.selected_token = len(ex.tokens) - 1
    widget.current_time = 99.0
    assert widget.current_time == pytest.approx(ex.duration_s)
    widget.compare_variant = ""
    assert widget.compare_variant is None
    for name, bad in [("variant", "nope"), ("compare_variant", "nope"), ("selected_token", 99),
                      ("selected_token", -1), ("tau", 0.0), ("depth", "half"), ("compare_mode", "x")]:
        with pytest.raises(traitlets.TraitError):
            setattr(widget, name, bad)


def test_unknown_kwarg_is_a_type_error(ex):
    with pytest.raises(TypeError, match="colour"):
        LeafXWidget(ex, methods=METHODS, colour="red")


def test_traits_from_constructor(ex):
    w = LeafXWidget(ex, methods=METHODS, variant="raa_last", selected_token=2, tau=2.5)
    assert (w.variant, w.selected_token, w.tau) == ("raa_last", 2, 2.5)


# ---- init: audio and spectrogram in chunks -------------------------------------------
def test_init_sends_pcm16_and_mel_in_chunks(ex, monkeypatch):
    import leafx_widgets.widget as wmod

    monkeypatch.setattr(wmod, "AUDIO_CHUNK_SAMPLES", 10000)
    monkeypatch.setattr(wmod, "MEL_CHUNK_BYTES", 80 * 100)
    w = LeafXWidget(ex, methods=METHODS)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init"}, [])
    w.wait_idle()
    audio = rec.of("audio")
    assert len(audio) == int(np.ceil(ex.audio.size / 10000))
    pcm = np.concatenate([np.frombuffer(b[0], dtype=np.int16) for _, b in audio])
    assert pcm.size == audio[0][0]["total"] == ex.audio.size
    assert np.abs(pcm / 32768 - ex.audio).max() < 1e-4
    mel = rec.of("mel")
    assert len(mel) == int(np.ceil(2 * ex.n_frames / 100))
    c0 = mel[0][0]
    codes = np.concatenate([np.frombuffer(b[0], dtype=np.uint8) for _, b in mel]).reshape(-1, c0["n_mels"])
    assert codes.shape == (c0["total_cols"], 80)
    decoded = _codecs.dequantize_uint8(codes, c0["lo"], c0["hi"]).T
    assert np.abs(decoded - ex.log_mel()).max() <= (c0["hi"] - c0["lo"]) / 255
    assert c0["col_s"] == pytest.approx(0.01)
    assert all(len(b[0]) <= 10 * 2**20 for _, b in rec.sent)
    kinds = [c["type"] for c, _ in rec.sent]
    assert kinds.index("peaks") < kinds.index("audio") and kinds.index("mel") < kinds.index("audio")
    (pk, pb), = rec.of("peaks")
    pairs = np.frombuffer(pb[0], np.int16).reshape(-1, 2)
    assert pairs.shape[0] == pk["n_blocks"] == -(-ex.audio.size // pk["block"])
    blocks = np.array_split(pcm, np.arange(pk["block"], pcm.size, pk["block"]))
    assert pairs[:, 0].tolist() == [b.min() for b in blocks]
    assert pairs[:, 1].tolist() == [b.max() for b in blocks]


def test_audio_flow_control(ex, monkeypatch):
    import leafx_widgets.widget as wmod

    monkeypatch.setattr(wmod, "AUDIO_CHUNK_SAMPLES", 1000)
    w = LeafXWidget(ex, methods=METHODS)
    rec = Recorder(w, ack=False)
    w._on_custom_msg(w, {"type": "init", "stream": "v1"}, [])
    assert len(rec.of("audio")) == wmod.AUDIO_WINDOW
    w._on_custom_msg(w, {"type": "audio_ack", "stream": "v1"}, [])
    assert [c["offset"] for c, _ in rec.of("audio")] == [0, 1000, 2000]
    for _ in range(100):
        w._on_custom_msg(w, {"type": "audio_ack", "stream": "v1"}, [])
    assert sum(c["n"] for c, _ in rec.of("audio")) == ex.audio.size
    assert "v1" not in w._streams
    w._on_custom_msg(w, {"type": "audio_ack", "stream": "unknown"}, [])  # ignored


def test_ten_minute_audio_fits_message_limit():
    ex = FakeExplanation(duration_s=600.0, words=("a",) * 3)
    w = LeafXWidget(ex, methods=METHODS)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init"}, [])
    w.wait_idle()
    sizes = [len(b[0]) for _, b in rec.sent]
    assert sum(len(b[0]) for _, b in rec.of("audio")) == 600 * 16000 * 2
    assert max(sizes) <= 4 * 2**20


# ---- map protocol --------------------------------------------------------------------
def test_map_reply_shape_dtype_and_key(widget, ex):
    rec = Recorder(widget)
    request(widget, id="a1", key="1|base|depth=full|tau=1", token=1, method="base",
            params={"tau": 1, "depth": "full"})
    (content, buffers), = rec.of("map")
    assert content["id"] == "a1" and content["key"] == "1|base|depth=full|tau=1"
    assert content["dtype"] == "float32" and content["start_frame"] == ex.tokens[1].start_frame
    arr = np.frombuffer(buffers[0], dtype=np.float32)
    assert arr.shape == (ex.tokens[1].n_frames,) == (content["n_frames"],)
    assert arr.sum() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(arr, ex.map(1, "base", tau=1.0, depth="full"))


def test_map_is_cached(widget, ex):
    rec = Recorder(widget)
    for i in range(3):
        request(widget, id=f"c{i}", token=2, method="base", params={"tau": 1.0, "depth": "full"})
    assert len(rec.of("map")) == 3
    assert sum(1 for c in ex.calls if c[0] == 2) == 1
    request(widget, id="c9", token=2, method="base", params={"tau": 2.0, "depth": "full"})
    assert sum(1 for c in ex.calls if c[0] == 2) == 2, "another tau is another map"


def test_params_are_filtered_to_what_the_method_declares(widget, ex):
    rec = Recorder(widget)
    request(widget, token=0, method="raa_last", params={"tau": 3.0, "depth": "one"})
    assert rec.of("map")[0][0]["params"] == {}
    assert ex.calls[-1] == (0, "raa_last", ())


@pytest.mark.parametrize("content, match", [
    ({"token": 99, "method": "base"}, "IndexError: token 99"),
    ({"token": 0, "method": "nope"}, "ValueError: unknown method 'nope'"),
    ({"token": 0, "method": "broken"}, "ValueError: this method always fails"),
    ({"token": 0, "method": "base", "params": {"depth": "half"}}, "depth must be one of"),
    ({"token": 0, "method": "base", "params": {"tau": -1}}, "tau must be positive"),
])
def test_errors_are_replied(widget, content, match):
    rec = Recorder(widget)
    request(widget, id="e1", key="kk", **content)
    (err, buffers), = rec.of("error")
    assert err["id"] == "e1" and err["key"] == "kk" and match in err["message"]
    assert buffers == [] and rec.of("map") == []


def test_unknown_message_is_replied_as_error(widget):
    rec = Recorder(widget)
    widget._on_custom_msg(widget, {"type": "nonsense"}, [])
    assert "unknown message type" in rec.of("error")[0][0]["message"]


def test_slow_method_does_not_block_the_handler(ex):
    import time

    w = LeafXWidget(ex, methods=METHODS)
    rec = Recorder(w)
    t0 = time.perf_counter()
    w._on_custom_msg(w, {"type": "map", "id": "s", "key": "k", "token": 0, "method": "grad", "params": {}}, [])
    assert time.perf_counter() - t0 < ex.slow_s / 2, "handler returned before the slow map"
    assert rec.of("map") == []
    w.wait_idle()
    assert rec.of("map")[0][0]["id"] == "s"
    w.close()


def test_map_requests_run_before_overview_rows(ex):
    w = LeafXWidget(ex, methods=METHODS)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "overview", "method": "grad", "params": {}}, [])
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
    for k, tok in enumerate(ex.tokens):
        peak_bin = int(ex.words[tok.word].peak_s / ex.duration_s * n_bins)
        assert abs(int(rows[k].argmax()) - peak_bin) <= 2
    np.testing.assert_array_equal(rows, widget.overview("base"))
    # a second view gets the finished overview in one piece
    widget._on_custom_msg(widget, {"type": "overview", "method": "base", "params": {}}, [])
    assert rec.of("overview")[-1][0]["n_rows"] == len(ex.tokens)


def test_get_map_and_map_key(widget, ex):
    m = widget.get_map(1, "causal", tau=2.0)
    assert m.dtype == np.float32 and m.shape == (ex.tokens[1].n_frames,)
    assert map_key(3, "base", {"tau": 1.0, "depth": "full"}) == "3|base|depth=full|tau=1"
    assert map_key(3, "base", {"tau": 0.5, "depth": "one"}) == "3|base|depth=one|tau=0.5"
    assert map_key(3, "ig", {}) == "3|ig|"


def test_synchronous_mode(ex):
    w = LeafXWidget(ex, methods=METHODS, background=False)
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "map", "id": "x", "key": "k", "token": 0, "method": "grad", "params": {}}, [])
    assert rec.of("map")[0][0]["id"] == "x"


# ---- save_html ----------------------------------------------------------------------
def _embedded(html_text):
    m = re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>', html_text, re.S)
    return json.loads(m.group(1))


def test_save_html_is_self_contained_and_escaped(widget, ex, tmp_path):
    widget.compare_variant = "grad"
    path = widget.save_html(tmp_path / "view.html")
    text = path.read_text()
    assert text.startswith("<!doctype html>")
    assert "<b>world</b>" not in text, "transcript must be escaped everywhere"
    assert "&lt;b&gt;world&lt;/b&gt;" in text
    assert "src=" not in text and "href=" not in text.replace('href: url', ''), "no external resources"
    data = _embedded(text)
    assert data["variants"] == ["base", "grad"]
    assert len(data["maps"]) == 2 * len(ex.tokens)
    key = map_key(1, "grad", {"tau": 1.0, "depth": "full"})
    arr = np.frombuffer(__import__("base64").b64decode(data["maps"][key]["b64"]), np.float32)
    np.testing.assert_allclose(arr, ex.map(1, "grad", tau=1.0, depth="full"))
    assert data["meta"]["words"][1]["text"] == "<b>world</b>"
    assert data["audio"]["total"] == ex.audio.size
    assert data["overview"]["n_tokens"] == len(ex.tokens)
    assert "LeafX.mount" in text and "function" in text  # bundle inlined


def test_save_html_explicit_variants(widget, tmp_path):
    data = _embedded(widget.save_html(tmp_path / "v.html", variants=["raa_last"]).read_text())
    assert data["variants"] == ["raa_last"] and data["state"]["variant"] == "raa_last"
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
