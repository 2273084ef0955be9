"""Explanation.from_json checks every field, refuses sizes its content does not back, and reads no audio unasked."""
import copy
import json
import time
import tracemalloc

import numpy as np
import pytest
import soundfile
from hypothesis import event, given, settings
from hypothesis import strategies as st

import leafx_widgets as lw
from leafx_widgets import Explanation, schema

FRAME_S, SR = 0.02, 16000


def make_doc(windows=(50, 30), tokens_per_window=3, variants=("base", "base-vn"), seed=0) -> dict:
    """A small valid document shaped like ``to_json`` output: windows of ``windows[i]`` frames,
    a few tokens each, two tokens per word, one segment per window (window w decoded at temperature
    0.2 w), maps rounded to 7 decimals."""
    rng = np.random.default_rng(seed)
    n_frames = sum(windows)
    tokens, words, segments, start = [], [], [], 0
    for w, length in enumerate(windows):
        for _ in range(tokens_per_window):
            k = len(tokens)
            maps = {v: [round(float(x), 7) for x in rng.dirichlet(np.ones(length))] for v in variants}
            tokens.append({"index": k, "id": 400 + k, "text": f" t{k}", "word": k // 2, "logprob": -0.1 * k,
                           "start_frame": start, "window": w, "n_frames": length, "temperature": 0.2 * w,
                           "segment": w, "maps": maps})
        segments.append({"index": w, "start": round(start * FRAME_S, 3), "end": round((start + length) * FRAME_S, 3),
                         "text": f"segment {w}", "tokens": [t["index"] for t in tokens if t["window"] == w],
                         "window": w, "temperature": 0.2 * w})
        start += length
    for j in range((len(tokens) + 1) // 2):
        members = [k for k in range(len(tokens)) if k // 2 == j]
        words.append({"index": j, "text": f"w{j}", "tokens": members, "peak_s": round(0.1 * j, 4)})
    return {"schema": "leafx-explanation/1", "model": "tiny.en",
            "audio": {"path": None, "duration_s": round(n_frames * FRAME_S - 0.005, 4), "sample_rate": SR},
            "frame_s": FRAME_S, "n_frames": n_frames, "text": "t0 t1 t2", "params": {},
            "tokens": tokens, "words": words, "segments": segments}


def refused(doc, **kwargs) -> str:
    with pytest.raises(ValueError) as err:
        Explanation.from_json(doc, **kwargs)
    return str(err.value)


def test_a_valid_document_round_trips():
    doc = make_doc()
    ex = Explanation.from_json(json.dumps(doc))
    assert ex.n_frames == 80 and len(ex.tokens) == 6 and ex.tokens[4].start_frame == 50
    np.testing.assert_allclose(ex.map(4, "base-vn"), doc["tokens"][4]["maps"]["base-vn"], atol=1e-7)
    assert ex.maps("base").shape == (6, 80) and ex.audio is None
    assert Explanation.from_json(json.dumps(ex.to_json(("base",)))).map(1, "base").shape == (50,)


# -- sizes the document does not back ------------------------------------------------------------------------
def test_a_2kb_document_claiming_300_million_frames_fails_fast():
    doc = make_doc(windows=(10,), tokens_per_window=1)
    doc["n_frames"] = 300_000_000
    doc["audio"]["duration_s"] = 300_000_000 * FRAME_S  # consistent with itself, backed by nothing
    text = json.dumps(doc)
    assert len(text) < 2048
    start = time.perf_counter()
    tracemalloc.start()
    try:
        message = refused(text)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0 and peak < 5 * 2**20
    assert message.startswith("n_frames: 300000000") and "cover only 10 frames" in message and "audio=" in message


def test_n_frames_1e12_is_refused():
    doc = make_doc()
    doc["n_frames"] = 1e12
    assert refused(doc).startswith("n_frames: 1000000000000.0, expected a whole number")
    doc["n_frames"] = 10**12
    assert refused(doc).startswith("n_frames: 1000000000000, expected a value in 1..")


def test_n_frames_must_agree_with_the_duration():
    doc = make_doc()
    doc["audio"]["duration_s"] = 60.0
    assert refused(doc).startswith("n_frames: 80 frames of 0.02 s cover 1.60 s, but audio.duration_s is 60.00 s")


def test_silent_windows_are_backed_up_to_a_limit():
    """Frames no map covers (windows with nothing said): as many as covered, plus 5 min; more needs audio=."""
    doc = make_doc(windows=(50, 30))
    doc["n_frames"] = 2 * 80 + 15000
    doc["audio"]["duration_s"] = doc["n_frames"] * FRAME_S
    assert Explanation.from_json(doc).maps("base").shape == (6, doc["n_frames"])
    doc["n_frames"] += 1
    doc["audio"]["duration_s"] = doc["n_frames"] * FRAME_S
    assert "cover only 80 frames" in refused(doc)


# -- maps -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [49, 51, 0])
def test_map_length_must_equal_the_tokens_n_frames(length):
    doc = make_doc()
    doc["tokens"][1]["maps"]["base"] = [1.0 / max(length, 1)] * length
    assert refused(doc) == f"tokens[1].maps.base: length {length}, expected n_frames 50"


def test_map_length_against_the_document_when_tokens_omit_n_frames():
    doc = make_doc(windows=(80,))
    for t in doc["tokens"]:
        del t["n_frames"], t["window"]  # documents written before tokens carried these
    assert Explanation.from_json(copy.deepcopy(doc)).tokens[2].n_frames == 80
    doc["tokens"][2]["maps"]["base"] = doc["tokens"][2]["maps"]["base"][:79]
    assert refused(doc).startswith("tokens[2].maps")


@pytest.mark.parametrize("value, message", [
    (float("nan"), "tokens[1].maps.base[5]: nan, maps must be finite (1 values are not)"),
    (float("inf"), "tokens[1].maps.base[5]: inf, maps must be finite"),
    (-0.5, "tokens[1].maps.base[5]: -0.5, maps must be non-negative"),
    (7.0, "tokens[1].maps.base: sums to 7.9"),
    ("0.1", "tokens[1].maps.base: expected an array of numbers"),
    (None, "tokens[1].maps.base: expected an array of numbers"),
    (True, "tokens[1].maps.base: expected an array of numbers"),
    ([0.1], "tokens[1].maps.base: expected an array of numbers"),
])
def test_map_values(value, message):
    doc = make_doc()
    doc["tokens"][1]["maps"]["base"][5] = value
    assert refused(doc).startswith(message)


def test_nan_written_by_json_gives_a_clear_message():
    text = json.dumps(make_doc()).replace('"logprob": -0.2', '"logprob": NaN', 1)
    assert refused(text) == "tokens[2].logprob: nan, expected a finite number"


def test_every_token_stores_the_same_variants():
    doc = make_doc()
    del doc["tokens"][4]["maps"]["base-vn"]
    assert refused(doc).startswith("tokens[4].maps: holds ['base'], but tokens[0].maps holds ['base', 'base-vn']")


@pytest.mark.parametrize("name", [" ", "", "base vn"])
def test_a_map_key_must_be_a_method_name(name):
    """Found by the property test below: a key " " made the error's field name hold a space."""
    doc = make_doc()
    for tok in doc["tokens"]:
        tok["maps"][name] = tok["maps"].pop("base-vn")
    assert refused(doc).startswith(f"tokens[0].maps: {name!r} is not a method name")


# -- tokens and words -------------------------------------------------------------------------------------
def test_duplicate_token_indices():
    doc = make_doc()
    doc["tokens"][2]["index"] = 1
    assert refused(doc) == "tokens[2].index: 1 repeats tokens[1].index (token indices must be unique)"


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["words"][0]["tokens"].append(99), "words[0].tokens[2]: 99, expected a value in 0..5"),
    (lambda d: d["words"][0]["tokens"].append(2), "words[0].tokens[2]: token 2 belongs to word 1"),
    (lambda d: d["words"][1]["tokens"].insert(0, 1), "words[1].tokens[0]: token 1 is already listed by words[0]"),
    (lambda d: d["words"][2]["tokens"].remove(5), "tokens[5].word: words[2] does not list token 5"),
    (lambda d: d["tokens"][5].update(word=7), "tokens[5].word: 7, but the document has 3 words"),
    (lambda d: d["words"][1]["tokens"].clear(), "words[1].tokens: empty"),
    (lambda d: d["words"][1].update(index=5), "words[1].index: 5"),
    (lambda d: d["tokens"][4].update(start_frame=60), "tokens[4].n_frames: frames 60..90 run past n_frames 80"),
    (lambda d: d["tokens"][4].update(window=0), "tokens[4].window: window 0 spans frames 0..50 in earlier tokens"),
    (lambda d: d["tokens"][1].update(logprob=0.5), "tokens[1].logprob: 0.5, expected a value at most"),
])
def test_cross_references(edit, message):
    doc = make_doc()
    edit(doc)
    assert refused(doc).startswith(message)


