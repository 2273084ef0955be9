"""The widget follows the user: which map request runs next, what is dropped, merged or stopped,
the overview computed once, the cancel control, progress notes and checked parameters.

A stand-in Explanation (tests/widget_fakes.py) keeps the timings exact; the real model's
cancellation is in tests/test_widget_load.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from widget_fakes import METHODS, FakeExplanation, Recorder, hold, page_request, wait_for

from leafx_widgets.widget import LeafXWidget


@pytest.fixture
def fake():  # ``w``, a widget on it: tests/conftest.py
    return FakeExplanation(words=tuple(f"w{i}" for i in range(12)), slow_s=0.5)


def ask(w, token, method="steps", selected=None, id=None, **extra):
    content = {"type": "map", "id": id or f"{token}-{method}-{time.perf_counter_ns()}",
               "key": f"{token}|{method}|", "token": token, "method": method, "params": {}, **extra}
    return page_request(w, content, selected)


def test_the_selected_tokens_newest_request_goes_first(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    w._on_custom_msg(w, {"type": "overview", "method": "base", "params": {}}, [])
    ask(w, 5, "grad", selected=5)
    ask(w, 4, "base", selected=5)  # prefetches of the neighbours
    ask(w, 6, "base", selected=5)
    ask(w, 5, "causal", selected=5)  # the compare variant, asked last
    gate.set()
    w.wait_idle()
    order = [(c["token"], c["method"]) for c in rec.of("map")]
    assert order == [(5, "causal"), (5, "grad"), (6, "base"), (4, "base")]
    first_row = next(i for i, c in enumerate(rec.sent) if c["type"] == "overview")
    assert first_row > max(i for i, c in enumerate(rec.sent) if c["type"] == "map"), "maps before overview rows"


def test_requests_for_a_selection_the_user_left_are_dropped_and_the_page_told(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    ids = [ask(w, k, "grad", selected=k) for k in range(6)]  # clicking through six tokens
    assert [c["ids"] for c in rec.of("cancelled")] == [[i] for i in ids[:5]], "told at once, before any start"
    assert {c["reason"] for c in rec.of("cancelled")} == {"deselected"}
    gate.set()
    w.wait_idle()
    assert [c[:2] for c in fake.calls] == [(5, "grad")], "only the selected token's map was computed"
    assert rec.answered() == {**{i: ["cancelled"] for i in ids[:5]}, ids[5]: ["map"]}


def test_the_selection_trait_drops_requests_too(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    first = ask(w, 2, "grad", selected=2)
    w.selected_token = 7  # e.g. set from Python, or the page's debounced write-back
    assert rec.answered() == {first: ["cancelled"]}
    gate.set()
    w.wait_idle()
    assert fake.calls == []


def test_a_running_map_stops_when_the_user_moves_on(w, fake):
    fake.slow_s, fake.steps = 5.0, 100  # 50 ms per layer call
    rec = Recorder(w)
    old = ask(w, 1, selected=1)
    wait_for(lambda: fake.calls)
    t0 = time.perf_counter()
    new = ask(w, 2, selected=2)
    wait_for(lambda: rec.of("cancelled"))
    assert time.perf_counter() - t0 < 1.0, "stopped at its next layer, not after 5 s"
    (c,) = rec.of("cancelled")
    assert c["ids"] == [old] and c["reason"] == "deselected"
    fake.slow_s = 0.2
    w.wait_idle()
    assert fake.finished == [2] and rec.answered() == {old: ["cancelled"], new: ["map"]}


def test_identical_requests_are_merged_into_one_computation(w, fake):
    rec = Recorder(w)
    gate = hold(w)
    ids = [ask(w, 3, "grad", selected=3, id=f"r{i}") for i in range(20_000)]
    assert len(w._worker.queued) == 1
    gate.set()
    w.wait_idle()
    assert len(fake.calls) == 1
    (reply, buffers), = rec.with_buffers("map")
    assert reply["ids"] == ids and reply["id"] == "r0"
    np.testing.assert_array_equal(np.frombuffer(buffers[0], np.float32), fake.map(3, "grad"))
    # two views with their own keys for the same map: one computation, one reply per key
    fake.calls.clear()
    gate = hold(w)
    ask(w, 4, "grad", selected=3, id="a")
    w._on_custom_msg(w, {"type": "map", "id": "b", "key": "view2", "token": 4, "method": "grad",
                         "selected": 3}, [])
    gate.set()
    w.wait_idle()
    assert len(fake.calls) == 1
    assert sorted((c["key"], c["ids"]) for c in rec.of("map", token=4)) == [("4|grad|", ["a"]), ("view2", ["b"])]


def test_the_overview_is_computed_once_per_key(w, fake):
    rec = Recorder(w)
    n = len(fake.tokens)
    gate = hold(w)
    for _ in range(50):
        w._on_custom_msg(w, {"type": "overview", "method": "grad", "params": {}}, [])
    gate.set()
    w.wait_idle()
    assert len(fake.calls) == n, "one map per token, not one per request"
    chunks = rec.with_buffers("overview")
    assert sum(c["n_rows"] for c, _ in chunks) == n, "the rows went out once"
    rows = np.zeros((n, chunks[0][0]["n_bins"]), np.uint8)
    for c, b in chunks:
        rows[c["row0"]:c["row0"] + c["n_rows"]] = np.frombuffer(b[0], np.uint8).reshape(c["n_rows"], -1)
    np.testing.assert_array_equal(rows, w.overview("grad"))
    # a view asking later gets the finished rows in one message, computed by nobody again
    w._on_custom_msg(w, {"type": "overview", "method": "grad", "params": {}}, [])
    assert len(fake.calls) == n and rec.of("overview")[-1]["n_rows"] == n


def test_a_view_joining_a_running_overview_gets_the_rows_already_sent(w, fake):
    fake.slow_s = 0.08  # "grad" sleeps this long per token: rows go out in several chunks
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "overview", "method": "grad", "params": {}}, [])
    wait_for(lambda: rec.of("overview"))
    w._on_custom_msg(w, {"type": "overview", "method": "grad", "params": {}}, [])
    w.wait_idle()
    n = len(fake.tokens)
    assert len(fake.calls) == n
    covered = np.zeros(n, int)
    for c in rec.of("overview"):
        covered[c["row0"]:c["row0"] + c["n_rows"]] += 1
    assert covered.min() >= 1 and covered.max() <= 2, "every row reached the second view, none thrice"


def test_cancel_from_the_page_stops_the_computation(w, fake):
    fake.slow_s, fake.steps = 5.0, 100
    rec = Recorder(w)
    running = ask(w, 1, selected=1, id="run")
    wait_for(lambda: rec.of("progress"))
    (p,) = rec.of("progress")
    assert p["ids"] == ["run"] and "stepwise" in p["note"] and "token 1" in p["note"]
    t0 = time.perf_counter()
    w._on_custom_msg(w, {"type": "cancel", "ids": ["run"]}, [])
    w.wait_idle(timeout=2)
    assert time.perf_counter() - t0 < 1.0
    assert fake.finished == [] and rec.answered() == {running: ["cancelled"]}
    assert rec.of("cancelled")[0]["reason"] == "user"
    # cancelling one of two merged requests leaves the other's computation running
    fake.slow_s = 0.3
    gate = hold(w)
    ask(w, 2, selected=2, id="a")
    ask(w, 2, selected=2, id="b")
    w._on_custom_msg(w, {"type": "cancel", "ids": ["a"]}, [])
    gate.set()
    w.wait_idle()
    assert fake.finished == [2] and rec.answered()["a"] == ["cancelled"] and rec.answered()["b"] == ["map"]
    # a queued request cancelled never starts
    gate = hold(w)
    ask(w, 3, selected=3, id="q")
    w._on_custom_msg(w, {"type": "cancel"}, [])  # no ids: everything this widget computes for pages
    gate.set()
    w.wait_idle()
    assert fake.finished == [2] and rec.answered()["q"] == ["cancelled"]


def test_progress_notes_report_the_last_time_taken(w, fake):
    fake.slow_s = 0.3
    rec = Recorder(w)
    ask(w, 1, selected=1)
    w.wait_idle()
    ask(w, 2, selected=2)
    w.wait_idle()
    first, second = rec.of("progress")
    assert first["expected_s"] is None and 0.25 < second["expected_s"] < 2.0
    assert "token 2" in second["note"]
    ask(w, 3, "base", selected=3)
    w.wait_idle()
    assert len(rec.of("progress")) == 2, "fast methods send no progress"


def test_close_stops_the_running_computation(fake):
    fake.slow_s, fake.steps = 20.0, 400
    w = LeafXWidget(fake, methods=METHODS)
    Recorder(w)
    ask(w, 1, selected=1)
    wait_for(lambda: fake.calls)
    w.close()
    t0 = time.perf_counter()
    w._worker._thread.join(5)
    assert not w._worker._thread.is_alive() and time.perf_counter() - t0 < 1.0
    assert fake.finished == []
    with pytest.raises(RuntimeError, match="closed"):
        w.get_map(0, "base")


@pytest.mark.parametrize("change, match", [
    ({"params": {"tau": "inf"}}, "tau must be a number, got 'inf'"),
    ({"params": {"tau": "1.5"}}, "tau must be a number"),
    ({"params": {"tau": float("inf")}}, "tau must be finite and positive, got inf"),
    ({"params": {"tau": float("nan")}}, "tau must be finite and positive"),
    ({"params": {"tau": 0}}, "tau must be finite and positive"),
    ({"params": {"tau": True}}, "tau must be a number"),
    ({"params": {"tau": [1]}}, "tau must be a number"),
    ({"params": {"depth": "half"}}, "depth must be one of"),
    ({"params": {"depth": ["full"]}}, "depth must be one of"),
    ({"params": [1, 2]}, "params must be an object"),
    ({"token": True}, "token must be an integer token index, got True"),
    ({"token": 1.0}, "token must be an integer token index"),
    ({"token": "3"}, "token must be an integer token index, got '3'"),
    ({"token": -1}, "token -1 is out of range: this explanation has"),
    ({"token": 10**9}, "token 1000000000 is out of range"),
    ({"selected": 10**9}, "selected 1000000000 is out of range"),
    ({"method": ["base"]}, "unknown method"),
    ({"method": None}, "unknown method"),
    ({"method": "nope"}, "unknown method 'nope'"),
    ({"id": {"x": 1}}, "id must be a string"),
])
def test_page_parameters_are_checked(w, fake, change, match):
    rec = Recorder(w)
    content = {"type": "map", "id": "bad", "key": "k", "token": 1, "method": "base", "params": {}, **change}
    w._on_custom_msg(w, content, [])
    w.wait_idle()
    (err,) = rec.of("error")
    assert err["id"] == change.get("id", "bad")
    assert err["message"].startswith("ValueError: ") and match in err["message"]
    assert rec.of("map") == [] and fake.calls == []
    ask(w, 1, "base", selected=1)  # the widget still answers
    w.wait_idle()
    assert len(rec.of("map")) == 1


def test_cancel_with_bad_ids_is_an_error_reply(w):
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "cancel", "ids": "all"}, [])
    assert "cancel ids must be a list" in rec.of("error")[0]["message"]


def test_tau_trait_must_be_finite(w):
    import traitlets

    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(traitlets.TraitError, match="tau must be finite and positive"):
            w.tau = bad
