"""Long-form decoding, piece by piece: segmentation, loop detection, the compression ratio and the options
worked out by hand; then the fallback and silence on real audio (tiny.en)."""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

import leafx_widgets as lw
from leafx_widgets.longform import DecodeOptions, Span, compression_ratio, find_loop, split_segments

TB = 100  # timestamp_begin in these hand-made sequences: ids >= 100 are timestamps, 100 + k is k frames
N = 1500  # frames of the window


# -- split_segments ---------------------------------------------------------------------------------------
def test_pairs_of_timestamps_cut_segments_and_the_tail_is_decoded_again():
    #      <0>   a  b  <50> <50>  c  d  <200> <200>  e
    ids = [100, 5, 6, 150, 150, 7, 8, 300, 300, 9]
    spans, kept, advance = split_segments(ids, TB, N)
    assert spans == [Span(0, 4, 0, 50), Span(4, 8, 50, 200)]
    assert kept == 8  # "<200> e" is unfinished: dropped, decoded again from frame 200
    assert advance == 200


def test_a_single_timestamp_ending_keeps_everything_and_moves_a_whole_window():
    ids = [100, 5, 6, 150, 150, 7, 8, 300]  # ... d <200> then end of text: no speech after
    spans, kept, advance = split_segments(ids, TB, N)
    assert spans == [Span(0, 4, 0, 50), Span(4, 8, 50, 200)]
    assert (kept, advance) == (8, N)
    assert split_segments(ids, TB, 900)[2] == 900  # a last, shorter window: its valid frames


def test_without_a_consecutive_pair_the_window_is_one_segment():
    assert split_segments([100, 5, 6, 7, 250], TB, N) == ([Span(0, 5, 0, 150)], 5, N)
    assert split_segments([130, 5, 6], TB, N) == ([Span(0, 3, 30, N)], 3, N)  # unfinished: ends at the window end
    assert split_segments([5, 6], TB, N) == ([Span(0, 2, 0, N)], 2, N)  # no timestamps at all
    assert split_segments([100, 5, 100], TB, N) == ([Span(0, 3, 0, N)], 3, N)  # <0.00> last: no end time


def test_timestamps_only():
    assert split_segments([], TB, N) == ([], 0, N)
    assert split_segments([100], TB, N) == ([Span(0, 1, 0, N)], 1, N)
    spans, kept, advance = split_segments([100, 100], TB, N)  # a pair at 0: nothing said, move on
    assert spans == [Span(0, 1, 0, 0)] and kept == 1 and advance == N


def test_short_form_is_one_segment(model, speech):
    """Short-form (one window, no timestamps): one segment holding every token of the clip."""
    ex = explain(model, speech)
    assert len(ex.segments) == 1 and ex.segments[0].tokens == list(range(len(ex.tokens)))
    assert ex.segments[0].start == 0 and ex.segments[0].end == pytest.approx(ex.duration_s, abs=0.02)


# -- find_loop --------------------------------------------------------------------------------------------
def test_a_phrase_four_times_in_a_row_is_a_loop_cut_after_its_third_copy():
    phrase = [5, 6, 7]
    ids = [100, *phrase * 4, 150]
    assert find_loop(ids, TB) == 1 + 3 * 3  # where the fourth copy starts
    assert find_loop([100, *phrase * 3, 150], TB) is None  # three copies: allowed
    assert find_loop([9] * 4, TB) == 3
    assert find_loop([9] * 4, TB, max_repeats=4) is None


def test_copies_separated_by_timestamps_are_not_a_loop():
    """Real repeated speech: each copy in its own segment."""
    ids = []
    for k in range(4):
        ids += [100 + 50 * k, 5, 6, 7, 150 + 50 * k]
    assert find_loop(ids, TB) is None


def test_max_n_bounds_the_phrase_length():
    phrase = [1, 2, 3, 4, 5]
    ids = [100, *phrase * 4]
    assert find_loop(ids, TB, max_n=4) is None
    assert find_loop(ids, TB, max_n=5) == 1 + 3 * 5


# -- compression_ratio ------------------------------------------------------------------------------------
def test_compression_ratio():
    assert compression_ratio("") == 0.0
    loop = "I will not be able to do this. " * 8
    assert compression_ratio(loop) == len(loop) / len(zlib.compress(loop.encode()))
    assert compression_ratio(loop) > 2.4  # Whisper's threshold: a loop
    sentence = "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power."
    assert compression_ratio(sentence) < 1.5
    assert compression_ratio("é" * 40) == 80 / len(zlib.compress(("é" * 40).encode()))  # bytes, not characters


# -- DecodeOptions ----------------------------------------------------------------------------------------
def test_unknown_option_names_the_valid_ones():
    with pytest.raises(TypeError) as err:
        DecodeOptions.from_kwargs(beam_size=5)
    message = str(err.value)
    assert message.startswith("unknown decoding option(s) beam_size;")
    for name in ("condition_on_previous_text", "temperatures", "timestamps", "logprob_threshold", "seed"):
        assert name in message


@pytest.mark.parametrize("temperatures", [(-0.2,), (0.0, float("nan")), (float("inf"),), ()])
def test_bad_temperatures(temperatures):
    with pytest.raises(ValueError, match=r"temperatures must be finite and >= 0"):
        DecodeOptions.from_kwargs(temperatures=temperatures)


