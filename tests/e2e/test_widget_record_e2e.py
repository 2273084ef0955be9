"""Recording a take in JupyterLab, in headless chromium with a fake microphone that plays a sentence
said by espeak-ng: record, stop, the kernel's transcript of the sentence appears and a word's map is
drawn; the kernel's copy of the take is the fed audio (page resampling, chunks, kernel); a denied
permission and an insecure page are said plainly. The browsers here launch with their own flags
(harness.fake_microphone_args), so the other e2e files keep theirs."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile

from harness import (CHROMIUM, dump_failure, fake_microphone_args, kernel_execute, nonblank_pixels, open_notebook,
                     view_eval, wait_key)

pytestmark = pytest.mark.e2e

SENTENCE = "There is a ship on the sea."
PAUSE_S = 1.0  # silence after the sentence: the fake microphone loops the file
RECORD_S = 6.5  # longer than one loop plus the sentence: a whole sentence whatever the loop's phase


@pytest.fixture(scope="module")
def fed_wav(workdir):
    """The sentence as espeak-ng says it (22050 Hz), then a pause, as 16-bit PCM for chromium."""
    raw = workdir / "sentence-raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "130", "-w", str(raw), SENTENCE], check=True)
    samples, rate = soundfile.read(str(raw), dtype="float32")
    samples = np.concatenate([samples, np.zeros(int(PAUSE_S * rate), np.float32)])
    path = workdir / "sentence.wav"
    soundfile.write(str(path), samples, rate, subtype="PCM_16")
    return path


def launch(browser, args):
    """Another chromium from the session's Playwright (one Playwright per process), with `args`."""
    return browser.browser_type.launch(executable_path=CHROMIUM, headless=True, args=args)


def open_recorder(lab, browser, workdir, name):
    cells = ["import leafx_widgets as lw\nw = lw.record('tiny.en', max_seconds=20)\nw"]
    return open_notebook(lab, browser, workdir, name, cells, ready=".leafx-recorder .lx-record:not([disabled])")


def best_correlation(take, reference, period):
    """The largest Pearson correlation of one loop's length of the take (windows every 0.25 s) with the
    looped reference, over every lag and fractional lags of 1/20 sample."""
    tiled = np.tile(reference, int(np.ceil((take.size + 2 * period) / reference.size)) + 1)
    best = -1.0
    for start in range(0, take.size - period + 1, 4000):
        seg = take[start:start + period].astype(np.float64)
        seg = seg - seg.mean()
        # integer lag by FFT cross-correlation over one period of the reference
        n = 1 << int(np.ceil(np.log2(2 * period + period)))
        xc = np.fft.irfft(np.fft.rfft(tiled[:2 * period], n) * np.conj(np.fft.rfft(seg, n)), n)[:period]
        lag = int(np.argmax(xc))
        ref = tiled[lag:lag + period + 2].astype(np.float64)
        freqs = np.fft.rfftfreq(ref.size)
        spec = np.fft.rfft(ref)
        for frac in np.arange(-1, 1.001, 0.05):  # the page's and this resampler's phase may differ
            shifted = np.fft.irfft(spec * np.exp(-2j * np.pi * freqs * frac), ref.size)[:period]
            best = max(best, float(np.corrcoef(seg, shifted)[0, 1]))
    return best


