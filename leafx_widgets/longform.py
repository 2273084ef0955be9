"""Whisper's long-form transcription, window by window, keeping what the explanations need.

It follows openai-whisper's ``transcribe`` (and transformers' sequential long-form generate):

- each window is decoded with timestamp tokens; it is cut into segments at each pair of
  consecutive timestamps, and the next window starts (``seek``) at the end of the last complete
  segment, so no speech falls between windows and no word is cut at a fixed 30 s boundary.
  Tokens after the last complete segment are dropped and decoded again in the next window;
- the text of earlier windows is fed after ``<|startofprev|>`` (``condition_on_previous_text``),
  reset after a window decoded at a temperature above 0.5;
- a window whose text compresses too well (a repetition loop: gzip ratio > 2.4) or whose mean
  log-prob is below -1 is decoded again, sampling at the next temperature (0.2, 0.4 ... 1.0); a
  window the model calls silence (p(no speech) > 0.6 with a low log-prob) is skipped, and a window that
  opens on more than 1 s of digital silence starts where the sound does.

Short audio (one window) is decoded as before, greedily and without timestamps, as transformers'
short-form ``generate`` does, unless ``timestamps=True``.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from .models.base import TIMESTAMPS, Decoded
from .windows import Heavy, Window, WindowStore

WINDOW_SILENCE_PEAK = 1e-4  # a window this quiet is skipped instead of decoded (Whisper would hallucinate)
PROMPT_RESET_TEMPERATURE = 0.5  # openai-whisper: no conditioning after a window sampled this hot
# Whisper's first timestamp is at most 1 s into a window (MAX_INITIAL_TIMESTAMP_INDEX): a window that opens
# on longer digital silence starts where the sound does, or its first segment would be dated to the
# silence, and the model, conditioned on earlier text, invents speech there
MAX_SILENT_LEAD_FRAMES = 50
RESUME_MIN_FRAMES = 150  # see LongFormDecoder._advance: 3 s
RESUME_SOUND = 0.1  # ... of frames at least this loud relative to the window's loudest frame


@dataclass(frozen=True)
class DecodeOptions:
    """How ``explain`` decodes (the defaults are openai-whisper ``transcribe``'s)."""

    timestamps: bool | None = None  # None: long-form (timestamps and seeking) when longer than one window
    condition_on_previous_text: bool = True
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    seed: int = 0  # sampling at a fallback temperature is repeatable
    language: str | None = None  # multilingual models: None detects it on the first window with speech
    task: str = "transcribe"  # or "translate" (into English; multilingual models)
    text: str | None = None  # a forced transcript: teacher-forced instead of decoded (audio of one window)

    @classmethod
    def from_kwargs(cls, options: "DecodeOptions | None" = None, **kwargs) -> "DecodeOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown decoding option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        opts = replace(options or cls(), **kwargs)
        temps = opts.temperatures
        if isinstance(temps, (int, float)):
            temps = (float(temps),)
        temps = tuple(float(t) for t in temps)
        if not temps or any(not np.isfinite(t) or t < 0 for t in temps):
            raise ValueError(f"temperatures must be finite and >= 0, got {opts.temperatures!r}")
        if opts.text is not None and (not isinstance(opts.text, str) or not opts.text.strip()):
            raise ValueError(f"text must be a non-empty string (the transcript to force), got {opts.text!r}")
        if opts.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {opts.task!r}")
        return replace(opts, temperatures=temps)


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression: high for a repetition loop."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


MAX_REPEATS = 3  # a phrase said more often than this in a row, within one segment, is a decoding loop
MAX_LOOP_TOKENS = 16


def find_loop(ids: list[int], timestamp_begin: int, *, max_repeats: int = MAX_REPEATS,
              max_n: int = MAX_LOOP_TOKENS) -> int | None:
    """Where the (max_repeats + 1)-th consecutive copy of a phrase of at most ``max_n`` text tokens
    starts, within one segment (no timestamp inside the copies); None without such a loop."""
    for i in range(len(ids)):
        for n in range(1, max_n + 1):
            phrase = ids[i:i + n]
            if len(phrase) < n or any(t >= timestamp_begin for t in phrase):
                break
            copies = 1
            while ids[i + copies * n: i + (copies + 1) * n] == phrase:
                copies += 1
                if copies > max_repeats:
                    return i + max_repeats * n
    return None


@dataclass
class Span:
    """A segment of one window: ids[first:stop] (timestamps included), frames [start, end) of the window."""

    first: int
    stop: int
    start_frame: int
    end_frame: int


def split_segments(ids: list[int], timestamp_begin: int, n_valid: int) -> tuple[list[Span], int, int]:
    """openai-whisper's segmentation of one window's tokens (end-of-text excluded).

    Returns the segments, how many leading ids they keep (the tail after the last complete
    segment is decoded again in the next window) and the frames the next window advances by.
    """
    is_ts = [t >= timestamp_begin for t in ids]
    consecutive = [i for i in range(1, len(ids)) if is_ts[i - 1] and is_ts[i]]
    single_ending = len(ids) >= 2 and is_ts[-2:] == [False, True] or len(ids) == 1 and is_ts[0]
    if consecutive:
        slices = consecutive + ([len(ids)] if single_ending else [])
        spans, last = [], 0
        for stop in slices:
            part = ids[last:stop]
            spans.append(Span(last, stop, part[0] - timestamp_begin, part[-1] - timestamp_begin))
            last = stop
        if single_ending:
            return spans, len(ids), n_valid
        advance = ids[last - 1] - timestamp_begin
        return spans, last, advance if advance > 0 else n_valid
    # one segment: it ends at its last timestamp if that closes text; an opening timestamp alone
    # (``<|0.60|> text`` then end of text) leaves it unfinished, running to the window's end
    closing = [i for i in range(1, len(ids)) if is_ts[i] and ids[i] != timestamp_begin]
    end = ids[closing[-1]] - timestamp_begin if closing else n_valid
    start = ids[0] - timestamp_begin if ids and is_ts[0] else 0
    return [Span(0, len(ids), start, end)] if ids else [], len(ids), n_valid


def last_closing_stamp(ids: list[int], timestamp_begin: int) -> int | None:
    """The frame of the timestamp that closes the window's text when decoding then ended (a single
    timestamp ending); None when the text ends otherwise."""
    is_ts = [t >= timestamp_begin for t in ids]
    if len(ids) >= 2 and is_ts[-1] and not is_ts[-2]:
        return ids[-1] - timestamp_begin
    return None


@dataclass
class DecodedWindow:
    window: Window
    spans: list[Span]  # segments, in the window's ids and frames


class LongFormDecoder:
    """Decodes ``samples`` window by window (``next()``), as described in the module docstring."""

    def __init__(self, model, samples: np.ndarray, options: DecodeOptions, store: WindowStore):
        self.model, self.samples, self.options, self.store = model, samples, options, store
        self.samples_per_frame = model.window_samples // model.n_window_frames
        self.total_frames = -(-len(samples) // self.samples_per_frame)  # frames of real audio
        long = len(samples) > model.window_samples
        if options.text is not None and long:
            raise ValueError(f"a forced transcript (text=) needs audio of at most one window "
                             f"({model.window_samples / model.sample_rate:g} s); this is "
                             f"{len(samples) / model.sample_rate:.1f} s: cut it into windows and force each")
        if options.text is not None and options.timestamps:
            raise ValueError("a forced transcript (text=) carries no timestamps; leave timestamps unset")
        self.timestamps = long if options.timestamps is None else bool(options.timestamps)
        if self.timestamps and TIMESTAMPS not in model.supports:
            if options.timestamps:
                raise ValueError(f"{model.name} cannot decode with timestamps; pass timestamps=False")
            self.timestamps = False
        model.check_language(options.language or getattr(model, "language", None), options.task)
        self.language = options.language or getattr(model, "language", None)
        self.language_probs: dict[str, float] | None = None  # when detected
        self.seek = 0  # next window's first frame
        self.history: list[int] = []  # kept tokens of earlier windows (timestamps included), for conditioning
        self.reset_at = 0  # conditioning starts here (reset after a hot fallback)
        self.index = 0

    @property
    def done(self) -> bool:
        return self.seek >= self.total_frames

    @property
    def decoded_s(self) -> float:
        return min(self.seek, self.total_frames) * self.samples_per_frame / self.model.sample_rate

    def next(self) -> DecodedWindow | None:
        if self.done:
            return None
        model, start = self.model, self.seek * self.samples_per_frame
        chunk = self.samples[start: start + model.window_samples]
        if self.timestamps:
            sound = np.flatnonzero(np.abs(chunk) >= WINDOW_SILENCE_PEAK)
            lead = sound[0] // self.samples_per_frame if sound.size else 0
            if lead > MAX_SILENT_LEAD_FRAMES:
                self.seek += int(lead)
                start = self.seek * self.samples_per_frame
                chunk = self.samples[start: start + model.window_samples]
        n_valid = model.valid_frames(len(chunk))
        window = Window(index=self.index, adapter=model, offset_frames=self.seek, offset_samples=start,
                        n_valid=n_valid, prompt=[], ids=[], logprobs=[])
        self.index += 1
        if len(chunk) == 0 or np.abs(chunk).max() < WINDOW_SILENCE_PEAK:
            self.seek += n_valid
            return DecodedWindow(window, [])
        features = model.features(chunk)
        with torch.no_grad():
            encoded = model.encode(features)
        window.store = self.store
        self.store.put(window.index, Heavy(features, encoded))
        if self.language is None:  # detected once, on the first window with sound (openai-whisper's rule)
            self.language_probs = model.language_probs(encoded)
            self.language = next(iter(self.language_probs)) if self.language_probs else "en"
        if self.options.text is not None:
            decoded = self._forced(encoded, self.options.text)
            self._fill(window, decoded, len(decoded.ids))
            self.seek += model.n_window_frames
            return DecodedWindow(window, [Span(0, len(decoded.ids), 0, n_valid)] if decoded.ids else [])
        if not self.timestamps:
            decoded = model.decode(encoded, language=self.language, task=self.options.task)
            self._fill(window, decoded, len(decoded.ids))
            self.seek += model.n_window_frames  # fixed windows, one after the other
            return DecodedWindow(window, [Span(0, len(decoded.ids), 0, n_valid)] if decoded.ids else [])
        decoded, stats = self._decode_with_fallback(window, encoded)
        if self._is_silence(stats):
            # Whisper skips the whole window; when the doubtful text closed on a timestamp well before
            # the window's end, only that far (tiny.en says "himself." with p(no speech) 0.6 and stops,
            # on a window whose other 29 s are speech)
            self.seek += self._advance(decoded.ids, chunk, n_valid, n_valid)
            window.no_speech_prob = decoded.no_speech_prob
            return DecodedWindow(window, [])
        spans, kept, advance = split_segments(decoded.ids, model.timestamp_begin, n_valid)
        advance = self._advance(decoded.ids, chunk, n_valid, advance)
        self._fill(window, decoded, kept)
        window.temperature, window.avg_logprob, window.compression_ratio = decoded.temperature, *stats[:2]
        window.no_speech_prob = decoded.no_speech_prob
        self.seek += min(advance, n_valid)
        self.history += window.ids
        if not self.options.condition_on_previous_text or decoded.temperature > PROMPT_RESET_TEMPERATURE:
            self.reset_at = len(self.history)
        return DecodedWindow(window, spans)

    def _advance(self, ids: list[int], chunk: np.ndarray, n_valid: int, advance: int) -> int:
        """Frames to the next window. Where decoding ended on a timestamp, openai-whisper takes the
        window as done; but tiny.en often stops early (it said "himself." and stopped on a window
        whose other 29 s were speech: 30 s lost). So when at least RESUME_MIN_FRAMES of sound
        (frames RESUME_SOUND as loud as the window's loudest) follow that timestamp, the next
        window starts there instead. Silence after it keeps Whisper's rule: a window of mostly
        silence invites invented text ("you")."""
        stamp = last_closing_stamp(ids, self.model.timestamp_begin)
        if stamp is None or not 0 < stamp < n_valid - RESUME_MIN_FRAMES:
            return min(advance, n_valid)
        frames = chunk[: n_valid * self.samples_per_frame]
        frames = np.pad(frames, (0, n_valid * self.samples_per_frame - len(frames)))
        rms = np.sqrt(np.mean(frames.reshape(n_valid, -1).astype(np.float64) ** 2, axis=1))
        loud = rms[stamp:] >= RESUME_SOUND * max(rms.max(), 1e-12)
        return stamp if int(loud.sum()) >= RESUME_MIN_FRAMES else min(advance, n_valid)

    def _forced(self, encoded: torch.Tensor, text: str) -> Decoded:
        """``text`` teacher-forced: its tokens with their log-probs under the model (no decoding)."""
        model = self.model
        ids = model.encode_text(text)
        prompt = model.prompt(encoded, timestamps=False, language=self.language, task=self.options.task)
        budget = model.max_text_positions - len(prompt)
        if len(ids) > budget:
            raise ValueError(f"the forced transcript has {len(ids)} tokens; {model.name} reads at most {budget} "
                             "after its prompt in one window")
        with torch.no_grad():
            logprobs = model.teacher_forced(encoded, prompt, ids).logprobs.float().tolist()
        return Decoded(prompt=prompt, ids=ids, logprobs=logprobs)

    # -- one window -------------------------------------------------------------------------------
    def _fill(self, window: Window, decoded: Decoded, kept: int) -> None:
        window.prompt = list(decoded.prompt)
        window.ids = list(decoded.ids[:kept])
        window.logprobs = list(decoded.logprobs[:kept])
        window.text_positions = [p for p, t in enumerate(window.ids) if not self.model.is_timestamp(t)]
        window.temperature = decoded.temperature

    def _stats(self, decoded: Decoded) -> tuple[float, float]:
        """(mean log-prob, compression ratio). The mean is openai-whisper's: the text and timestamp
        tokens' log-probs and the end-of-text token's, over len + 1. An empty window thus scores the
        log-prob of ending at once: low when the model stops on speech, which then falls back.

        The ratio is the largest of the window's segments, each on its own, not of the whole window's
        text as in openai-whisper: speech that really repeats (a sentence said six times) compresses as
        well as a decoding loop when its segments are joined, and would be thrown away for a sample
        at a higher temperature. A loop within a segment still compresses well, and ``find_loop``
        catches a phrase repeated in a row."""
        avg = float((sum(decoded.logprobs) + (decoded.end_logprob or 0.0)) / (len(decoded.ids) + 1))
        spans = split_segments(decoded.ids, self.model.timestamp_begin, self.model.n_window_frames)[0]
        ratios = [compression_ratio(self.model.text([t for t in decoded.ids[s.first:s.stop]
                                                     if not self.model.is_timestamp(t)])) for s in spans]
        ratio = max(ratios, default=0.0)
        if find_loop(decoded.ids, self.model.timestamp_begin) is not None:
            ratio = max(ratio, math.inf)
        return avg, ratio

    def _decode_with_fallback(self, window: Window, encoded: torch.Tensor) -> tuple[Decoded, tuple]:
        """openai-whisper's temperature fallback; a window it would skip as silence while conditioned on
        earlier text is decoded once more without that text, and skipped only if silent again.

        The deviation is measured: on the 121 s stitched recording with a 0.5 s lead, tiny.en,
        conditioned on the first window's 91 tokens, wrote "himself." for a window full of speech
        with p(no speech) 0.80, and Whisper's rule dropped 30 s (recall 0.686 instead of 0.871)."""
        previous = self.history[self.reset_at:] if self.options.condition_on_previous_text else []
        decoded, stats = self._attempts(window, encoded, previous)
        if previous and self._is_silence(stats):
            decoded, stats = self._attempts(window, encoded, [])
        return decoded, stats

    def _attempts(self, window: Window, encoded: torch.Tensor, previous: list[int]) -> tuple[Decoded, tuple]:
        opts = self.options
        tried = []
        for temperature in opts.temperatures:
            generator = None
            if temperature > 0:
                generator = torch.Generator(device=self.model.device).manual_seed(opts.seed + window.index)
            decoded = self.model.decode(encoded, previous=previous, timestamps=True, temperature=temperature,
                                        generator=generator, language=self.language, task=opts.task)
            avg, ratio = self._stats(decoded)
            tried.append((decoded, (avg, ratio)))
            too_repetitive = opts.compression_ratio_threshold is not None and ratio > opts.compression_ratio_threshold
            too_unlikely = opts.logprob_threshold is not None and avg < opts.logprob_threshold
            if self._is_silence((avg, ratio), decoded.no_speech_prob):
                too_unlikely = too_repetitive = False  # silence: nothing to retry
            if not (too_repetitive or too_unlikely):
                break
        else:
            # every temperature failed: keep the most likely attempt (openai-whisper keeps the last,
            # sampled at 1.0), with a loop in it cut after its third copy
            decoded, (avg, ratio) = max(tried, key=lambda d: d[1][0])
            loop = find_loop(decoded.ids, self.model.timestamp_begin)
            if loop is not None:
                decoded = replace(decoded, ids=decoded.ids[:loop], logprobs=decoded.logprobs[:loop])
                avg, ratio = self._stats(decoded)
        return decoded, (avg, ratio, decoded.no_speech_prob)

    def _is_silence(self, stats, no_speech_prob=None) -> bool:
        opts = self.options
        p = stats[2] if no_speech_prob is None and len(stats) > 2 else no_speech_prob
        if opts.no_speech_threshold is None or p is None or p <= opts.no_speech_threshold:
            return False
        return opts.logprob_threshold is None or stats[0] < opts.logprob_threshold