# -- segments and fallback marks ---------------------------------------------------------------------------
def test_segments_and_temperatures_are_read():
    ex = Explanation.from_json(json.dumps(make_doc()))
    assert [(s.start, s.end, s.tokens, s.window, s.temperature) for s in ex.segments] == \
        [(0.0, 1.0, [0, 1, 2], 0, 0.0), (1.0, 1.6, [3, 4, 5], 1, 0.2)]
    assert [t.segment for t in ex.tokens] == [0, 0, 0, 1, 1, 1]
    assert [t.fallback for t in ex.tokens] == [False] * 3 + [True] * 3


def test_documents_without_segments_still_load():
    """Written before long-form decoding: no segments, tokens without temperature or segment."""
    doc = make_doc()
    del doc["segments"]
    for tok in doc["tokens"]:
        del tok["temperature"], tok["segment"]
    ex = Explanation.from_json(doc)
    assert ex.segments == [] and all(t.temperature == 0 and t.segment == -1 and not t.fallback for t in ex.tokens)
    again = Explanation.from_json(ex.to_json(("base",)))
    assert again.segments == [] and again.tokens[0].segment == -1


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["segments"][1].update(end=0.5), "segments[1].end: 0.5, before its start 1.0"),
    (lambda d: d["segments"][1].update(start=-1), "segments[1].start: -1.0, expected a value in 0.0.."),
    (lambda d: d["segments"][1].update(end=99.0), "segments[1].end: 99.0, expected a value in 0.0.."),
    (lambda d: d["segments"][0]["tokens"].reverse(), "segments[0].tokens[1]: 1 after token 2 (a segment's tokens are in order"),
    (lambda d: d["segments"][1]["tokens"].insert(0, 2), "segments[1].tokens[0]: 2 after token 2"),
    (lambda d: d["segments"][1]["tokens"].append(6), "segments[1].tokens[3]: 6, expected a value in 0..5"),
    (lambda d: d["segments"][1].update(window=0), "segments[1].tokens[0]: token 3 is from window 1, but the "
                                                    "segment's window is 0"),
    (lambda d: d["segments"][1]["tokens"].remove(5), "tokens[5].segment: 1, but segments[1] does not list token 5"),
    (lambda d: d["tokens"][5].update(segment=0), "segments[1].tokens[2]: token 5 names segment 0"),
    (lambda d: d["tokens"][5].update(segment=4), "segments[1].tokens[2]: token 5 names segment 4"),
    (lambda d: d["segments"].pop(), "tokens[3].segment: 1, but the document has 1 segments"),
    (lambda d: d["segments"][1].update(index=0), "segments[1].index: 0, expected 1"),
    (lambda d: d["segments"][0].update(temperature=-0.5), "segments[0].temperature: -0.5, expected a value in 0.0.."),
    (lambda d: d["tokens"][2].update(temperature=float("nan")), "tokens[2].temperature: nan, expected a finite"),
    (lambda d: d["tokens"][2].update(segment="0"), "tokens[2].segment: '0', expected a whole number"),
    (lambda d: d["segments"][0].update(tokens="0 1 2"), "segments[0].tokens: a string, expected an array"),
    (lambda d: d["segments"][0].pop("text"), "segments[0].text: missing"),
    (lambda d: d.update(segments={}), "segments: an object, expected an array"),
])
def test_bad_segments_are_named(edit, message):
    doc = make_doc()
    edit(doc)
    assert refused(doc).startswith(message)