def test_record_a_take_and_explain_it(lab, browser, workdir, fed_wav):
    import librosa

    recording = launch(browser, fake_microphone_args(fed_wav))
    page, console = open_recorder(lab, recording, workdir, "record")
    try:
        page.click(".leafx-recorder .lx-record")
        page.wait_for_function(f"() => +document.querySelector('.leafx-recorder').dataset.seconds >= {RECORD_S}",
                               timeout=60_000)
        via = page.evaluate("() => document.querySelector('.leafx-recorder').dataset.via")
        page.click(".leafx-recorder .lx-record")
        # the kernel explains the take: the view of the take opens, its transcript fills in
        page.wait_for_function("() => { const r = document.querySelector('.leafx-root');"
                               " return r && r.dataset.ready && !r.dataset.decoding && r.dataset.audio"
                               " && r.querySelectorAll('.lx-tok').length; }", timeout=180_000)
        text = page.inner_text(".leafx-root .lx-transcript").lower()
        assert "ship" in text and "sea" in text, text
        assert page.inner_text(".leafx-recorder .lx-rec-msg") == ""  # no error, no note left
        k = view_eval(page, 0, "(v) => v.meta.tokens.findIndex((t) => t.text.trim().toLowerCase() === 'ship')")
        assert k >= 0
        page.click(f".leafx-root .lx-tok[data-i='{k}']")
        wait_key(page, 0, f"{k}|", timeout=120_000)
        assert nonblank_pixels(page, 0, ".lx-lane") > 50
        # the take is listed, and its length is what was recorded
        takes = page.evaluate("() => [...document.querySelectorAll('.leafx-recorder .lx-takes option')]"
                              ".map((o) => o.textContent)")
        assert len(takes) == 1 and "ship" in takes[0].lower()

        # the kernel's copy of the take is the fed file, after the page's resampling
        kernel_execute(page, "import numpy as np; np.save('take.npy', w.takes[-1].audio)")
        take = np.load(lab[1] / "take.npy")
        assert RECORD_S - 0.5 <= take.size / 16000 <= RECORD_S + 2
        fed, rate = soundfile.read(str(fed_wav), dtype="float32")
        reference = librosa.resample(fed, orig_sr=rate, target_sr=16000).astype(np.float32)
        corr = best_correlation(take, reference, reference.size)
        print(f"\nLEAFX_RECORD via={via} take_s={take.size / 16000:.2f} correlation={corr:.4f} text={text!r}")
        assert corr > 0.95

        # a second take (the first 3 s of this one, added from Python): the same word of take 1 under its lane
        kernel_execute(page, "w.add_take(w.takes[0].audio[: 3 * 16000], sample_rate=16000)")
        page.wait_for_function("() => { const r = document.querySelector('.leafx-root');"
                               " return r && r.__leafx.meta.take === 1 && r.dataset.ready && !r.dataset.decoding"
                               " && r.querySelectorAll('.lx-tok').length; }", timeout=180_000)
        page.select_option(".leafx-recorder .lx-compare-take", "0")
        k2 = view_eval(page, 0, "(v) => Math.max(0, v.meta.tokens.findIndex("
                               "(t) => t.text.trim().toLowerCase() === 'ship'))")
        page.click(f".leafx-root .lx-tok[data-i='{k2}']")
        wait_key(page, 0, f"{k2}|", timeout=120_000)
        page.wait_for_function("() => { const c = document.querySelector('.leafx-root .lx-take2');"
                               " return c.style.display !== 'none' && c.__drawn; }", timeout=120_000)
        assert nonblank_pixels(page, 0, ".lx-take2") > 50
        page.select_option(".leafx-recorder .lx-take-mode", "diff")
        page.wait_for_function("() => document.querySelector('.leafx-root .lx-take2').__drawn === 'diff'",
                               timeout=30_000)
    except Exception:
        dump_failure(page, console, workdir, "/tmp/leafx-e2e-record.png")
        raise
    finally:
        page.close()
        recording.close()


def test_denied_permission_and_insecure_page_are_said(lab, browser, workdir, fed_wav):
    denying = launch(browser, fake_microphone_args(fed_wav, deny=True))
    page, console = open_recorder(lab, denying, workdir, "denied")
    try:
        page.click(".leafx-recorder .lx-record")
        page.wait_for_function("() => document.querySelector('.leafx-recorder').dataset.error", timeout=30_000)
        message = page.inner_text(".leafx-recorder .lx-rec-msg")
        assert message.startswith("Microphone permission denied: allow the microphone for this page"), message
        assert page.inner_text(".leafx-recorder .lx-record") == "● record"  # ready to try again
        assert page.locator(".leafx-root").count() == 0  # no take, no view
        # the same page as if it were served over http from another host
        page.evaluate("() => Object.defineProperty(window, 'isSecureContext', { value: false })")
        page.click(".leafx-recorder .lx-record")
        page.wait_for_function("() => document.querySelector('.leafx-recorder .lx-rec-msg')"
                               ".textContent.startsWith('Recording needs a secure page')", timeout=30_000)
        assert "https://" in page.inner_text(".leafx-recorder .lx-rec-msg")
    except Exception:
        dump_failure(page, console, workdir, "/tmp/leafx-e2e-denied.png")
        raise
    finally:
        page.close()
        denying.close()
