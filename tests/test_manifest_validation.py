"""Manifests are checked before any work: every problem of every entry in one ManifestError."""
import json

import numpy as np
import pytest
import soundfile as sf

from leafx_widgets.bench.manifests import load_manifest, load_manifests
from leafx_widgets.bench.validate import ManifestError

WORDS = [{"word": "hi", "start": 0.1, "end": 0.4}, {"word": "there", "start": 0.5, "end": 0.9}]


@pytest.fixture
def folder(tmp_path):
    """tmp/data/ holds a 1 s clip; tmp/outside.wav is a valid clip outside the manifest's folder."""
    data = tmp_path / "data"
    data.mkdir()
    tone = 0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220).astype(np.float32)
    sf.write(data / "a.wav", tone, 16000)
    sf.write(tmp_path / "outside.wav", tone, 16000)
    return data


def write(folder, entries, name="m.json"):
    path = folder / name
    path.write_text(json.dumps(entries))
    return path


def entry(**kw):
    return {"id": "a", "file": "a.wav", "text": "hi there", "words": WORDS, **kw}


def problems(path, **kw):
    with pytest.raises(ManifestError) as info:
        load_manifest(path, **kw)
    return info.value.problems


def test_a_good_manifest_loads(folder):
    (clip,) = load_manifest(write(folder, [entry()]))
    assert clip.id == "a" and clip.path == (folder / "a.wav").resolve() and clip.words == WORDS


def test_duplicate_id_is_refused_naming_both_entries(folder):
    found = problems(write(folder, [entry(), entry(text="other words")]))
    assert len(found) == 1
    assert "entry 1 (id 'a')" in found[0] and "duplicate id" in found[0] and "entry 0" in found[0]


def test_numeric_text_is_refused(folder):
    (found,) = problems(write(folder, [entry(text=42)]))
    assert "entry 0" in found and "'text' must be a string" in found and "42" in found


def test_word_ending_before_it_starts_is_refused(folder):
    (found,) = problems(write(folder, [entry(words=[{"word": "hi", "start": 0.5, "end": 0.2}])]))
    assert "word 0 ends before it starts" in found


@pytest.mark.parametrize("span, reason", [
    ((0.1, 1.5), "after the clip's end"),
    ((-0.2, 0.3), "starts before the clip"),
    ((float("nan"), 0.3), "not a finite number"),
    ((0.1, float("inf")), "not a finite number"),
    ((0.1, 10 ** 400), "too large a number"),
    (("0.1", 0.3), "not a number"),
    ((True, 0.3), "not a number"),
])
def test_bad_spans_are_refused(folder, span, reason):
    path = folder / "m.json"
    words = [{"word": "hi", "start": span[0], "end": span[1]}]
    path.write_text(json.dumps([entry(words=words)]))  # json writes NaN / Infinity, as Python's json reads them
    (found,) = problems(path)
    assert reason in found and "word 0" in found


@pytest.mark.parametrize("content, reason", [
    (None, "not found"),
    (b"", "empty (0 bytes)"),
    (b"RIFF\x00\x00\x00\x00WAVEnot really audio at all" * 10, "cannot be read as audio"),
])
def test_unreadable_audio_is_refused(folder, content, reason):
    if content is not None:
        (folder / "bad.wav").write_bytes(content)
    (found,) = problems(write(folder, [entry(file="bad.wav")]))
    assert reason in found and "bad.wav" in found


def test_a_folder_is_not_audio(folder):
    (folder / "sub").mkdir()
    (found,) = problems(write(folder, [entry(file="sub")]))
    assert "not a regular file" in found


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "../outside.wav"])
def test_paths_outside_the_manifest_folder_are_refused(folder, name):
    (found,) = problems(write(folder, [entry(file=name)]))
    assert "outside the manifest's folder" in found and "--allow-outside-paths" in found


def test_outside_paths_can_be_allowed(folder):
    (clip,) = load_manifest(write(folder, [entry(file="../outside.wav")]), allow_outside_paths=True)
    assert clip.path == (folder.parent / "outside.wav").resolve()
    # allowed to look outside, /etc/passwd is still not audio
    (found,) = problems(write(folder, [entry(file="/etc/passwd")]), allow_outside_paths=True)
    assert "cannot be read as audio" in found


def test_a_symlink_pointing_outside_is_outside(folder):
    (folder / "link.wav").symlink_to(folder.parent / "outside.wav")
    (found,) = problems(write(folder, [entry(file="link.wav")]))
    assert "outside the manifest's folder" in found


def test_an_id_with_a_slash_is_accepted(folder):
    """The cache maps ids to safe file names; the id itself is kept as written."""
    (clip,) = load_manifest(write(folder, [entry(id="speaker/0001")]))
    assert clip.id == "speaker/0001"


def test_every_problem_is_listed_at_once(folder):
    path = write(folder, [
        entry(),
        entry(),                                           # duplicate id
        entry(id="b", text=3.5),                           # numeric text
        entry(id="c", file="../../etc/passwd"),            # outside
        entry(id="d", words=[{"word": "x", "start": 0.6, "end": 0.2}]),  # end < start
        {"id": "e", "file": "a.wav"},                      # no text
        "not an entry",
        entry(id=7),                                       # numeric id
        entry(id="f\nsecond line"),                        # control character
    ])
    found = problems(path)
    assert len(found) == 8
    for index in (1, 2, 3, 4, 5, 6, 7, 8):
        assert sum(f"entry {index}" in p for p in found) == 1, index
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    message = str(info.value)
    assert message.startswith("8 problems") and all(p in message for p in found)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "not valid JSON"),
    ('{"id": "a"}', "a JSON list of clips, got an object"),
    ("[]", "lists no clips"),
    ("[" * 100000 + "]" * 100000, "not valid JSON"),
    ("[" + "9" * 5000 + "]", "not valid JSON"),
])
def test_documents_that_are_not_manifests(folder, text, reason):
    path = folder / "m.json"
    path.write_text(text)
    (found,) = problems(path)
    assert reason in found


def test_missing_manifest(folder):
    (found,) = problems(folder / "nope.json")
    assert "manifest not found" in found


def test_words_and_textgrid_from_a_textgrid(folder):
    from leafx_widgets.bench.textgrid import write_textgrid_words

    write_textgrid_words(folder / "a.TextGrid", [{"word": "hi", "start": 0.1, "end": 1.4}], 1.5)
    (found,) = problems(write(folder, [entry(words=None, textgrid="a.TextGrid")]))
    assert "textgrid word 0 ends at 1.4 s, after the clip's end" in found
    (found,) = problems(write(folder, [entry(textgrid="a.TextGrid")]))
    assert "not both" in found
    (folder / "bad.TextGrid").write_text("nonsense")
    (found,) = problems(write(folder, [entry(words=None, textgrid="bad.TextGrid")]))
    assert "cannot be read" in found


def test_problems_of_several_manifests_come_together(folder):
    one = write(folder, [entry(text=1)], "one.json")
    other = folder / "sub"
    other.mkdir()
    (other / "a.wav").write_bytes((folder / "a.wav").read_bytes())
    two = write(other, [entry(words=[{"word": "x", "start": 0.8, "end": 0.2}])], "two.json")
    same_name = write(other, [entry()], "one.json")
    with pytest.raises(ManifestError) as info:
        load_manifests([one, two, same_name])
    found = info.value.problems
    assert len(found) == 3
    assert any("one.json: entry 0" in p and "'text'" in p for p in found)
    assert any("two.json: entry 0" in p and "ends before it starts" in p for p in found)
    assert any("dataset name 'one' is already used" in p for p in found)