def test_long_form_explanation_round_trips(model, tmp_path):
    """Two windows decoded long-form, sampled (a fallback temperature): segments, windows and marks survive
    save_json / from_json, and the document re-saves to the same JSON."""
    speech = lw.load_audio(lw.sample_path()).samples
    ex = lw.explain(model, np.concatenate([speech] * 5), sample_rate=SR, temperatures=(0.3,), progress=False)
    assert len(ex.windows) == 2 and len(ex.segments) >= 4 and all(t.temperature == 0.3 for t in ex.tokens)
    path = ex.save_json(tmp_path / "long.json", ("base",))
    doc = json.loads(path.read_text())
    assert doc["segments"][0].keys() == {"index", "start", "end", "text", "tokens", "window", "temperature"}
    assert {"temperature", "segment"} <= doc["tokens"][0].keys()
    back = Explanation.from_json(path)
    assert back.segments == ex.segments and back.text == ex.text
    assert [(t.temperature, t.segment, t.window, t.start_frame, t.n_frames) for t in back.tokens] == \
        [(t.temperature, t.segment, t.window, t.start_frame, t.n_frames) for t in ex.tokens]
    assert back.tokens[-1].start_frame % 1500  # the second window starts at a seek, not at 30 s
    assert back.to_json(("base",)) == json.loads(json.dumps(ex.to_json(("base",))))
    np.testing.assert_allclose(back.map_global(len(ex.tokens) - 1, "base"), ex.map_global(len(ex.tokens) - 1, "base"),
                               atol=1e-6)


