"""Takes recorded in the page, on the kernel's side: chunks put together and checked, the failures said
in one sentence, each good take explained and shown, takes kept, switched, compared and exported.
The page's half (capture, resampling, chunking) is tested in js/test/record.test.js and end to end in
tests/e2e/test_widget_record_e2e.py."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile
import traitlets

import leafx_widgets as lw
from leafx_widgets.widget import LeafXWidget, record
from leafx_widgets.widget.record import TakeAssembler, TakeError
from leafx_widgets.widget.worker import Cancelled, Worker, call_job
from widget_fakes import METHODS as FAKE_METHODS, FakeExplanation

GOFORWARD = "/usr/share/pocketsphinx/test/data/goforward.raw"  # "go forward ten meters", 16 kHz s16le


@pytest.fixture(scope="module")
def goforward():
    return np.fromfile(GOFORWARD, dtype="<i2").astype(np.float32) / 32768


def espeak(text: str, path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(path), text], check=True)
    samples, rate = soundfile.read(str(path), dtype="float32")
    return lw.load_audio(samples, rate).samples


class Page:
    """Plays the page's part: sends a take in chunks, keeps what the kernel says."""

    def __init__(self, widget):
        self.w, self.sent = widget, []
        widget.send = lambda content, buffers=None: self.sent.append((content, buffers or []))

    def msg(self, content, buffers=()):
        self.w._on_custom_msg(self.w, content, list(buffers))

    def record(self, take, samples, chunk=8000, total=None):
        self.msg({"type": "take_start", "take": take, "sample_rate": 16000, "source_rate": 48000})
        for off in range(0, samples.size, chunk):
            part = np.ascontiguousarray(samples[off:off + chunk], dtype=np.float32)
            self.msg({"type": "take_chunk", "take": take, "offset": off, "n": part.size}, [memoryview(part.tobytes())])
        self.msg({"type": "take_end", "take": take, "total": samples.size if total is None else total})

    def status(self, take):
        return [c for c, _ in self.sent if c["type"] == "take_status" and c["take"] == take]

    def errors(self, take):
        return [c["message"] for c in self.status(take) if c["state"] == "error"]


def chunks_of(samples, size):
    return [(off, [memoryview(np.ascontiguousarray(samples[off:off + size], np.float32).tobytes())])
            for off in range(0, samples.size, size)]


# ---- assembling a take ---------------------------------------------------------------------------
def test_chunks_are_put_together_bit_for_bit(goforward):
    a = TakeAssembler(max_seconds=10)
    a.start("t", 1, 16000)
    for off, bufs in chunks_of(goforward, 3000):
        a.chunk("t", off, min(3000, goforward.size - off), bufs)
    number, samples = a.finish("t", goforward.size)
    assert number == 1 and samples.dtype == np.float32
    assert np.array_equal(samples, goforward)
    assert "t" not in a.open


def test_a_lost_chunk_is_refused():
    a = TakeAssembler()
    x = np.full(4000, 0.1, np.float32)
    a.start("t", 2, 16000)
    (o0, b0), (o1, b1) = chunks_of(x, 2000)
    a.chunk("t", o0, 2000, b0)
    with pytest.raises(TakeError, match="take 2 lost audio: a chunk starts at sample 4000, expected 2000"):
        a.chunk("t", 4000, 2000, b1)
    assert "t" not in a.open and "t" in a.refused


@pytest.mark.parametrize("n, buffers, match", [
    (5, [b"\0" * 8], "says 5 samples but holds 2"),
    (2, [b"\0" * 7], "not whole float32 samples"),
    (2, [], "must carry one buffer"),
])
def test_malformed_chunks_are_refused(n, buffers, match):
    a = TakeAssembler()
    a.start("t", 1, 16000)
    with pytest.raises(TakeError, match=match):
        a.chunk("t", 0, n, buffers)


def test_a_take_over_the_limit_is_refused_while_it_comes():
    a = TakeAssembler(max_seconds=1)
    a.start("t", 3, 16000)
    (o0, b0), (o1, b1) = chunks_of(np.full(16000 + 4000, 0.1, np.float32), 10000)
    a.chunk("t", o0, 10000, b0)
    with pytest.raises(TakeError, match=r"take 3 is longer than the 1 s limit \(1\.2 s so far\).*max_seconds"):
        a.chunk("t", o1, 10000, b1)


