"""``explain_many``: several recordings explained in lockstep, their windows batched through the model.

Each round takes the next window of every recording in flight (at most ``batch_size``), computes
their features and runs the encoder on all of them at once, then decodes them greedily in batches
of windows whose prompts have one length. A batch is never padded, so each row computes what it
computes alone: on a CPU each window gets exactly the tokens ``explain`` gives it (tested; on a GPU,
kernels picked by batch size may round the last bits differently, which can flip a near-tie). That covers the first
window of every recording, every window of short-form audio (<= 30 s) and of
``condition_on_previous_text=False``, and, with conditioning, every window once the text so far
fills the prompt (half the decoder's context: from the third or fourth window of speech on);
a window whose prompt length no other shares is decoded on its own. What stays per window: the
temperature fallback (a window whose greedy text fails the compression-ratio or log-prob test is
decoded again, sampling, on its own) and the maps ``precompute`` asks for.

The gain is on a GPU, where one window alone leaves the device idle; on a CPU the work is the same.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from . import longform
from ._progress import progress as _progress
from .audio import AudioError
from .explanation import Explanation, explain


def explain_many(model, sources, *, batch_size: int = 8, sample_rate: int | None = None, progress=None,
                 **options) -> list[Explanation]:
    """``explain`` each of ``sources`` (paths or arrays, all read before any decoding), their windows
    decoded in batches of up to ``batch_size`` recordings; the explanations, in the order of ``sources``,
    hold the same tokens as ``explain`` gives each alone. ``model``: an adapter (its device and dtype
    are used) or a name. ``sample_rate``: for arrays. ``progress``: as ``explain``'s, over all the audio.
    ``options``: ``explain``'s (``kept_windows``, ``precompute``, ``max_duration_s``, decoding options)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if isinstance(sources, (str, Path, np.ndarray)):
        raise TypeError("sources must be a list of paths or arrays; for one recording use explain()")
    sources = list(sources)
    if isinstance(model, (str, Path)):
        from .models import load_model

        model = load_model(model)
    explanations = []
    for i, source in enumerate(sources):  # every recording is read and checked before anything is decoded
        try:
            explanations.append(explain(model, source, sample_rate=sample_rate, wait=False, **options))
        except (AudioError, OSError) as err:
            raise type(err)(f"sources[{i}]: {err}") from None
    total = float(sum(ex.duration_s for ex in explanations))
    report = progress if callable(progress) else None
    enabled = False if report or total <= model.window_samples / model.sample_rate else progress
    waiting = list(explanations)
    in_flight: list[Explanation] = []
    with _progress(None, total=round(total, 1), desc="decoding", unit="s", enabled=enabled) as bar:
        while waiting or in_flight:
            while waiting and len(in_flight) < batch_size:
                in_flight.append(waiting.pop(0))
            _round(model, in_flight)
            in_flight = [ex for ex in in_flight if not ex.complete]
            decoded = sum(ex.decoded_s for ex in explanations)
            bar.update(round(decoded, 1) - bar.n)
            if report:
                report(decoded, total)
    return explanations


