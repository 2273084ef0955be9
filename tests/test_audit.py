"""ex.audit() and ex.contrast(): columns and types, error labels against hand-built references, the
contrast's sign on a forced pair, bad input. Real tiny.en decoding of short real clips."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import leafx_widgets as lw
from leafx_widgets.audit import COLUMNS, audit
from leafx_widgets.audit.table import suspicion

CARDS = Path("/usr/share/pocketsphinx/test/data/cards")
# "ten of clubs" with hand-set word spans (seconds), from listening / forced alignment
TEN_OF_CLUBS = [{"word": "ten", "start": 0.0, "end": 0.34}, {"word": "of", "start": 0.34, "end": 0.45},
                {"word": "clubs", "start": 0.45, "end": 0.96}]


@pytest.fixture(scope="module")
def cards_ex(model):
    return lw.explain(model, str(CARDS / "001.wav"), reference=TEN_OF_CLUBS)


def test_audit_columns_types_and_score_formula(cards_ex):
    assert cards_ex.text == "10 of clubs."
    df = cards_ex.audit()  # the reference given to explain()
    assert tuple(df.columns) == COLUMNS
    assert len(df) == len(cards_ex.tokens)
    assert df["token"].tolist() == list(range(len(cards_ex.tokens)))
    assert df["flag"].dtype == bool and df["changed"].dtype == bool
    for col in ("start_s", "end_s", "peak_s", "logprob", "entropy", "outside", "stability", "score"):
        assert df[col].dtype == np.float64, col
    assert df["error"].tolist() == ["correct"] * 4  # "10" folds to "ten"; "clubs." to "clubs"
    assert df["ref_word"].tolist() == ["ten", "of", "clubs", "clubs"]
    assert df[["entropy", "outside", "stability", "score"]].apply(lambda c: c.between(0, 1 + 1e-6).all()).all()
    assert (df["start_s"] <= df["end_s"]).all() and df["start_s"].iloc[0] < df["start_s"].iloc[2]
    for row in df.itertuples():
        assert row.score == pytest.approx(suspicion(row.logprob, row.stability))
        assert row.flag == (row.score >= df.attrs["threshold"])
        assert row.stability == 0.0 or not row.changed
    assert df.attrs["wer"] == 0.0 and df.attrs["deletions"] == []
    # the "clubs" token's evidence lies mostly inside the span of clubs; "of"'s mostly outside its 110 ms
    assert df.loc[2, "outside"] < 0.5


def test_error_labels_against_a_hand_built_reference(sample_explanation):
    ex = sample_explanation
    assert ex.text.startswith("And Mr. John Dashwood had then leisure")
    # John dropped (an insertion), leisure -> pleasure (a substitution), "quite" added (a deletion)
    ref = ("and mister dashwood had then pleasure to consider how much there might be quite prudently "
           "in his power to do for them")
    df = audit(ex, ref, stability=False)
    by_word = df.groupby("word")["error"].agg(set)
    assert by_word["John"] == {"insertion"}
    assert by_word["leisure"] == {"substitution"}
    assert df.loc[df["word"] == "leisure", "ref_word"].iloc[0] == "pleasure"
    assert df.loc[df["word"] == "John", "ref_word"].isna().all()
    others = df[~df["word"].isin(["John", "leisure"])]
    assert set(others["error"]) == {"correct"}  # "Mr." folds to "mister", "them." to "them"
    (gap,) = df.attrs["deletions"]
    be = df.loc[df["word"] == "be", "token"].iloc[-1]
    assert gap["word"] == "quite" and gap["after_token"] == be and gap["start"] is None
    assert df.attrs["wer"] == pytest.approx(3 / 22)
    assert df["outside"].isna().all()  # a text reference has no spans
    assert df["stability"].isna().all() and not df["changed"].any()
    assert df["score"].tolist() == pytest.approx((1 - np.exp(df["logprob"])).tolist())
    # without a reference: no labels
    bare = audit(ex, stability=False)
    assert bare["error"].isna().all() and bare.attrs["wer"] is None


def test_outside_uses_the_reference_span_of_a_substituted_word(cards_ex):
    spans = [dict(w) for w in TEN_OF_CLUBS]
    spans[2]["word"] = "hearts"
    df = cards_ex.audit(spans, stability=False)
    assert df["error"].tolist() == ["correct", "correct", "substitution", "substitution"]
    same = cards_ex.audit(stability=False)
    assert df["outside"].tolist() == pytest.approx(same["outside"].tolist())  # the same spans, another word


@pytest.mark.parametrize("reference, message", [
    ("   ", "empty string"),
    (42, "must be a transcript string"),
    ([{"word": "ten", "start": 0.5, "end": 0.1}], "start <= end"),
    ([{"word": "ten"}], "reference word 0"),
    ({"text": ""}, "reference\\['text'\\]"),
])
def test_bad_references_are_one_clear_error(cards_ex, reference, message):
    with pytest.raises(ValueError, match=message):
        cards_ex.audit(reference, stability=False)


def test_bad_options_and_an_explanation_without_model(cards_ex):
    with pytest.raises(ValueError, match="threshold"):
        cards_ex.audit(threshold=2, stability=False)
    doc = lw.Explanation.from_json(cards_ex.to_json(["leafx_sf"]))
    with pytest.raises(ValueError, match="stability needs the model"):
        doc.audit()
    table = doc.audit("ten of clubs", stability=False)  # stored maps are enough without stability
    assert table["error"].tolist() == ["correct"] * 4
    with pytest.raises(ValueError, match="contrast needs the model"):
        doc.contrast(2, "hearts")


def test_contrast_sign_on_a_forced_pair(model, cards_ex):
    """The audio says "clubs": the contrast favours clubs over hearts, whichever of the pair was written."""
    said = cards_ex.contrast(2, foil="hearts", steps=4)
    assert (said.target, said.foil) == ("clubs", "hearts")
    assert said.delta > 0 and said.total > 0
    assert said.map.shape == (cards_ex.tokens[2].n_frames,) and said.map.dtype == np.float32
    forced = lw.explain(model, str(CARDS / "001.wav"), text="ten of hearts")
    assert [t.text for t in forced.tokens] == [" ten", " of", " hearts"]
    wrong = forced.contrast(2, foil="clubs", steps=4)
    assert wrong.delta < 0 and wrong.total < 0
    assert math.isfinite(said.peak_s) and 0 <= said.peak_s <= cards_ex.duration_s


def test_contrast_bad_input(cards_ex):
    with pytest.raises(ValueError, match="foil must be a word"):
        cards_ex.contrast(2, foil="  ")
    with pytest.raises(ValueError, match="steps must be"):
        cards_ex.contrast(2, foil="hearts", steps=0)
    with pytest.raises(IndexError, match="out of range"):
        cards_ex.contrast(99, foil="hearts")
    # the word itself (as written, or as target=) would give delta 0 and a map of rounding noise
    with pytest.raises(ValueError, match="the foil 'clubs' is the word itself"):
        cards_ex.contrast(2, foil=" clubs. ", steps=1)
    with pytest.raises(ValueError, match="the foil 'hearts' is the word itself"):
        cards_ex.contrast(2, foil="hearts", target="hearts.", steps=1)
