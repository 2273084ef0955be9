"""The widget reads the audit: ``show()`` computes none, the page's request computes it on the worker
with progress (the user's map requests first), the rows go out sorted by score, a given table is checked
and shown as it is, failures and closing are told, the HTML export carries the flags. A stand-in
Explanation (tests/widget_fakes.py) keeps this fast; one test runs the real ``ex.audit()`` on tiny.en."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from widget_fakes import METHODS, FakeExplanation, Recorder

from leafx_widgets.widget import LeafXWidget
from leafx_widgets.widget.audit import audit_rows
from leafx_widgets.widget.worker import Cancelled


def ready(rec):
    return rec.of("audit", state="ready")


@pytest.fixture
def fake():  # ``w``, a widget on it: tests/conftest.py
    return FakeExplanation(words=tuple(f"w{i}" for i in range(12)))


def ask(widget):
    widget._on_custom_msg(widget, {"type": "audit"}, [])


# ---- computed when asked, on the worker --------------------------------------------------------
def test_show_computes_no_audit_and_init_sends_none(w, fake):
    rec = Recorder(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
    w.wait_idle()
    assert getattr(fake, "audits", 0) == 0
    assert not rec.of("audit")


def test_the_page_asks_and_gets_rows_sorted_by_score_with_progress(w, fake):
    rec = Recorder(w)
    fake.audit_s = 0.6
    t0 = time.perf_counter()
    ask(w)
    assert time.perf_counter() - t0 < 0.1, "the handler must not compute the audit"
    assert rec.of("audit")[0]["state"] == "computing"
    rec.wait_for(ready)
    computing = rec.of("audit", state="computing")
    assert computing[-1]["note"] and computing[-2]["done"] == computing[-2]["total"] == len(fake.tokens)
    rows = ready(rec)[0]["rows"]
    json.dumps(rows, allow_nan=False)  # NaN went out as null
    expected = w.audit()  # the table the rows came from
    assert [r["token"] for r in rows] == list(expected.sort_values(["score", "token"], ascending=[False, True]).token)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    flagged = {r["token"] for r in rows if r["flag"]}
    assert flagged == set(expected.token[expected.flag]) and 0 < len(flagged) < len(rows)
    assert rows[0]["stability"] is None and rows[0]["word"] == fake.words[fake.tokens[rows[0]["token"]].word].text
    # asked again, or by a view that opens now: the same rows at once, computed once
    ask(w)
    w._on_custom_msg(w, {"type": "init", "stream": "s2"}, [])
    assert len(ready(rec)) == 3 and fake.audits == 1


def test_map_requests_go_before_the_audit(fake):
    w = LeafXWidget(fake, methods=METHODS)
    try:
        w.wait_idle()
        rec = Recorder(w)
        fake.audit_s = 0.3
        ask(w)
        w._on_custom_msg(w, {"type": "map", "id": "m", "key": "k", "token": 3, "method": "grad", "params": {}}, [])
        rec.wait_for(ready)
        kinds = [(c["type"], c.get("state")) for c in rec.sent]
        assert kinds.index(("map", None)) < kinds.index(("audit", "ready"))
    finally:
        w.close()


def test_audit_true_starts_at_once_and_audit_returns_the_table(fake):
    w = LeafXWidget(fake, methods=METHODS, audit=True)
    try:
        table = w.audit(timeout=30)
        assert list(table.token) == list(range(len(fake.tokens))) and fake.audits == 1
        rec = Recorder(w)
        w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])  # a view that opens now gets the flags
        assert len(ready(rec)) == 1 and len(ready(rec)[0]["rows"]) == len(fake.tokens)
        assert w.audit() is table and fake.audits == 1
    finally:
        w.close()


def test_synchronous_mode_computes_in_the_caller(fake):
    w = LeafXWidget(fake, methods=METHODS, background=False)
    rec = Recorder(w)
    ask(w)
    assert len(ready(rec)) == 1 and fake.audits == 1
    w.close()


# ---- a given table -----------------------------------------------------------------------------
def test_a_given_table_is_shown_as_it_is(fake):
    table = fake.audit(reference=["correct", "substitution", "insertion"] * 4)
    table.loc[table.token == 5, "score"] = np.nan
    w = LeafXWidget(fake, methods=METHODS, audit=table)
    try:
        rec = Recorder(w)
        w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
        rows = ready(rec)[0]["rows"]
        assert rows[-1]["token"] == 5 and rows[-1]["score"] is None, "a missing score sorts last"
        assert {r["error"] for r in rows} == {"correct", "substitution", "insertion"}
        assert w.audit() is table and fake.audits == 1  # the one call above, none by the widget
    finally:
        w.close()


@pytest.mark.parametrize("make, match", [
    (lambda t: t.to_dict("records"), "must be a pandas DataFrame"),
    (lambda t: t.drop(columns=["score"]), r"lacks the column\(s\) \['score'\]"),
    (lambda t: t.assign(token=t.token + 100), "row for token 100, but this explanation has 12 tokens"),
    (lambda t: t.assign(token=0), "more than one row for the same token"),
    (lambda t: t.assign(score="high"), "score of token 0 is not a number"),
])
def test_a_bad_table_is_refused_in_one_sentence(fake, make, match):
    with pytest.raises(ValueError, match=match):
        LeafXWidget(fake, methods=METHODS, audit=make(fake.audit()))


def test_audit_rows_cells_are_json():
    import pandas as pd

    rows = audit_rows(pd.DataFrame({"token": np.array([1, 0]), "score": [np.float32(0.25), np.nan],
                                    "flag": np.array([True, False]), "error": [pd.NA, "correct"]}), 2)
    assert rows == [
        {**dict.fromkeys(rows[0]), "token": 1, "score": 0.25, "flag": True},
        {**dict.fromkeys(rows[0]), "token": 0, "flag": False, "error": "correct"},
    ]
    assert type(rows[0]["token"]) is int and type(rows[0]["flag"]) is bool


# ---- failures and closing ----------------------------------------------------------------------
def test_a_failed_audit_is_told_and_asked_again(w, fake):
    rec = Recorder(w)
    fake.audit_fails = True
    with pytest.raises(ValueError, match="this audit always fails"):
        w.audit(timeout=30)
    failed = rec.of("audit", state="failed")
    assert len(failed) == 1 and "ValueError: this audit always fails" in failed[0]["message"]
    fake.audit_fails = False
    ask(w)
    rec.wait_for(ready)


def test_closing_stops_the_audit_and_its_waiters_hear(fake):
    w = LeafXWidget(fake, methods=METHODS)
    w.wait_idle()
    rec = Recorder(w)
    fake.audit_s = 30.0
    future = w._audit.start()
    rec.wait_for(lambda r: r.of("audit", note="stability under noise"))
    time.sleep(0.2)  # inside ex.audit()
    t0 = time.perf_counter()
    w.close()
    with pytest.raises(Cancelled):
        future.result(timeout=10)
    assert time.perf_counter() - t0 < 5
    assert rec.of("audit", state="failed")


def test_closing_before_the_audit_ran_fails_its_waiters(fake):
    w = LeafXWidget(fake, methods=METHODS)
    fake.slow_s = 2.0
    w._on_custom_msg(w, {"type": "map", "id": "m", "key": "k", "token": 3, "method": "grad", "params": {}}, [])
    time.sleep(0.1)  # the slow map runs; the audit waits in the queue
    future = w._audit.start()
    w.close()
    with pytest.raises(Cancelled):
        future.result(timeout=10)


# ---- the HTML export ---------------------------------------------------------------------------
def _embedded(html_text):
    m = re.search(r'<script id="leafx-data" type="application/json">(.*?)</script>', html_text, re.S)
    return json.loads(m.group(1))


def test_save_html_carries_the_audit(w, fake, tmp_path):
    data = _embedded(w.save_html(tmp_path / "none.html", methods=["base"]).read_text())
    assert data["audit"] is None and data["meta"]["audit"] is False  # the page hides its flag controls
    assert getattr(fake, "audits", 0) == 0
    data = _embedded(w.save_html(tmp_path / "audit.html", methods=["base"], audit=True).read_text())
    assert data["meta"]["audit"] is True and fake.audits == 1
    assert [r["token"] for r in data["audit"]] == [r["token"] for r in w._audit.rows]
    assert {r["token"] for r in data["audit"] if r["flag"]} == set(w.audit().query("flag").token)
    # None: the audit the widget has
    assert _embedded(w.save_html(tmp_path / "again.html", methods=["base"]).read_text())["audit"] == data["audit"]
    assert _embedded(w.save_html(tmp_path / "no.html", methods=["base"], audit=False).read_text())["audit"] is None


# ---- the real engine ---------------------------------------------------------------------------
def test_real_audit_of_a_recording_still_being_decoded(model, sample_explanation):
    """``lw.show(path, audit=True)``: the widget opens before decoding, the audit follows the last window."""
    import leafx_widgets as lw

    w = lw.show(lw.sample_path(), model=model, audit=True)
    try:
        rec = Recorder(w)
        table = w.audit(timeout=300)
        rec.wait_for(ready)
        rows = ready(rec)[0]["rows"]
        ex = w.explanation
        assert ex.complete and len(rows) == len(ex.tokens) == len(sample_explanation.tokens)
        assert [r["score"] for r in rows] == sorted(table.score, reverse=True)
        assert all(r["stability"] is not None and r["entropy"] is not None for r in rows)
        first = min(rows, key=lambda r: r["token"])
        assert first["text"] == ex.tokens[0].text and first["logprob"] == pytest.approx(ex.tokens[0].logprob)
        # the same table as the explanation's own audit (the noise is seeded)
        direct = sample_explanation.audit()
        np.testing.assert_allclose(table.score, direct.score, atol=1e-5)
        assert list(table.flag) == list(direct.flag)
    finally:
        w.close()


# ---- a row of a corpus audit -------------------------------------------------------------------
REFERENCE = "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for him."


@pytest.fixture(scope="module")
def corpus(model, tmp_path_factory):
    """A corpus audit of two clips: the bundled sample, whose reference ends in "him" (one substitution),
    and a synthesised sentence; flags at a low threshold so that some tokens are flagged."""
    import shutil

    import soundfile as sf

    import leafx_widgets as lw
    from leafx_widgets.audit.corpus import AuditSettings, run_audit
    from leafx_widgets.bench.manifests import SAMPLE_RATE, Clip, synthesise_sentence, write_manifest

    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(lw.sample_path(), root / "sample.wav")
    audio, words = synthesise_sentence("seven green bottles", "en-us", 150, seed=0)
    sf.write(root / "bottles.wav", audio, SAMPLE_RATE)
    manifest = write_manifest(root / "tiny.json", [Clip("001", root / "sample.wav", REFERENCE, None),
                                                   Clip("002", root / "bottles.wav", "seven green bottles", words)])
    out = root / "out"
    run_audit([manifest], out_dir=out, model=model, quiet=True, progress=False,
              settings=AuditSettings(stability=False, contrast_steps=0, threshold=0.12))
    return out


def test_show_audit_opens_a_row_of_a_corpus_audit(corpus, model):
    import pandas as pd

    import leafx_widgets as lw

    tokens = pd.read_csv(corpus / "tokens.csv", dtype={"clip": str})
    sub = tokens.index[(tokens["clip"] == "001") & (tokens.error == "substitution")]
    assert len(sub) >= 1, "the corpus run labels the changed word"
    assert 0 < tokens.flag[tokens["clip"] == "001"].sum() < (tokens["clip"] == "001").sum(), "some flagged, not all"
    row = int(sub[0])
    w = lw.show_audit(corpus, row, model=model)
    try:
        rec = Recorder(w)
        w._on_custom_msg(w, {"type": "init", "stream": "s"}, [])
        rows = ready(rec)[0]["rows"]
        mine = tokens[tokens["clip"] == "001"]
        assert w.selected_token == int(tokens.token[row]) and w.explanation.tokens[w.selected_token].text == tokens.text[row]
        assert len(rows) == len(mine) == len(w.explanation.tokens)
        assert {r["token"] for r in rows if r["flag"]} == set(mine.token[mine.flag])
        assert {r["token"] for r in rows if r["error"] == "substitution"} == set(mine.token[mine.error == "substitution"])
        assert w.explanation.reference.text == REFERENCE  # kept for a later ex.audit()
        assert w.audit() is not None and getattr(w._audit, "job", None) is None, "nothing recomputed"
    finally:
        w.close()
    # (clip, token) names the same row; the other clip's tokens are its own
    w2 = lw.show_audit(corpus, ("002", 1), model=model)
    try:
        assert w2.selected_token == 1 and len(w2._audit.rows) == int((tokens["clip"] == "002").sum())
    finally:
        w2.close()


@pytest.mark.parametrize("row, match", [
    (10_000, "row 10000 is out of range: the audit has"),
    (("001", 999), r"no row for clip '001', token 999 \(that clip has tokens 0\.\."),
    (("nope", 0), r"no row for clip 'nope', token 0 \(no such clip\)"),
    ("001", "row must be an index into tokens.csv"),
    (("001", "0"), "must be a token index"),
])
def test_show_audit_names_a_bad_row(corpus, model, row, match):
    import leafx_widgets as lw

    with pytest.raises(ValueError, match=match):
        lw.show_audit(corpus, row, model=model)


def test_show_audit_without_an_audit_or_with_another_model(tmp_path, corpus, model, monkeypatch):
    import leafx_widgets as lw

    with pytest.raises(ValueError, match=r"holds no corpus audit \(tokens.csv is missing\): run `leafx-widgets audit"):
        lw.show_audit(tmp_path, 0, model=model)
    # a model that decodes the clip differently is refused, not shown with the wrong flags
    import shutil

    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    (other / "tokens.parquet").unlink()  # the CSV path, with a token text edited
    import pandas as pd

    tokens = pd.read_csv(other / "tokens.csv", dtype={"clip": str})
    tokens.loc[(tokens["clip"] == "001") & (tokens.token == 4), "text"] = " Dosh"
    tokens.to_csv(other / "tokens.csv", index=False)
    with pytest.raises(ValueError, match=r"decodes to other tokens than the audit recorded \(token 4: ' Dash' here, "
                                         r"' Dosh' in the audit\): pass the model"):
        lw.show_audit(other, ("001", 0), model=model)