def _round(model, explanations: list[Explanation]) -> None:
    """The next window of each recording: features and encoder in one batch, first decodings in batches."""
    rows = []  # (explanation, chunk) of the windows the model will see
    for ex in explanations:
        chunk = _next_chunk(ex._decoder)
        if len(chunk) and np.abs(chunk).max() >= longform.WINDOW_SILENCE_PEAK:
            rows.append((ex, chunk))
        else:
            ex.decode_next()  # silence: skipped without the model
    if not rows:
        return
    features = torch.cat([model.features(chunk) for _, chunk in rows])
    with torch.no_grad():
        encoded = model.encode(features)
    requests, decoded = [None] * len(rows), [None] * len(rows)
    if hasattr(model, "decode_batch"):  # else only the encoder runs batched (one decode per window)
        requests = [_first_decoding(model, ex._decoder, encoded[i:i + 1]) for i, (ex, _) in enumerate(rows)]
        groups = defaultdict(list)
        for i, request in enumerate(requests):
            if request is not None:
                groups[(len(request[0]), request[1][1])].append(i)
        for (_, timestamps), members in groups.items():
            outs = model.decode_batch(encoded[members], [requests[i][0] for i in members], timestamps=timestamps)
            for i, out in zip(members, outs):
                decoded[i] = out
    for i, (ex, chunk) in enumerate(rows):
        served = _Prepared(model, chunk, features[i:i + 1], encoded[i:i + 1],
                           decoded[i], requests[i][1] if requests[i] is not None else None)
        decoder = ex._decoder
        decoder.model = served
        try:
            window = ex.decode_next()
        finally:
            decoder.model = model
        window.adapter = model
        if not served.used:
            raise RuntimeError("explain_many: the batch did not match the window decoded "
                               f"(offset {window.offset_samples} samples); long-form decoding changed under it")


def _next_chunk(decoder: longform.LongFormDecoder) -> np.ndarray:
    """The samples ``decoder.next()`` will decode (``LongFormDecoder.next``'s choice, without moving)."""
    spf, size = decoder.samples_per_frame, decoder.model.window_samples
    start = decoder.seek * spf
    chunk = decoder.samples[start: start + size]
    if decoder.timestamps:  # a window opening on long digital silence starts where the sound does
        sound = np.flatnonzero(np.abs(chunk) >= longform.WINDOW_SILENCE_PEAK)
        lead = sound[0] // spf if sound.size else 0
        if lead > longform.MAX_SILENT_LEAD_FRAMES:
            chunk = decoder.samples[start + lead * spf: start + lead * spf + size]
    return chunk


def _first_decoding(model, decoder: longform.LongFormDecoder, encoded: torch.Tensor):
    """(prompt, request) of the window's first, greedy decoding, ``request`` being the arguments
    ``decoder.next()`` will pass to ``decode``; None when it will not decode greedily (a forced transcript,
    a first temperature above 0)."""
    opts = decoder.options
    if opts.text is not None:
        return None
    language = decoder.language
    if language is None:  # detected on the first window with sound, as next() will
        probs = model.language_probs(encoded)
        language = next(iter(probs)) if probs else "en"
    if not decoder.timestamps:
        return model.prompt(encoded, language=language, task=opts.task), ([], False, language, opts.task)
    if opts.temperatures[0] != 0:
        return None
    previous = decoder.history[decoder.reset_at:] if opts.condition_on_previous_text else []
    return (model.prompt(encoded, previous, True, language=language, task=opts.task),
            (list(previous), True, language, opts.task))


class _Prepared:
    """The model, except that one window's features, encoder output and first greedy decoding are the
    ones computed in the batch (each served only for the very input it was computed from)."""

    def __init__(self, model, chunk, features, encoded, decoded, request):
        self._model, self._chunk, self._features, self._encoded = model, chunk, features, encoded
        self._decoded, self._request = decoded, request
        self.used = False

    def __getattr__(self, name):
        return getattr(self._model, name)

    def features(self, audio: np.ndarray) -> torch.Tensor:
        same = (len(audio) == len(self._chunk) and audio.__array_interface__["data"][0]
                == self._chunk.__array_interface__["data"][0])  # the same stretch of the same samples
        if not same:
            return self._model.features(audio)
        self.used = True
        return self._features

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self._encoded if features is self._features else self._model.encode(features)

    def decode(self, encoded, *, previous=(), timestamps: bool = False, temperature: float = 0.0, generator=None,
               language=None, task: str = "transcribe"):
        if (self._decoded is not None and encoded is self._encoded and temperature == 0
                and (list(previous), bool(timestamps), language, task) == self._request):
            decoded, self._decoded = self._decoded, None
            return decoded
        return self._model.decode(encoded, previous=previous, timestamps=timestamps, temperature=temperature,
                                  generator=generator, language=language, task=task)
