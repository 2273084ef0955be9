"""The command line: `leafx-widgets explain` prints word peaks and writes the JSON schema."""
import json
import subprocess
import sys

import leafx_widgets as lw
from leafx_widgets import cli


def test_explain_prints_words_and_writes_json(tmp_path, capsys):
    out = tmp_path / "ex.json"
    assert cli.main(["explain", str(lw.sample_path()), "--variants", "base,base-vn", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "transcript: And Mr. John Dashwood had then leisure" in printed
    assert any(line.split()[:1] == ["Dashwood"] for line in printed.splitlines())
    doc = json.loads(out.read_text())
    assert doc["schema"] == "leafx-explanation/1" and doc["audio"]["path"].endswith("librivox_dashwood.wav")
    assert set(doc["tokens"][0]["maps"]) == {"base", "base-vn"}
    assert [w["text"] for w in doc["words"]][-1] == "them."


def test_errors_are_one_clear_line(tmp_path, capsys):
    assert cli.main(["explain", str(tmp_path / "nothing.wav")]) == 2
    assert "error: audio file not found" in capsys.readouterr().err
    assert cli.main(["explain", "--variants", "base,bogus"]) == 2
    assert "unknown method 'bogus'" in capsys.readouterr().err
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert cli.main(["explain", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "leafx_widgets.cli", "explain", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--variants" in done.stdout