def test_the_page_and_kernel_must_agree_on_the_length_and_rate():
    a = TakeAssembler()
    with pytest.raises(TakeError, match="comes at 44100 Hz"):
        a.start("t", 1, 44100)
    a.start("t", 1, 16000)
    off, bufs = chunks_of(np.full(3200, 0.1, np.float32), 3200)[0]
    a.chunk("t", off, 3200, bufs)
    with pytest.raises(TakeError, match="the page sent 6400 samples, 3200 arrived"):
        a.finish("t", 6400)
    with pytest.raises(TakeError, match="no take 'u' is being recorded"):
        a.finish("u", 0)


@pytest.mark.parametrize("samples, match", [
    (np.zeros(16000, np.float32), r"take 1 is silent \(peak amplitude 0\.0e\+00\)"),
    (np.where(np.arange(16000) == 5, np.nan, 0.1).astype(np.float32), "take 1 contains 1 NaN or infinite samples"),
    (np.full(800, 0.1, np.float32), "take 1 lasts 50 ms; at least 100 ms are needed"),
    (np.zeros(0, np.float32), "take 1 is empty: no sound reached the page"),
])
def test_the_projects_audio_checks_refuse_bad_takes(samples, match):
    a = TakeAssembler()
    a.start("t", 1, 16000)
    for off, bufs in chunks_of(samples, 4000):
        a.chunk("t", off, min(4000, samples.size - off), bufs)
    with pytest.raises(TakeError, match=match):
        a.finish("t", samples.size)


# ---- a take through the widget ---------------------------------------------------------------------
def test_a_recorded_take_is_explained_and_shown(model, goforward):
    w = LeafXWidget(None, model=model, background=False)
    assert w._meta["empty"] and w.take == -1 and w.takes == []
    assert w._record == {"available": True, "reason": None, "max_seconds": 60.0, "sample_rate": 16000}
    page = Page(w)
    page.record("a", goforward)
    assert [s["state"] for s in page.status("a")] == ["explaining", "ready"]
    assert w.take == 0 and len(w.takes) == 1
    ex = w.takes[0]
    assert ex is w.explanation and np.array_equal(ex.audio, goforward)  # the kernel's copy is the page's
    assert "forward" in ex.text.lower() and "forward" in w._meta["text"].lower()
    assert len(w._meta["tokens"]) == len(ex.tokens) > 0 and w._meta["take"] == 0
    assert w._takes == [{"index": 0, "label": "take 1", "source": "recorded", "duration_s": ex.duration_s,
                         "complete": True, "text": ex.text}]
    assert w.get_map(0).shape == (ex.tokens[0].n_frames,)
    w.close()


def test_failures_are_said_to_the_page_and_no_take_is_kept(model, goforward):
    w = LeafXWidget(None, model=model, background=False, max_seconds=2)
    page = Page(w)
    page.record("silent", np.zeros(16000, np.float32))
    assert page.errors("silent") == ["take 1 is silent (peak amplitude 0.0e+00); there is no speech to explain"]
    page.record("long", goforward)  # 2.8 s against a 2 s limit: refused at the chunk that passes it
    (error,) = page.errors("long")
    assert error.startswith("take 1 is longer than the 2 s limit")
    assert w.takes == [] and w.take == -1 and w._meta["empty"]
    assert not [c for c, _ in page.sent if c["type"] == "error"]  # said on the recorder bar, not as a view error
    w.close()


def test_a_widget_without_a_model_cannot_record():
    w = LeafXWidget(FakeExplanation(), methods=FAKE_METHODS, background=False)
    assert w._record["available"] is False and "needs a model" in w._record["reason"]
    page = Page(w)
    page.msg({"type": "take_start", "take": "a", "sample_rate": 16000})
    assert page.errors("a") == [w._record["reason"]]
    with pytest.raises(ValueError, match="pass model="):
        LeafXWidget(None, methods=FAKE_METHODS)
    w.close()


def test_limits_and_errors_of_the_python_api(model):
    with pytest.raises(ValueError, match="max_seconds must be finite and positive"):
        LeafXWidget(None, model=model, max_seconds=0)
    w = LeafXWidget(None, model=model, background=False, max_seconds=1)
    with pytest.raises(TakeError, match="shows no take yet"):
        w.save_html("x.html")
    with pytest.raises(TakeError, match=r"lasts 2\.0 s, over the 1 s limit"):
        w.add_take(np.full(32000, 0.1, np.float32), sample_rate=16000)
    with pytest.raises(TakeError, match="is silent"):
        w.add_take(np.zeros(8000, np.float32), sample_rate=16000)
    with pytest.raises(traitlets.TraitError, match=r"take 3 out of range \[0, 0\)"):
        w.take = 3
    w.close()


