"""``leafx-widgets audit`` on a tiny real manifest: the tables, a failing clip recorded, resume from the
cache, Ctrl-C, a folder without references, the substitution contrast, bad input."""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

import leafx_widgets as lw
from leafx_widgets import cli
from leafx_widgets.audit import corpus
from leafx_widgets.audit.corpus import AuditSettings, run_audit

CARDS = Path("/usr/share/pocketsphinx/test/data/cards")
AUDIT_CLIP = corpus.audit_clip
FAST = ["--no-stability", "--contrast-steps", "0", "--quiet"]


def _manifest(folder: Path, entries) -> Path:
    """Copies of the cards clips beside a manifest: [(wav name, text, words or None)]."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for name, text, words in entries:
        shutil.copy(CARDS / name, folder / name)
        clips.append({"id": f"cards-{name[:3]}", "file": name, "text": text, "words": words})
    path = folder / "cards.json"
    path.write_text(json.dumps(clips))
    return path


@pytest.fixture
def tiny_manifest(tmp_path):
    return _manifest(tmp_path / "data", [
        ("001.wav", "ten of clubs", [{"word": "ten", "start": 0.0, "end": 0.34},
                                     {"word": "of", "start": 0.34, "end": 0.45},
                                     {"word": "clubs", "start": 0.45, "end": 0.96}]),
        ("003.wav", "seven of clubs", None)])


def _counting(monkeypatch, fail_on=None, interrupt=False):
    """Wrap audit_clip: count the clips really audited; fail one; or Ctrl-C during the first."""
    calls = []

    def work(adapter, job):
        calls.append(job["clip"])
        if job["clip"] == fail_on:
            raise RuntimeError("the decoder fell over")
        if interrupt and len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: finish this clip, then stop
        return AUDIT_CLIP(adapter, job)

    monkeypatch.setattr(corpus, "audit_clip", work)
    return calls


def test_cli_audit_records_a_failure_then_resumes_from_the_cache(tiny_manifest, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    argv = ["audit", "--manifest", str(tiny_manifest), "--out", str(out), *FAST]
    calls = _counting(monkeypatch, fail_on="cards-003")
    assert cli.main(argv) == 1
    assert calls == ["cards-001", "cards-003"]
    failed = pd.read_csv(out / "failed.csv")
    assert failed["clip"].tolist() == ["cards-003"]
    assert failed["reason"].iloc[0] == "RuntimeError: the decoder fell over"
    assert set(pd.read_csv(out / "tokens.csv")["clip"]) == {"cards-001"}

    calls = _counting(monkeypatch)
    assert cli.main(argv) == 0
    assert calls == ["cards-003"]  # the first clip came from the cache
    tokens = pd.read_parquet(out / "tokens.parquet")
    for col in ("clip", "token", "text", "logprob", "score", "flag", "error"):
        assert col in tokens.columns
    assert tokens["clip"].tolist() == ["cards-001"] * 4 + ["cards-003"] * 4  # manifest order
    assert set(tokens["error"]) == {"correct"}
    assert tokens.loc[tokens["clip"] == "cards-001", "outside"].notna().all()  # spans given
    assert tokens.loc[tokens["clip"] == "cards-003", "outside"].isna().all()  # text only
    csv = pd.read_csv(out / "tokens.csv")
    assert csv.columns.tolist() == tokens.columns.tolist() and csv["score"].tolist() == pytest.approx(tokens["score"].tolist())
    clips = pd.read_csv(out / "clips.csv")
    assert clips["clip"].tolist() == ["cards-001", "cards-003"] and clips["wer"].tolist() == [0.0, 0.0]
    assert pd.read_csv(out / "failed.csv").empty
    page = (out / "report.html").read_text()
    assert "Token audit" in page and "cards-003" in page and "cdn.bokeh.org" not in page
    assert "8 tokens" in capsys.readouterr().out
    meta = json.loads((out / "audit.json").read_text())
    assert meta["model"] == "tiny.en" and meta["language"] == "en" and meta["leafx_widgets"] == lw.__version__
    assert (meta["planned_clips"], meta["done_clips"], meta["failed_clips"]) == (2, 2, 0)


def test_ctrl_c_finishes_the_clip_writes_the_tables_and_resumes(tiny_manifest, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["audit", "--manifest", str(tiny_manifest), "--out", str(out), *FAST]
    calls = _counting(monkeypatch, interrupt=True)
    assert cli.main(argv) == 130
    assert calls == ["cards-001"]
    assert set(pd.read_csv(out / "tokens.csv")["clip"]) == {"cards-001"}
    assert json.loads((out / "audit.json").read_text())["interrupted"] is True
    calls = _counting(monkeypatch)
    assert cli.main(argv) == 0 and calls == ["cards-003"]


def test_audio_dir_without_references_and_a_substitution_contrast(model, tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    shutil.copy(CARDS / "002.wav", folder / "a.wav")
    fast = AuditSettings(stability=False, contrast_steps=0)
    bare = run_audit(audio_dir=folder, out_dir=tmp_path / "bare", model=model, settings=fast, quiet=True)
    assert bare["tokens"]["error"].isna().all() and bare["clips"]["wer"].isna().all()
    assert bare["tokens"]["clip"].tolist()[0] == "a.wav"

    # tiny.en hears "Queen of Clothes": the contrast of its word against the reference word
    manifest = _manifest(tmp_path / "data", [("002.wav", "four queen of clubs", None)])
    result = run_audit(manifest, out_dir=tmp_path / "out", model=model, quiet=True,
                       settings=AuditSettings(stability=False, contrast_steps=2))
    tokens = result["tokens"]
    subs = tokens[tokens["error"] == "substitution"]
    assert set(subs["word"]) == {"Clothes"} and set(subs["contrast_foil"]) == {"clubs"}
    assert (subs["contrast_delta"] > 0).all()  # greedy decoding preferred its own word
    assert tokens.loc[tokens["error"] == "correct", "contrast_delta"].isna().all()
    assert result["clips"]["n_substitutions"].tolist() == [1]
    assert "Substitutions" in (tmp_path / "out" / "report.html").read_text()


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["audit", "--manifest", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]) == 2
    assert "manifest not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.main(["audit", "--audio-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no audio files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["audit", "--out", str(tmp_path / "o")])  # neither --manifest nor --audio-dir
    assert exit_.value.code == 2
    (tmp_path / "empty" / "x.wav").write_bytes(b"RIFF")
    assert cli.main(["audit", "--audio-dir", str(tmp_path / "empty"), "--threshold", "2",
                     "--out", str(tmp_path / "o")]) == 2
    assert "threshold" in capsys.readouterr().err
