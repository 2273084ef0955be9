"""Property tests: any document at all gives clips that keep the manifest's promises or a
ManifestError listing problems, never another exception."""
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leafx_widgets.bench.manifests import load_manifest
from leafx_widgets.bench.validate import ManifestError

PROPERTY = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
DURATION = 1.0


@pytest.fixture(scope="module")
def folder():
    """root/data: good.wav (1 s), empty.wav, junk.wav, a folder, a link out; root/outside.wav."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        tone = 0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220).astype(np.float32)
        sf.write(data / "good.wav", tone, 16000)
        sf.write(root / "outside.wav", tone, 16000)
        (data / "empty.wav").write_bytes(b"")
        (data / "junk.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
        (data / "sub").mkdir()
        (data / "link.wav").symlink_to(root / "outside.wav")
        yield data


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
FILES = ["good.wav", "./good.wav", "sub/../good.wav", "empty.wav", "junk.wav", "missing.wav", "sub", ".", "",
         "link.wav", "../outside.wav", "../../etc/passwd", "/etc/passwd", "/dev/zero", "good.wav\x00x", "a" * 300]
numbers = (st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.floats(0, DURATION)
           | st.sampled_from([0, 0.0, DURATION, 1e308, -0.0, 10 ** 400]) | json_values)
word = st.fixed_dictionaries({}, optional={"word": st.text(max_size=6) | json_values, "start": numbers, "end": numbers})
entry = st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["a", "b", "a/b", "../x", "", "c\nd"]) | st.text(max_size=12) | json_values,
    "file": st.sampled_from(FILES) | json_values,
    "text": st.text(max_size=20) | json_values,
    "words": st.none() | st.lists(word | json_values, max_size=4) | json_values,
    "textgrid": st.none() | st.sampled_from(["good.wav", "../outside.wav", "missing.TextGrid"]) | json_values,
    "extra": json_values,
})
documents = st.lists(entry | json_values, max_size=5) | json_values


def check(path: Path, allow: bool):
    """The property: clips keeping every promise, or a ManifestError with one line per problem."""
    try:
        clips = load_manifest(path, allow_outside_paths=allow)
    except ManifestError as err:
        assert err.problems and all(isinstance(p, str) and p.strip() for p in err.problems)
        assert str(err).splitlines()[0].endswith("nothing was run:")
        return
    ids = [c.id for c in clips]
    assert len(ids) == len(set(ids)) and all(isinstance(i, str) and i.strip() for i in ids)
    for clip in clips:
        assert isinstance(clip.text, str) and clip.text.strip()
        assert clip.path.is_file() and sf.info(str(clip.path)).frames > 0
        assert allow or clip.path.is_relative_to(path.parent.resolve())
        duration = sf.info(str(clip.path)).duration
        for w in clip.words or []:
            assert isinstance(w["word"], str)
            start, end = float(w["start"]), float(w["end"])
            assert math.isfinite(start) and math.isfinite(end) and 0 <= start <= end <= duration + 1e-3


@PROPERTY
@given(doc=documents, allow=st.booleans())
def test_any_json_document(folder, doc, allow):
    path = folder / "m.json"
    path.write_text(json.dumps(doc))  # NaN and Infinity written as Python's json reads them
    check(path, allow)


@PROPERTY
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes(folder, raw):
    path = folder / "raw.json"
    path.write_bytes(raw)
    check(path, False)


@PROPERTY
@given(entries=st.lists(st.fixed_dictionaries({
    "id": st.sampled_from(["a", "b", "c"]), "file": st.sampled_from(["good.wav", "../outside.wav"]),
    "text": st.just("hi"), "words": st.lists(st.fixed_dictionaries({
        "word": st.just("hi"), "start": st.floats(-1, 2), "end": st.floats(-1, 2)}), max_size=3)}),
    min_size=1, max_size=4))
def test_nearly_valid_manifests(folder, entries):
    """Documents close to valid: accepted exactly when nothing is wrong, else every fault named."""
    path = folder / "near.json"
    path.write_text(json.dumps(entries))
    ids = [e["id"] for e in entries]
    bad = {i for i, e in enumerate(entries) if e["file"] != "good.wav" or ids.index(e["id"]) != i
           or any(not 0 <= w["start"] <= w["end"] <= DURATION + 1e-3 for w in e["words"])}
    if not bad:
        assert [c.id for c in load_manifest(path)] == ids
        return
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    named = {i for i in range(len(entries)) for p in info.value.problems if p.startswith(f"{path}: entry {i} ")}
    assert named == bad
