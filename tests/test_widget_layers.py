"""The layers pane's protocol: the selected token's logit lens and patching lane asked for by the page,
computed on the worker like the maps (merged, cached, dropped when the user moves on, cancelled),
checked requests answered with errors, and the results in the HTML export.

A stand-in Explanation (tests/widget_fakes.py) keeps the timings exact; the real engine draws the pane
end to end in tests/e2e/test_widget_layers_e2e.py and in test_real_engine_lens_and_patching below."""

from __future__ import annotations

import json
import re
import time

import pytest
from widget_fakes import FAKE_LAYERS, METHODS, FakeExplanation, Recorder, hold, page_request, wait_for

from leafx_widgets.widget import LeafXWidget
from leafx_widgets.widget.layers import layers_key


@pytest.fixture
def fake():  # ``w``, a widget on it: tests/conftest.py
    return FakeExplanation(words=tuple(f"w{i}" for i in range(8)), slow_s=0.3, layers=True)


_n = iter(range(10**9))


def ask(w, kind, token, selected=None, **extra):
    return page_request(w, {"type": kind, "id": f"{kind}-{token}-{next(_n)}", "token": token, **extra}, selected)


def test_meta_says_what_the_model_supports(w):
    assert w._meta["layers"]["lens"] is True and w._meta["layers"]["patching"] is True
    assert w._meta["layers"]["corrupt"] == ["noise", "silence"]
    plain = LeafXWidget(FakeExplanation(), methods=METHODS)  # no model: nothing to look inside
    try:
        assert plain._meta["layers"]["lens"] is False and plain._meta["layers"]["patching"] is False
    finally:
        plain.close()


def test_lens_reply_carries_the_engines_json_and_its_key(w, fake):
    rec = Recorder(w)
    rid = ask(w, "lens", 3, key="3|lens")
    w.wait_idle()
    (reply,) = rec.of("lens")
    assert reply["ids"] == [rid] and reply["key"] == "3|lens" and reply["token"] == 3
    lens = reply["lens"]
    assert lens["layers"] == list(FAKE_LAYERS) and lens["rank"][-1] == 0
    assert lens["top"][-1][0][0] == fake.tokens[3].text
    json.dumps(reply, allow_nan=False)  # what the comm sends must parse in the page


def test_patching_reply_spans_the_tokens_window_in_seconds(w, fake):
    rec = Recorder(w)
    ask(w, "patching", 2, corrupt="noise")
    w.wait_idle()
    (reply,) = rec.of("patching")
    p = reply["patching"]
    assert reply["key"] == layers_key("patching", 2, "noise") == "2|patching|noise"
    assert reply["corrupt"] == "noise" and len(p["effect"]) == len(p["start_s"]) == len(p["end_s"]) == 30
    tok = fake.tokens[2]
    assert p["start_s"][0] == pytest.approx(tok.start_frame * fake.frame_s)
    assert p["end_s"][-1] == pytest.approx((tok.start_frame + tok.n_frames) * fake.frame_s)


def test_without_a_worker_the_reply_comes_inside_the_handler(fake):
    w = LeafXWidget(fake, methods=METHODS, background=False)
    try:
        rec = Recorder(w)
        ask(w, "patching", 5, corrupt="noise")
        assert [c["key"] for c in rec.of("patching")] == ["5|patching|noise"]
    finally:
        w.close()


def test_results_are_cached_per_token_and_answered_at_once(w, fake):
    rec = Recorder(w)
    ask(w, "patching", 1, corrupt="noise")
    ask(w, "lens", 1)
    w.wait_idle()
    gate = hold(w)  # a busy worker: a cached result must not wait behind it
    try:
        ask(w, "patching", 1, corrupt="noise")
        ask(w, "lens", 1)
        assert [c["type"] for c in rec.sent if c["type"] in ("lens", "patching")][2:] == ["patching", "lens"]
    finally:
        gate.set()
    w.wait_idle()
    assert sorted(c[1] for c in fake.calls) == ["lens", "patching"], "computed once each"
    ask(w, "patching", 1, corrupt="silence")  # another corruption is another result
    w.wait_idle()
    assert [c[1:] for c in fake.calls][-1] == ("patching", (("corrupt", "silence"),))