# -- keys and types -----------------------------------------------------------------------------------------
REQUIRED = ["schema", "model", "text", "frame_s", "n_frames", "audio", "tokens", "words",
            "audio.duration_s", "audio.sample_rate",
            "tokens.index", "tokens.id", "tokens.text", "tokens.word", "tokens.logprob", "tokens.start_frame",
            "tokens.maps", "words.index", "words.text", "words.tokens"]


@pytest.mark.parametrize("key", REQUIRED)
def test_missing_keys_are_named(key):
    doc = make_doc()
    *parents, last = key.split(".")
    holder = doc
    for p in parents:
        holder = holder[p][0] if isinstance(holder[p], list) else holder[p]
    del holder[last]
    where = key.replace("tokens.", "tokens[0].").replace("words.", "words[0].")
    assert refused(doc) == f"{where}: missing"


@pytest.mark.parametrize("key, value, message", [
    ("schema", "leafx-explanation/2", "schema: 'leafx-explanation/2', expected 'leafx-explanation/1'"),
    ("n_frames", "80", "n_frames: '80', expected a whole number"),
    ("n_frames", True, "n_frames: true/false, expected a whole number"),
    ("frame_s", 0, "frame_s: 0.0, expected a value in 0.005..0.1"),
    ("tokens", {"0": {}}, "tokens: an object, expected an array"),
    ("words", None, "words: null, expected an array"),
    ("model", 3, "model: a number, expected a string"),
    ("audio", [], "audio: an array, expected an object"),
    ("params", {"tau": float("nan")}, "params.tau: nan, expected a string, a finite number"),
])
def test_wrong_types_are_named(key, value, message):
    doc = make_doc()
    doc[key] = value
    assert refused(doc).startswith(message)


