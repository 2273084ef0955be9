"""Linear probes of tiny.en's encoder layers on the LibriVox dev clips (word spans from the manifest)."""
from __future__ import annotations

import json

import numpy as np
import pytest

import leafx_widgets as lw
from leafx_widgets.bench.manifests import build_librivox, write_manifest, load_manifest
from leafx_widgets.probes import frame_labels

import inside_checks


@pytest.fixture(scope="module")
def librivox(tmp_path_factory):
    return build_librivox(tmp_path_factory.mktemp("probe_manifest"))


def test_frame_labels_by_hand():
    words = [{"word": "a", "start": 0.02, "end": 0.08}, {"word": "b", "start": 0.12, "end": 0.14}]
    # frame centres 0.01, 0.03, ..., 0.15
    assert frame_labels(words, 8, 0.02, "speech").tolist() == [0, 1, 1, 1, 0, 0, 1, 0]
    assert frame_labels(words, 8, 0.02, "word_boundary", boundary_s=0.011).tolist() == [1, 1, 0, 1, 1, 1, 1, 1]


def test_speech_is_linearly_decodable_from_every_encoder_layer(model, librivox):
    result = lw.probe(model, librivox, label="speech", n_boot=200)
    assert result.layers == [0, 1, 2, 3] and len(result.test_clips) == 2 and len(result.train_clips) == 3
    assert not set(result.test_clips) & set(result.train_clips)
    assert np.all(result.low <= result.accuracy) and np.all(result.accuracy <= result.high)
    # far above always answering "speech" (about 80 % of the frames of these read sentences)
    assert np.all(result.accuracy > result.chance + 0.05), result
    doc = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert doc["label"] == "speech" and len(doc["accuracy"]) == 4


def test_probes_read_every_encoder_frame_of_the_real_audio(model, sample_explanation, tmp_path):
    assert model.encoder_frames_per_frame == 1
    inside_checks.check_probe_frames(model, sample_explanation.audio, model.sample_rate, tmp_path)
    inside_checks.check_encoder_replacement_frames(model, sample_explanation)


def test_bad_input(model, librivox, tmp_path):
    with pytest.raises(ValueError, match="label must be one of"):
        lw.probe(model, librivox, label="phoneme")
    with pytest.raises(ValueError, match=r"encoder layer in \[0, 4\)"):
        lw.probe(model, librivox, layer=7)
    clips = load_manifest(librivox)
    clips[0].words = None
    bare = write_manifest(librivox.parent / "bare.json", clips)
    with pytest.raises(ValueError, match="need word spans"):
        lw.probe(model, bare, layer=0)