def test_identical_requests_are_merged_into_one_computation(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    a = ask(w, "patching", 4, corrupt="noise", key="view-a")
    b = ask(w, "patching", 4, corrupt="noise", key="view-b")
    gate.set()
    w.wait_idle()
    assert len([c for c in fake.calls if c[1] == "patching"]) == 1
    assert sorted((c["key"], tuple(c["ids"])) for c in rec.of("patching")) == [("view-a", (a,)), ("view-b", (b,))]


def test_the_selected_tokens_newest_request_runs_first(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    ask(w, "map", 5, method="base", key="5|base|tau=1|depth=full", selected=5)
    ask(w, "lens", 5)
    ask(w, "patching", 5, corrupt="noise")
    gate.set()
    w.wait_idle()
    assert [c["type"] for c in rec.sent if c["type"] in ("map", "lens", "patching")] == ["patching", "lens", "map"]


def test_moving_on_drops_the_old_tokens_requests_and_tells_the_page(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    old = ask(w, "patching", 1, corrupt="noise")
    new = ask(w, "lens", 6)  # the user clicked another token
    assert rec.answered() == {old: ["cancelled"]} and rec.of("cancelled")[0]["reason"] == "deselected"
    gate.set()
    w.wait_idle()
    assert rec.answered() == {old: ["cancelled"], new: ["lens"]}
    assert [c[:2] for c in fake.calls] == [(6, "lens")]


def test_a_running_patching_stops_when_the_selection_trait_moves(w, fake):
    fake.slow_s, fake.steps = 5.0, 100  # 50 ms per layer call
    rec = Recorder(w)
    rid = ask(w, "patching", 2, corrupt="noise")
    wait_for(lambda: w._worker.running is not None)
    t0 = time.perf_counter()
    w.selected_token = 5
    wait_for(lambda: rid in rec.answered())
    assert time.perf_counter() - t0 < 1.0, "stopped at the next layer, not after 5 s"
    assert rec.answered() == {rid: ["cancelled"]} and fake.finished == []


def test_the_cancel_control_stops_it_too(w, fake):
    fake.slow_s, fake.steps = 5.0, 100
    rec = Recorder(w)
    rid = ask(w, "patching", 3, corrupt="noise")
    wait_for(lambda: w._worker.running is not None)
    w._on_custom_msg(w, {"type": "cancel", "ids": [rid]}, [])
    wait_for(lambda: rid in rec.answered())
    assert rec.of("cancelled")[0]["reason"] == "user" and fake.finished == []
    fake.slow_s, fake.steps = 0.0, 1
    ask(w, "patching", 3, corrupt="noise")  # asked again, it computes (nothing half-done was cached)
    w.wait_idle()
    assert len(rec.of("patching")) == 1


@pytest.mark.parametrize("content, message", [
    ({"token": 99}, "token 99 is out of range: this explanation has 8 tokens"),
    ({"token": -1}, "token -1 is out of range"),
    ({"token": "3"}, "token must be an integer token index, got '3'"),
    ({"token": 2, "corrupt": "pink"}, "corrupt must be one of ['noise', 'silence'], got 'pink'"),
    ({"token": 2, "id": 7}, "id must be a string, got 7"),
])
def test_bad_requests_get_an_error_reply_and_the_widget_lives_on(w, content, message):
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "patching", "id": "bad", **content}, [])
    (err,) = rec.of("error")
    assert message in err["message"] and err["message"].startswith("ValueError: ")
    ask(w, "lens", 0)
    w.wait_idle()
    assert len(rec.of("lens")) == 1, "the next request is still answered"


def test_a_model_without_the_capability_gets_a_plain_error():
    ex = FakeExplanation()  # no model
    w = LeafXWidget(ex, methods=METHODS)
    try:
        rec = Recorder(w)
        ask(w, "lens", 0)
        ask(w, "patching", 0)
        assert [e["message"] for e in rec.of("error")] == [
            "ValueError: fake-tiny does not support the logit lens",
            "ValueError: fake-tiny does not support activation patching"]
        with pytest.raises(ValueError, match="does not support the logit lens"):
            w.get_lens(0)
    finally:
        w.close()


def test_an_engine_failure_is_replied_as_an_error(w, fake, monkeypatch):
    def broken(token):
        raise RuntimeError("lens exploded")

    monkeypatch.setattr(fake, "logit_lens", broken)
    rec = Recorder(w)
    rid = ask(w, "lens", 2)
    w.wait_idle()
    assert rec.answered() == {rid: ["error"]} and "lens exploded" in rec.of("error")[0]["message"]


def test_non_finite_effects_are_sent_as_null(w):
    rec = Recorder(w)
    ask(w, "patching", 0, corrupt="silence")  # the fake's 0/0 effects
    w.wait_idle()
    (reply,) = rec.of("patching")
    assert reply["patching"]["effect"] == [None] * 30
    json.dumps(reply, allow_nan=False)


def test_python_api_blocks_and_shares_the_cache(w, fake):
    lens = w.get_lens(2)
    assert lens["rank"][-1] == 0 and w.get_patching(2)["over"] == "time"
    rec = Recorder(w)
    ask(w, "lens", 2)
    assert len(rec.of("lens")) == 1 and [c[1] for c in fake.calls] == ["lens", "patching"]
    with pytest.raises(ValueError, match="corrupt must be one of"):
        w.get_patching(2, corrupt="pink")


def _embedded(html: str) -> dict:
    return json.loads(re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>',
                                html, re.S).group(1))