@pytest.mark.parametrize("text, message", [
    ("{", "document: not valid JSON"),
    ("[1, 2]", "document: an array, expected an object"),
    pytest.param("[" * 100_000, "document: nested too deeply", id="deep"),
    (b"\xff{}", "document: not UTF-8"),
    (" ", "document: an empty string"),
    ('"a string"', "document: a string, expected an object"),
])
def test_not_a_document(text, message):
    assert refused(text).startswith(message)


# -- audio is read only when asked ------------------------------------------------------------------------
@pytest.fixture
def secret_wav(tmp_path):
    """A recording of 80 frames (1.6 s) that a shared document names."""
    t = np.arange(int(1.595 * SR)) / SR
    path = tmp_path / "secret.wav"
    soundfile.write(path, 0.5 * np.sin(2 * np.pi * 330 * t), SR)
    return path


def test_the_audio_path_inside_a_document_is_not_read(secret_wav):
    doc = make_doc()
    doc["audio"]["path"] = str(secret_wav)
    ex = Explanation.from_json(doc)
    assert ex.audio is None and ex.audio_path == str(secret_wav)


def test_save_html_does_not_embed_the_file_a_document_names(secret_wav, tmp_path):
    from leafx_widgets import _codecs
    from leafx_widgets.widget import LeafXWidget

    doc = make_doc(variants=("base", "leafx_sf"))  # the widget's overview shows leafx_sf
    doc["audio"]["path"] = str(secret_wav)
    secret = _codecs.b64(_codecs.to_pcm16(lw.load_audio(secret_wav).samples))
    for kwargs, embedded in [({}, False), ({"load_audio": True}, True)]:
        w = LeafXWidget(Explanation.from_json(doc, **kwargs), variant="base")
        html = w.save_html(tmp_path / "out.html", ["base"]).read_text()
        w.close()
        assert (secret in html) is embedded


def test_audio_is_read_when_asked(secret_wav):
    doc = make_doc()
    doc["audio"]["path"] = str(secret_wav)
    by_flag = Explanation.from_json(doc, load_audio=True)
    by_argument = Explanation.from_json(make_doc(), audio=secret_wav)
    as_array = Explanation.from_json(make_doc(), audio=soundfile.read(secret_wav, dtype="float32")[0])
    for ex in (by_flag, by_argument, as_array):
        assert ex.audio is not None and ex.audio.shape == (int(1.595 * SR),)


def test_asked_for_audio_must_be_the_right_recording(secret_wav):
    doc = make_doc(windows=(50,))
    message = refused(doc, audio=secret_wav)
    assert message.startswith("audio: ") and "lasts 1.59 s, but the document covers 1.00 s" in message
    assert refused(make_doc(), load_audio=True).startswith("audio.path: null")


def test_audio_backs_a_long_document(tmp_path):
    """70 s of recording with tokens in the first second only: refused alone, accepted with its audio."""
    path = tmp_path / "long.wav"
    soundfile.write(path, np.r_[0.3 * np.sin(np.arange(SR) / 5.0), np.zeros(69 * SR)].astype(np.float32), SR)
    doc = make_doc(windows=(50,))
    doc["n_frames"], doc["audio"]["duration_s"] = 3500, 70.0
    doc["tokens"] = doc["tokens"][:2]
    doc["words"] = doc["words"][:1]
    doc["segments"][0]["tokens"] = [0, 1]
    doc["audio"]["path"] = str(path)
    assert "cover only 50 frames" in refused(copy.deepcopy(doc) | {"n_frames": 20000,
                                                                    "audio": {**doc["audio"], "duration_s": 400.0}})
    assert Explanation.from_json(doc, load_audio=True).duration_s == 70.0


