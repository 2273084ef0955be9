"""The widget on a recording still being decoded (``explain(..., wait=False)``): it opens before any
window is decoded, its worker decodes window by window and sends each window's items, map requests
come first, closing stops the decoding. Real tiny.en on 75 s of LibriVox speech (three windows)."""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import pytest
import soundfile
import traitlets

import leafx_widgets as lw
from leafx_widgets.methods import DEFAULT_METHOD
from leafx_widgets.widget import LeafXWidget, protocol

SR = 16000


class Recorder:
    """What the widget sends, in order (from the kernel thread and the worker), with a wait."""

    def __init__(self, widget):
        self.sent = []
        self.cond = threading.Condition()

        def send(content, buffers=None):
            with self.cond:
                self.sent.append((content, buffers or []))
                self.cond.notify_all()

        widget.send = send

    def of(self, kind):
        with self.cond:
            return [c for c, _ in self.sent if c["type"] == kind]

    def wait_for(self, test, timeout=120.0):
        with self.cond:
            assert self.cond.wait_for(lambda: test(self), timeout), f"not sent within {timeout} s"


def windows_sent(rec):
    return [m for m in rec.of("tokens") if m["tokens"]]


@pytest.fixture(scope="module")
def audio75(long_audio):
    return long_audio[: 75 * SR]


@pytest.fixture(scope="module")
def reference(model, audio75):
    return lw.explain(model, audio75, sample_rate=SR, progress=False)


@pytest.fixture
def incomplete(model, audio75):
    return lw.explain(model, audio75, sample_rate=SR, wait=False)


def assert_same(ex, ref):
    assert ex.complete and ex.text == ref.text
    assert [(t.id, t.window, t.start_frame, t.segment) for t in ex.tokens] == \
           [(t.id, t.window, t.start_frame, t.segment) for t in ref.tokens]
    assert [(s.start, s.end, s.text) for s in ex.segments] == [(s.start, s.end, s.text) for s in ref.segments]


def test_the_constructor_decodes_nothing(incomplete):
    ex = incomplete
    with ex._lock:  # the worker cannot decode meanwhile; the constructor (same thread) could
        w = LeafXWidget(ex)
        try:
            assert ex.windows == [] and ex.tokens == [] and len(ex._cache) == 0  # no window, no map
            meta = w._meta
            assert meta["complete"] is False and meta["decoded_s"] == 0.0
            assert meta["tokens"] == meta["words"] == meta["segments"] == [] and meta["text"] == ""
            # the waveform and spectrogram need nothing decoded
            payload, notes = protocol.audio_payload(ex)
            assert notes == [] and payload["n_cols"] == 2 * ex.n_frames and payload["pcm"].size == ex.audio.size
            assert ex.windows == []
            # selected_token accepts the tokens that exist: none yet
            with pytest.raises(traitlets.TraitError, match="out of range"):
                w.selected_token = 5
        except BaseException:
            w.close()
            raise
    try:
        w.wait_decoded(timeout=300, progress=False)
        w.selected_token = len(ex.tokens) - 1  # every token exists now
    finally:
        w.close()


def test_windows_arrive_in_order_and_maps_come_first(incomplete, reference):
    ex = incomplete
    w = LeafXWidget(ex)
    rec = Recorder(w)
    try:
        w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
        w._on_custom_msg(w, {"type": "overview", "method": DEFAULT_METHOD, "params": {}}, [])
        # the user clicks a token of the first window while the next ones are decoded
        rec.wait_for(lambda r: windows_sent(r))
        assert not ex.complete
        before = len(windows_sent(rec))
        w._on_custom_msg(w, {"type": "map", "id": "r1", "key": "k1", "token": 3, "method": "base",
                             "params": {"tau": 1.0, "depth": "full"}, "selected": 3}, [])
        rec.wait_for(lambda r: r.of("map") or r.of("error"))
        assert rec.of("error") == []
        # answered after the window being decoded at most, not after the whole recording
        assert len(windows_sent(rec)) <= before + 1 and not rec.of("tokens")[-1]["complete"]
        seen = []
        w.wait_decoded(timeout=300, progress=lambda done, total: seen.append((done, total)))
        w.wait_idle(300)
    finally:
        w.close()
    assert_same(ex, reference)
    reply = rec.of("map")[0]
    assert reply["token"] == 3 and reply["ids"] == ["r1"] and reply["start_frame"] == ex.tokens[3].start_frame

    # the page's view of it: every message starts where the previous one ended (the first ones,
    # sent before any window was done, are empty), one window each, with the progress
    messages = rec.of("tokens")
    tokens, words, segments, progress = [], [], [], []
    for m in messages:
        assert (m["token0"], m["word0"], m["segment0"]) == (len(tokens), len(words), len(segments))
        if m["tokens"]:
            assert len({ex.tokens[t["index"]].window for t in m["tokens"]}) == 1
        tokens += m["tokens"]
        words += m["words"]
        segments += m["segments"]
        progress.append(m["decoded_s"])
        assert m["duration_s"] == pytest.approx(75.0) and m["stopped"] is False
    assert len(windows_sent(rec)) == len([win for win in ex.windows if win.tokens]) >= 3
    assert progress == sorted(progress) and progress[-1] == pytest.approx(75.0)
    assert [m["complete"] for m in messages] == [False] * (len(messages) - 1) + [True]
    assert [t["id"] for t in tokens] == [t.id for t in reference.tokens]
    assert [(x["text"], x["tokens"], x["peak_s"]) for x in words] == \
           [(x.text, x.tokens, x.peak_s) for x in reference.words]
    assert [x["text"] for x in segments] == [s.text for s in reference.segments]
    json.dumps(messages)

    # the overview followed the decoding: its rows, window by window, are the finished overview's
    rows = np.zeros((len(ex.tokens), w.overview_bins()), np.uint8)
    replies = [(c, b) for c, b in rec.sent if c["type"] == "overview"]
    assert len({c["n_tokens"] for c, _ in replies}) >= 3  # it grew
    for c, b in replies:
        rows[c["row0"]: c["row0"] + c["n_rows"]] = np.frombuffer(b[0], np.uint8).reshape(c["n_rows"], -1)
    assert replies[-1][0]["n_tokens"] == len(ex.tokens)
    assert seen[-1] == (pytest.approx(75.0), pytest.approx(75.0))  # wait_decoded's progress
    np.testing.assert_array_equal(rows, LeafXWidget(ex, background=False).overview())