# ---- several takes: switched, compared, exported ------------------------------------------------------
@pytest.fixture
def two_takes():
    w = LeafXWidget(FakeExplanation(words=("ship",), duration_s=1.0), methods=FAKE_METHODS, background=False,
                    model=object())
    w.add_take(FakeExplanation(words=("sheep",), duration_s=1.2, seed=1), label="sheep")
    yield w
    w.close()


def test_takes_are_kept_and_switching_shows_each(two_takes):
    w = two_takes
    page = Page(w)
    assert w.take == 1 and [t["label"] for t in w._takes] == ["take 1", "sheep"]
    assert w._meta["text"] == "sheep" and w._meta["take"] == 1
    w.selected_token = 1
    old_send = w._maps.send
    w.take = 0
    assert w.explanation is w.takes[0] and w._meta["text"] == "ship" and w._meta["take"] == 0
    assert w.selected_token == 0 and w.current_time == 0
    old_send(({"type": "map"}, []))  # a late reply about the take shown before
    assert page.sent == []  # ... never reaches the new take's view


def test_the_same_word_in_another_take(two_takes):
    w = two_takes
    page = Page(w)
    w.take = 0
    page.msg({"type": "take_map", "take": 1, "token": 0, "method": "base", "params": {}, "key": "k1"})
    ((content, buffers),) = [(c, b) for c, b in page.sent if c["type"] == "take_map"]
    other = w.takes[1]
    assert content["key"] == "k1" and content["word"] == "sheep" and content["other_token"] == 0
    assert np.array_equal(np.frombuffer(buffers[0], np.float32), other.map(0, "base", tau=1.0, depth="full"))
    assert content["start_frame"] == other.tokens[0].start_frame
    assert content["duration_s"] == pytest.approx(1.2)
    with pytest.raises(traitlets.TraitError, match="compare_take 5 out of range"):
        w.compare_take = 5
    page.msg({"type": "take_map", "take": 7, "token": 0, "method": "base"})
    assert "take must be the index of a take (0..1), got 7" in page.sent[-1][0]["message"]


def test_save_html_exports_the_take_shown(two_takes, tmp_path):
    w = two_takes
    w.take = 0
    html = w.save_html(tmp_path / "ship.html").read_text()
    assert '"text":"ship"' in html and "sheep" not in html
    w.take = 1
    assert '"text":"sheep"' in w.save_html(tmp_path / "sheep.html").read_text()


def test_record_opens_an_empty_widget_and_takes_a_start(model, sample_explanation):
    w = lw.record(model, max_seconds=20, background=False)
    assert isinstance(w, LeafXWidget) and w._meta["empty"] and w._record["max_seconds"] == 20.0
    w.close()
    w = record(model, takes=[sample_explanation], background=False)
    assert w.takes == [sample_explanation] and w.take == 0 and w._takes[0]["label"] == "librivox_dashwood"
    w.close()


def test_minimal_pair_on_the_real_model(model, tmp_path):
    """"ship" and "sheep" said by espeak-ng, each a take: the map of the word of one take, and of the
    same word of the other."""
    w = LeafXWidget(None, model=model, background=False)
    page = Page(w)
    page.record("ship", espeak("There is a ship on the hill.", tmp_path / "ship.wav"))
    page.record("sheep", espeak("There is a sheep on the hill.", tmp_path / "sheep.wav"))
    assert [ex.text for ex in w.takes] == ["There is a ship on the hill.", "There is a sheep on the hill."]
    assert w.take == 1
    token = next(t.index for t in w.explanation.tokens if t.text.strip() == "sheep")
    page.msg({"type": "take_map", "take": 0, "token": token, "method": w.default_method, "params": {}, "key": "k"})
    ((content, buffers),) = [(c, b) for c, b in page.sent if c["type"] == "take_map"]
    assert content["word"].strip() == "ship"
    arr = np.frombuffer(buffers[0], np.float32)
    assert arr.size == content["n_frames"] and np.isfinite(arr).all() and arr.max() > 0
    w.close()


def test_worker_clear_drops_queued_work_but_keeps_going():
    w = Worker()
    from concurrent.futures import Future
    import threading

    gate, ran = threading.Event(), []
    w.submit(call_job(gate.wait))  # holds the thread
    queued: Future = Future()
    w.submit(call_job(lambda: ran.append("old"), queued))
    w.clear("switched")
    gate.set()
    with pytest.raises(Cancelled, match="switched"):
        queued.result(timeout=5)
    assert w.run_now(lambda: "new") == "new" and ran == []
    w.stop(join_timeout=5)