# -- real documents ----------------------------------------------------------------------------------------
def test_real_to_json_output_with_silent_windows_validates(model):
    """Speech, then 60 s of silence: the silent windows are skipped and carry no tokens, yet the document loads."""
    speech = lw.load_audio(lw.sample_path()).samples
    ex = lw.explain(model, np.r_[speech, np.zeros(60 * SR, np.float32)], sample_rate=SR)
    assert len(ex.windows) == 3 and {t.window for t in ex.tokens} <= {0, 1}
    doc = json.loads(json.dumps(ex.to_json(("base",))))
    back = Explanation.from_json(doc)
    assert back.n_frames == ex.n_frames and back.text == ex.text
    np.testing.assert_allclose(back.maps("base"), ex.maps("base"), atol=1e-6)


# -- property tests ----------------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
HOSTILE = st.sampled_from([None, True, -1, 0, 1, 2**63, 10**12, 1e12, -0.5, 0.5, float("nan"), float("inf"),
                           "", "x", [], {}, [0.5, 0.5], {"a": 1}])


def _paths(node, prefix=()):
    """Every place in a document: (path to the container, key or index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield prefix, key
        if not (isinstance(child, list) and child and isinstance(child[0], float)):  # not into map values
            yield from _paths(child, prefix + (key,))


def _usable(ex: Explanation) -> None:
    """An accepted document gives maps that are distributions of the right length, and words that point home."""
    for tok in ex.tokens:
        for variant in ("base", "base-vn"):
            try:
                local = ex.map(tok.index, variant)
            except ValueError:
                continue  # that variant is not stored
            assert local.shape == (tok.n_frames,) and abs(float(local.sum()) - 1) < 1e-2
            assert ex.map_global(tok.index, variant).shape == (ex.n_frames,)
    assert all(ex.tokens[t].word == w.index for w in ex.words for t in w.tokens)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**31), st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["delete", "hostile", "random"]),
                                                 HOSTILE, JSON), min_size=1, max_size=3))
def test_mutated_documents_load_or_name_a_field(seed, mutations):
    doc = make_doc(windows=(7, 5), tokens_per_window=2, seed=seed % 100)
    for pick, op, hostile, random_value in mutations:
        places = list(_paths(doc))
        prefix, key = places[pick % len(places)]
        holder = doc
        for p in prefix:
            holder = holder[p]
        if op == "delete":
            del holder[key]
        else:
            holder[key] = hostile if op == "hostile" else random_value
    try:
        ex = Explanation.from_json(json.dumps(doc) if seed % 2 else doc)
    except ValueError as err:
        field = str(err).split(":", 1)[0]
        assert field and " " not in field.replace("maps key", "maps_key"), str(err)  # names a field first
        event(f"refused at {field.split('[')[0].split('.')[0]}")
        return
    event("accepted")
    _usable(ex)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_random_json_values_are_refused_with_a_field(value):
    with pytest.raises(ValueError) as err:  # JSON text for containers and strings (a bare string is a path)
        Explanation.from_json(json.dumps(value) if isinstance(value, (dict, list, str)) else value)
    assert str(err.value).split(":", 1)[0] in ("document", "schema")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6), st.text(max_size=3))
def test_cut_or_spliced_json_text_is_refused(at, junk):
    text = json.dumps(make_doc(windows=(6,), tokens_per_window=2))
    cut = at % len(text)
    with pytest.raises(ValueError):
        Explanation.from_json("{" + text[1:cut] + junk)


def test_peak_method_must_name_a_stored_map(sample_explanation):
    doc = sample_explanation.to_json(["base"], peak_method="base-vn")
    assert doc["peak_method"] == "base-vn" and "base-vn" in doc["tokens"][0]["maps"]
    lw.Explanation.from_json(doc)
    doc["peak_method"] = "grad"
    with pytest.raises(ValueError, match=r"peak_method: 'grad' is not among the stored maps"):
        lw.Explanation.from_json(doc)
    doc["peak_method"] = 3
    with pytest.raises(ValueError, match=r"peak_method"):
        lw.Explanation.from_json(doc)