def test_save_html_embeds_computed_lenses_and_the_selected_tokens(w, fake, tmp_path):
    w.get_lens(1)
    w.get_patching(1, "silence")
    w.selected_token = 4
    w.show_layers = True
    data = _embedded(w.save_html(tmp_path / "out.html", methods=["base"]).read_text())
    assert sorted(data["layers"]) == ["1|lens", "1|patching|silence", "4|lens", "4|patching|noise"]
    assert data["layers"]["4|lens"]["layers"] == list(FAKE_LAYERS)
    assert data["state"]["show_layers"] is True and data["meta"]["layers"]["patching"] is True


def test_save_html_with_the_pane_closed_adds_only_the_selected_tokens_lens(w, fake, tmp_path):
    w.selected_token = 2
    data = _embedded(w.save_html(tmp_path / "out.html", methods=["base"]).read_text())
    assert sorted(data["layers"]) == ["2|lens"] and data["state"]["show_layers"] is False
    assert not [c for c in fake.calls if c[1] == "patching"], "no patching computed for a closed pane"


def test_save_html_without_the_capability_embeds_none(tmp_path):
    w = LeafXWidget(FakeExplanation(), methods=METHODS)
    try:
        data = _embedded(w.save_html(tmp_path / "out.html", methods=["base"]).read_text())
        assert data["layers"] == {} and data["meta"]["layers"]["lens"] is False
    finally:
        w.close()


def test_real_engine_lens_and_patching(sample_explanation):
    """On tiny.en: the lens reply is the engine's own JSON (the last layer ranks the emitted token first)
    and the model says what it supports; patching's 30 decoder passes are drawn in the e2e test."""
    w = LeafXWidget(sample_explanation)
    try:
        assert w._meta["layers"]["lens"] is True and w._meta["layers"]["patching"] is True
        rec = Recorder(w)
        ask(w, "lens", 3)
        w.wait_idle()
        (reply,) = rec.of("lens")
        assert reply["lens"] == json.loads(json.dumps(sample_explanation.logit_lens(3).to_json()))
        assert reply["lens"]["rank"][-1] == 0 and len(reply["lens"]["layers"]) == 4
    finally:
        w.close()
