"""The contrast lane's protocol: the selected token's word against a typed foil, computed on the worker like
the maps (merged, cached per token and foil, dropped when the user moves on, cancelled), bad requests answered
with errors, the results in the HTML export.

A stand-in Explanation (tests/widget_fakes.py) keeps the timings exact; the real engine answers in
test_real_engine_contrast_favours_the_decoded_word below and draws the lane in
tests/e2e/test_widget_contrast_e2e.py."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from widget_fakes import METHODS, FakeExplanation, Recorder, hold, page_request, wait_for

from leafx_widgets.widget import LeafXWidget
from leafx_widgets.widget.contrast import contrast_key


@pytest.fixture
def fake():  # ``w``, a widget on it: tests/conftest.py
    return FakeExplanation(words=tuple(f"w{i}" for i in range(8)), slow_s=0.3, layers=True)


_n = iter(range(10**9))


def ask(w, token, foil, selected=None, **extra):
    content = {"type": "contrast", "id": f"c-{token}-{next(_n)}", "token": token, "foil": foil, **extra}
    return page_request(w, content, selected)


def contrasts(fake):
    return [c for c in fake.calls if c[1] == "contrast"]


def test_meta_says_whether_the_model_can_contrast(w):
    assert w._meta["contrast"] is True
    plain = LeafXWidget(FakeExplanation(), methods=METHODS)  # read from JSON: no model to force words through
    try:
        assert plain._meta["contrast"] is False
    finally:
        plain.close()


def test_reply_carries_the_signed_map_in_float32_and_the_numbers(w, fake):
    rec = Recorder(w)
    rid = ask(w, 3, "hearts", key="3|contrast|hearts")
    w.wait_idle()
    (reply,) = rec.of("contrast")
    assert reply["ids"] == [rid] and reply["key"] == "3|contrast|hearts" and reply["token"] == 3
    assert (reply["target"], reply["foil"], reply["delta"]) == ("w3", "hearts", 7.0)
    tok = fake.tokens[3]
    assert reply["start_frame"] == tok.start_frame and reply["n_frames"] == tok.n_frames
    m = rec.map_of(reply)
    assert m.shape == (tok.n_frames,) and m.max() == 1.0 and m.min() == pytest.approx(-0.1)
    assert reply["total"] == pytest.approx(float(m.sum()), rel=1e-5)
    assert abs(reply["peak_s"] - fake.words[3].peak_s) < 0.1, "the frame that most favours the word"
    json.dumps(reply, allow_nan=False)  # what the comm sends must parse in the page


def test_without_a_worker_the_reply_comes_inside_the_handler(fake):
    w = LeafXWidget(fake, methods=METHODS, background=False)
    try:
        rec = Recorder(w)
        ask(w, 5, "clubs")
        assert [c["key"] for c in rec.of("contrast")] == ["5|contrast|clubs"]
    finally:
        w.close()


def test_cached_per_token_and_foil_and_answered_at_once(w, fake):
    rec = Recorder(w)
    ask(w, 1, "hearts")
    w.wait_idle()
    gate = hold(w)  # a busy worker: a cached contrast must not wait behind it
    try:
        ask(w, 1, " hearts. ")  # the same foil, typed with a space and a full stop
        assert [c["key"] for c in rec.of("contrast")] == ["1|contrast|hearts"] * 2
    finally:
        gate.set()
    w.wait_idle()
    assert contrasts(fake) == [(1, "contrast", (("foil", "hearts"),))], "computed once"
    ask(w, 1, "spades")  # another foil is another contrast
    w.wait_idle()
    ask(w, 2, "hearts", selected=2)  # and another token
    w.wait_idle()
    assert [c[0::2] for c in contrasts(fake)][1:] == [(1, (("foil", "spades"),)), (2, (("foil", "hearts"),))]


def test_identical_requests_are_merged_into_one_computation(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    a = ask(w, 4, "hearts", key="view-a")
    b = ask(w, 4, "hearts!", key="view-b")
    gate.set()
    w.wait_idle()
    assert len(contrasts(fake)) == 1
    assert sorted((c["key"], tuple(c["ids"])) for c in rec.of("contrast")) == [("view-a", (a,)), ("view-b", (b,))]


def test_moving_on_drops_the_old_tokens_contrast_and_tells_the_page(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    old = ask(w, 1, "hearts")
    new = ask(w, 6, "hearts")  # the user clicked another token and typed a foil there
    assert rec.answered() == {old: ["cancelled"]} and rec.of("cancelled")[0]["reason"] == "deselected"
    gate.set()
    w.wait_idle()
    assert rec.answered() == {old: ["cancelled"], new: ["contrast"]}
    assert [c[0] for c in contrasts(fake)] == [6]


def test_a_running_contrast_stops_when_the_selection_moves_or_on_cancel(w, fake):
    fake.slow_s, fake.steps = 5.0, 100  # 50 ms per layer call
    rec = Recorder(w)
    rid = ask(w, 2, "hearts")
    wait_for(lambda: w._worker.running is not None)
    t0 = time.perf_counter()
    w.selected_token = 5
    wait_for(lambda: rid in rec.answered())
    assert time.perf_counter() - t0 < 1.0, "stopped at the next layer, not after 5 s"
    assert rec.answered() == {rid: ["cancelled"]} and fake.finished == []
    rid = ask(w, 5, "hearts")
    wait_for(lambda: w._worker.running is not None)
    w._on_custom_msg(w, {"type": "cancel", "ids": [rid]}, [])
    wait_for(lambda: rid in rec.answered())
    assert rec.of("cancelled")[-1]["reason"] == "user" and fake.finished == []
    fake.slow_s, fake.steps = 0.0, 1
    ask(w, 5, "hearts")  # asked again, it computes (nothing half-done was cached)
    w.wait_idle()
    assert len(rec.of("contrast")) == 1


@pytest.mark.parametrize("content, message", [
    ({"token": 2, "foil": ""}, "type a foil: a word to contrast with 'w2'"),
    ({"token": 2, "foil": " ... "}, "type a foil: a word to contrast with 'w2'"),
    ({"token": 2}, "foil must be a word (a string), got None"),
    ({"token": 2, "foil": 5}, "foil must be a word (a string), got 5"),
    ({"token": 2, "foil": "w2"}, "the foil 'w2' is the word the model wrote; type another word"),
    ({"token": 2, "foil": " w2, "}, "the foil 'w2' is the word the model wrote"),
    ({"token": 2, "foil": "x" * 65}, "foil is 65 characters long; type a word (at most 64)"),
    ({"token": 99, "foil": "hearts"}, "token 99 is out of range: this explanation has 8 tokens"),
    ({"token": "3", "foil": "hearts"}, "token must be an integer token index, got '3'"),
    ({"token": 2, "foil": "hearts", "id": 7}, "id must be a string, got 7"),
])
def test_bad_requests_get_an_error_reply_and_the_widget_lives_on(w, fake, content, message):
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "contrast", "id": "bad", **content}, [])
    (err,) = rec.of("error")
    assert message in err["message"] and err["message"].startswith("ValueError: ")
    assert contrasts(fake) == [], "refused before any work"
    ask(w, 0, "hearts")
    w.wait_idle()
    assert len(rec.of("contrast")) == 1, "the next request is still answered"


def test_a_punctuation_token_has_no_word_to_contrast():
    fake = FakeExplanation(words=("ten", "of", "clubs", "."), layers=True)
    w = LeafXWidget(fake, methods=METHODS, background=False)
    try:
        rec = Recorder(w)
        k = fake.words[3].tokens[0]
        ask(w, k, "hearts")
        (err,) = rec.of("error")
        assert err["message"] == f"ValueError: token {k} belongs to '.', which has no letters to contrast; pick a word"
    finally:
        w.close()


def test_a_model_without_forced_text_gradients_gets_a_plain_error():
    w = LeafXWidget(FakeExplanation(), methods=METHODS)  # no model
    try:
        rec = Recorder(w)
        ask(w, 0, "hearts")
        (err,) = rec.of("error")
        assert err["message"].startswith("ValueError: fake-tiny does not support contrastive explanations")
        with pytest.raises(ValueError, match="does not support contrastive explanations"):
            w.get_contrast(0, "hearts")
    finally:
        w.close()


def test_an_engine_failure_is_replied_as_an_error(w, fake, monkeypatch):
    def broken(token, foil):
        raise RuntimeError("contrast exploded")

    monkeypatch.setattr(fake, "contrast", broken)
    rec = Recorder(w)
    rid = ask(w, 2, "hearts")
    w.wait_idle()
    assert rec.answered() == {rid: ["error"]} and "contrast exploded" in rec.of("error")[0]["message"]


def test_non_finite_numbers_are_sent_as_null(w):
    rec = Recorder(w)
    ask(w, 0, "nan")  # the fake's NaN delta
    w.wait_idle()
    (reply,) = rec.of("contrast")
    assert reply["delta"] is None
    json.dumps(reply, allow_nan=False)


def test_python_api_blocks_and_shares_the_cache(w, fake):
    c = w.get_contrast(2, "hearts")
    assert (c.target, c.foil, c.delta) == ("w2", "hearts", 7.0)
    rec = Recorder(w)
    ask(w, 2, "hearts")
    assert len(rec.of("contrast")) == 1 and len(contrasts(fake)) == 1
    with pytest.raises(ValueError, match="is the word the model wrote"):
        w.get_contrast(2, "w2")


def _embedded(html: str) -> dict:
    return json.loads(re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>',
                                html, re.S).group(1))


def test_save_html_embeds_computed_contrasts_and_the_foils_the_page_shows(w, fake, tmp_path):
    w.get_contrast(1, "hearts")
    w.contrast_foils = {"4": "clubs", "2": "w2"}  # the page's foils: 4's is computed now, 2's is refused
    data = _embedded(w.save_html(tmp_path / "out.html", methods=["base"]).read_text())
    assert sorted(data["contrasts"]) == ["1|contrast|hearts", "4|contrast|clubs"]
    c = data["contrasts"]["4|contrast|clubs"]
    assert (c["target"], c["foil"], c["delta"], c["start_frame"]) == ("w4", "clubs", 6.0, fake.tokens[4].start_frame)
    import base64

    m = np.frombuffer(base64.b64decode(c["b64"]), dtype=np.float32)
    assert m.size == c["n_frames"] == fake.tokens[4].n_frames and m.max() == 1.0
    assert data["state"]["contrast_foils"] == {"4": "clubs", "2": "w2"} and data["meta"]["contrast"] is True


def test_switching_takes_contrasts_the_shown_take_and_forgets_the_foils(fake):
    w = LeafXWidget(fake, methods=METHODS, background=False)
    try:
        w.get_contrast(2, "hearts")
        w.contrast_foils = {"2": "hearts"}
        sheep = FakeExplanation(words=("sheep", "ship"), duration_s=1.2, seed=1, layers=True)
        w.add_take(sheep, label="sheep")  # shown at once
        assert w.explanation is sheep and w.contrast_foils == {}, "the last take's foils named its tokens"
        rec = Recorder(w)
        ask(w, 0, "hearts")
        (reply,) = rec.of("contrast")
        assert reply["target"] == "sheep" and contrasts(sheep) and len(contrasts(fake)) == 1
        assert list(w._contrasts.computed()) == ["0|contrast|hearts"], "the new take's own cache"
    finally:
        w.close()


def test_contrast_key_is_the_pages():
    assert contrast_key(3, "hearts") == "3|contrast|hearts"
    assert contrast_key(3, ' "Hearts," ') == "3|contrast|Hearts"  # case is kept: another token to the model


def test_real_engine_contrast_favours_the_decoded_word(sample_explanation):
    """On tiny.en and the sample ("And Mr. John Dashwood had then leisure ..."): the reply is the engine's
    map, and the sound favours the decoded word " John" over an unrelated foil (delta > 0)."""
    ex = sample_explanation
    assert ex.tokens[3].text == " John"
    w = LeafXWidget(ex)
    try:
        assert w._meta["contrast"] is True
        rec = Recorder(w)
        ask(w, 3, "hearts")
        w.wait_idle()
        (reply,) = rec.of("contrast")
        assert (reply["target"], reply["foil"]) == ("John", "hearts")
        assert reply["delta"] > 0 and reply["total"] > 0
        m = rec.map_of(reply)
        c = w.get_contrast(3, "hearts")  # the cached engine result
        np.testing.assert_array_equal(m, c.map)
        assert m.size == ex.tokens[3].n_frames and reply["start_frame"] == ex.tokens[3].start_frame
        assert 0 <= reply["peak_s"] <= ex.duration_s
    finally:
        w.close()
