"""Shared fixtures: the bundled tiny.en model, real LibriVox speech (Debian pocketsphinx-testdata) and a
widget on a test module's stand-in Explanation."""
from __future__ import annotations

import glob
import warnings

import numpy as np
import pytest

LIBRIVOX = sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))


@pytest.fixture(scope="session")
def model():
    import leafx_widgets as lw

    warnings.filterwarnings("ignore", category=FutureWarning)
    return lw.load_model("tiny.en")


@pytest.fixture(scope="session")
def sample_explanation(model):
    import leafx_widgets as lw

    return lw.explain(model, lw.sample_path())


@pytest.fixture
def w(fake):
    """A widget on the test module's ``fake`` (tests/widget_fakes.py), its first work done; closed after."""
    from widget_fakes import METHODS

    from leafx_widgets.widget import LeafXWidget

    widget = LeafXWidget(fake, methods=METHODS)
    widget.wait_idle()
    yield widget
    widget.close()


@pytest.fixture(scope="session")
def librivox_paths():
    if not LIBRIVOX:
        pytest.fail("Debian package pocketsphinx-testdata is not installed (see .ci/run)")
    return LIBRIVOX


@pytest.fixture(scope="session")
def long_audio(librivox_paths):
    """Over 60 s of real speech: the five LibriVox clips, three times, 0.5 s of silence between."""
    import soundfile

    pieces = []
    for _ in range(3):
        for path in librivox_paths:
            samples, rate = soundfile.read(path, dtype="float32")
            assert rate == 16000
            pieces += [samples, np.zeros(8000, np.float32)]
    return np.concatenate(pieces)