def test_closing_stops_the_decoding(incomplete, reference):
    ex = incomplete
    w = LeafXWidget(ex)
    rec = Recorder(w)
    rec.wait_for(lambda r: windows_sent(r))
    t0 = time.perf_counter()
    w.close()  # the next window is being decoded now
    assert w._worker.stop(join_timeout=30)
    stop_s = time.perf_counter() - t0
    # the window in progress was stopped, not finished
    assert len(ex.windows) == 1 and not ex.complete, stop_s
    assert len(windows_sent(rec)) == 1
    # and the explanation goes on from there, as if never stopped
    ex.decode_all(progress=False)
    assert [win.index for win in ex.windows] == list(range(len(ex.windows)))
    assert_same(ex, reference)


def test_save_html_waits_for_decoding(incomplete, reference, tmp_path):
    w = LeafXWidget(incomplete)
    try:
        assert not incomplete.complete
        path = w.save_html(tmp_path / "long.html", methods=[DEFAULT_METHOD])
    finally:
        w.close()
    data = json.loads(re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>',
                                path.read_text(), re.S).group(1))
    assert data["meta"]["complete"] is True and len(data["meta"]["tokens"]) == len(reference.tokens)
    assert data["meta"]["text"] == reference.text and len(data["maps"]) == len(reference.tokens)


def test_without_a_worker_the_constructor_decodes(model, sample_explanation):
    ex = lw.explain(model, lw.sample_path(), wait=False)
    w = LeafXWidget(ex, background=False)
    assert ex.complete and w._meta["complete"] is True
    assert [t["text"] for t in w._meta["tokens"]] == [t.text for t in sample_explanation.tokens]


def test_show_returns_at_once_and_quietly(model, audio75, tmp_path, capfd):
    path = tmp_path / "long.wav"
    soundfile.write(path, audio75, SR)
    capfd.readouterr()
    w = lw.show(str(path), model=model)
    try:
        assert w._meta["complete"] is False and w._meta["duration_s"] == pytest.approx(75.0)
        out, err = capfd.readouterr()
        assert out == "" and err == ""
    finally:
        w.close()


def test_a_view_opened_later_gets_everything_at_once(incomplete):
    ex = incomplete
    w = LeafXWidget(ex)
    try:
        w.wait_decoded(timeout=300, progress=False)
        rec = Recorder(w)
        w._on_custom_msg(w, {"type": "init", "stream": "later"}, [])
        w._on_custom_msg(w, {"type": "transcript"}, [])  # a view that missed a window asks again
    finally:
        w.close()
    kinds = [c["type"] for c, _ in rec.sent]
    assert kinds.index("peaks") < kinds.index("tokens") < kinds.index("audio")  # before the PCM
    for m in rec.of("tokens"):
        assert m["token0"] == m["word0"] == m["segment0"] == 0 and m["complete"] is True
        assert [t["id"] for t in m["tokens"]] == [t.id for t in ex.tokens]
        assert len(m["words"]) == len(ex.words) and len(m["segments"]) == len(ex.segments)


def test_a_failing_window_stops_decoding_with_a_note(incomplete, monkeypatch):
    ex = incomplete
    decode_next, calls = ex.decode_next, []

    def fails_second_time():
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("the window could not be decoded")
        return decode_next()

    monkeypatch.setattr(ex, "decode_next", fails_second_time)
    w = LeafXWidget(ex)
    rec = Recorder(w)
    try:
        with pytest.raises(RuntimeError, match="decoding stopped at 2.*could not be decoded"):
            w.wait_decoded(timeout=300, progress=False)
        w.wait_idle(60)  # the decode job ended: no retry loop
    finally:
        w.close()
    assert len(calls) == 2 and len(ex.windows) == 1
    assert "could not be decoded" in rec.of("note")[-1]["message"]
    last = rec.of("tokens")[-1]
    assert last["stopped"] is True and last["complete"] is False and last["tokens"] == []


def test_the_worker_puts_decoding_after_the_user_and_before_slow_overviews():
    from leafx_widgets.widget.worker import Job, Worker

    w = Worker(selected=7)
    jobs = {name: Job(lane, lambda job: False, token=token) for name, lane, token in
            [("slow_overview", "overview", None), ("decode", "decode", None), ("fast_overview", "overview", None),
             ("prefetch", "map", 8), ("selected", "map", 7), ("call", "call", None)]}
    jobs["fast_overview"].cheap = True
    for seq, job in enumerate(jobs.values()):
        job.seq = seq
    order = sorted(jobs, key=lambda name: w._rank(jobs[name]))
    assert order == ["call", "selected", "prefetch", "fast_overview", "decode", "slow_overview"]