def test_options_are_normalised():
    assert DecodeOptions.from_kwargs(temperatures=0.3).temperatures == (0.3,)
    assert DecodeOptions.from_kwargs(temperatures=[0, 1]).temperatures == (0.0, 1.0)
    base = DecodeOptions(condition_on_previous_text=False)
    assert DecodeOptions.from_kwargs(base, seed=3) == DecodeOptions(condition_on_previous_text=False, seed=3)


# -- fallback and silence on real audio --------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech():
    return lw.load_audio(lw.sample_path()).samples  # 7.1 s, one sentence


@pytest.fixture
def decode_calls(model, monkeypatch):
    """The temperature of every decoding attempt."""
    calls, decode = [], model.decode

    def spy(encoded, **kwargs):
        calls.append(kwargs.get("temperature", 0.0))
        return decode(encoded, **kwargs)

    monkeypatch.setattr(model, "decode", spy)
    return calls


def explain(model, samples, **options):
    return lw.explain(model, samples, sample_rate=16000, progress=False, precompute=(), **options)


@pytest.fixture(scope="module")
def greedy(model, speech):
    return explain(model, speech, timestamps=True)


def test_every_temperature_is_tried_when_every_attempt_fails(model, speech, greedy, decode_calls):
    """logprob_threshold=0: no attempt passes (a mean log-prob is < 0), so each temperature is tried in
    turn; the most likely attempt is kept (here the greedy one: nothing is marked as a fallback)."""
    ex = explain(model, speech, timestamps=True, logprob_threshold=0.0, temperatures=(0.0, 0.2, 0.4))
    assert decode_calls == [0.0, 0.2, 0.4]
    assert ex.text == greedy.text and ex.windows[0].avg_logprob == greedy.windows[0].avg_logprob
    assert not any(t.fallback for t in ex.tokens)
    decode_calls.clear()
    explain(model, speech, timestamps=True, logprob_threshold=0.0, temperatures=(0.0,))
    assert decode_calls == [0.0]  # no fallback: --no-fallback in the CLI
    decode_calls.clear()
    explain(model, speech, timestamps=True)
    assert decode_calls == [0.0]  # a good window is decoded once


def test_sampled_tokens_are_marked_and_repeatable(model, speech, greedy):
    """A window decoded at a temperature above 0 marks its tokens and segments; the same seed samples
    the same tokens."""
    hot = dict(timestamps=True, temperatures=(0.6,), logprob_threshold=None, compression_ratio_threshold=None)
    ex = explain(model, speech, **hot)
    assert ex.tokens and all(t.temperature == 0.6 and t.fallback for t in ex.tokens)
    assert ex.segments and all(s.temperature == 0.6 for s in ex.segments)
    assert ex.windows[0].temperature == 0.6
    again = explain(model, speech, **hot)
    assert [t.id for t in again.tokens] == [t.id for t in ex.tokens]
    assert not any(t.fallback for t in greedy.tokens) and all(s.temperature == 0 for s in greedy.segments)


def test_a_silent_stretch_yields_no_tokens(model, speech):
    """40 s of digital silence between two copies of one sentence: the sentence twice, nothing invented in
    the silence, and no segment inside it."""
    samples = np.r_[speech, np.zeros(40 * 16000, np.float32), speech]
    ex = explain(model, samples)
    sentence = explain(model, speech).text
    assert ex.text == f"{sentence} {sentence}", [s.text for s in ex.segments]
    silence = (len(speech) / 16000, len(speech) / 16000 + 40)
    for seg in ex.segments:
        assert seg.end <= silence[0] + 0.5 or seg.start >= silence[1] - 1.0, (seg.start, seg.end, seg.text)
    assert math.isclose(ex.decoded_s, ex.duration_s)


# -- resuming after a window that stopped early -------------------------------------------------------------
def test_last_closing_stamp():
    from leafx_widgets.longform import last_closing_stamp

    assert last_closing_stamp([100, 5, 6, 150, 150, 7, 8, 300], TB) == 200  # "... d <200>" then end of text
    assert last_closing_stamp([100, 5, 6, 150, 150, 7], TB) is None  # ends on text
    assert last_closing_stamp([100, 5, 150, 150], TB) is None  # ends on a pair
    assert last_closing_stamp([], TB) is None


def test_a_window_that_stops_early_on_speech_resumes_at_its_last_timestamp(model):
    """Whisper's rule takes the window as done; with 3 s or more of sound after the last timestamp the
    next window starts there, and over silence Whisper's rule stands."""
    from leafx_widgets.longform import LongFormDecoder, RESUME_MIN_FRAMES
    from leafx_widgets.windows import WindowStore

    tb, n = model.timestamp_begin, 1500
    decoder = LongFormDecoder(model, np.zeros(16000, np.float32), DecodeOptions(), WindowStore(np.zeros(1)))
    ids = [tb, 5, 6, tb + 50]  # "<0.00> a b <1.00>", then end of text
    rng = np.random.default_rng(0)
    speech_after = rng.normal(0, 0.1, 480000).astype(np.float32)
    assert decoder._advance(ids, speech_after, n, n) == 50
    silence_after = speech_after.copy()
    silence_after[50 * 320:] = 0
    assert decoder._advance(ids, silence_after, n, n) == n
    short = speech_after.copy()
    short[(50 + RESUME_MIN_FRAMES - 10) * 320:] = 0  # under 3 s of sound left: the window is done
    assert decoder._advance(ids, short, n, n) == n
    assert decoder._advance([tb, 5, tb + 50, tb + 50, 6], speech_after, n, 50) == 50  # a pair: Whisper's seek
