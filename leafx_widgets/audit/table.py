"""``ex.audit()``: one row per token, the signals that say whether its acoustic support is weak or
misplaced, a suspicion ``score`` and a ``flag``; with a reference, each token's error label.

Signals (each in [0, 1] except ``logprob``):

* ``logprob``: the model's own log p(token) when it was decoded (confidence).
* ``entropy``: the entropy of the token's map over its window's real frames, divided by
  log(frames): 0 = all evidence on one frame, 1 = spread evenly (diffuse support).
* ``outside``: the map's mass outside the time span of the reference word the token's word is
  aligned to (match or substitution); NaN without reference word spans, and for inserted words,
  which have no reference word.
* ``stability``: cosine between the token's map on the clip and on the clip with white noise at
  ``noise_snr_db`` dB SNR, for the same token decoded at the same place (words aligned); 0 when
  the noisy decode changed the token (``changed`` is then True).

Score (documented formula, chosen on the development manifests with ``detection.py``)::

    score = 0.8 * (1 - p(token)) + 0.2 * (1 - stability)      p = exp(logprob)

and ``1 - p(token)`` alone when stability is not computed. ``flag`` = ``score >= threshold``
(default ``FLAG_THRESHOLD``). On the development sets (espeak + LibriVox, clean and with noise at
10 and 5 dB, 100 tokens of misrecognised words among 412) the map's entropy did not separate
errors (AUROC 0.54) and lowered any score it entered, stability under noise helped a little
(0.59 alone; +0.007 AUROC over log-prob when weighted 0.2) and ``outside`` was near chance
(0.57): the score is mostly the model's confidence, which is the honest reading of those numbers.
``entropy`` and ``outside`` stay as columns to read, not to rank by; ``outside`` exists only where
a reference does, so a score using it could not rank tokens of unlabelled audio.

With a reference (text, or word dicts with ``start``/``end`` like a manifest's ``words``),
decoded and reference words are folded and aligned (``bench/align.py``, Levenshtein) and each
token carries ``error``: ``correct`` (every folded piece of its word matched), ``insertion``
(every piece is an extra word) or ``substitution`` (otherwise), with ``ref_word``. Reference
words the transcript lacks are in ``df.attrs["deletions"]`` (a list of ``{"ref_index", "word",
"start", "end", "after_token"}``, ``after_token`` the last token before the gap or -1) and the
clip's WER in ``df.attrs["wer"]``. Without a reference ``error`` and ``ref_word`` are None.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FLAG_THRESHOLD = 0.5
NOISE_SNR_DB = 20.0
COLUMNS = ("token", "text", "word_index", "word", "start_s", "end_s", "peak_s", "logprob", "entropy", "outside",
           "stability", "changed", "score", "flag", "error", "ref_word")
ERRORS = ("correct", "substitution", "insertion")


@dataclass
class Reference:
    text: str
    words: list[dict] | None  # [{"word", "start", "end"}] seconds from the clip start, or None


def parse_reference(reference) -> Reference | None:
    """A transcript string, a list of ``{"word", "start", "end"}`` dicts (a manifest's ``words``), or
    ``{"text": ..., "words": ...}``; None stays None. Anything else is a ValueError naming it."""
    if reference is None or isinstance(reference, Reference):
        return reference
    if isinstance(reference, str):
        if not reference.strip():
            raise ValueError("reference is an empty string; give the transcript the audio should match")
        return Reference(reference, None)
    if isinstance(reference, dict):
        text, words = reference.get("text"), reference.get("words")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"reference['text'] must be a non-empty string, got {text!r}")
        return Reference(text, _check_words(words) if words is not None else None)
    if isinstance(reference, (list, tuple)):
        words = _check_words(reference)
        return Reference(" ".join(w["word"] for w in words), words)
    raise ValueError(f"reference must be a transcript string, a list of {{'word', 'start', 'end'}} dicts or "
                     f"{{'text', 'words'}}, got {type(reference).__name__}")


def _check_words(words) -> list[dict]:
    if not isinstance(words, (list, tuple)) or not words:
        raise ValueError("reference words must be a non-empty list of {'word', 'start', 'end'} dicts")
    for i, w in enumerate(words):
        ok = isinstance(w, dict) and isinstance(w.get("word"), str) and all(
            isinstance(w.get(k), (int, float)) and not isinstance(w.get(k), bool) and math.isfinite(w[k])
            for k in ("start", "end"))
        if not ok or w["end"] < w["start"]:
            raise ValueError(f"reference word {i} must be {{'word': str, 'start': s, 'end': s}} with "
                             f"start <= end, got {w!r}")
    return [dict(w) for w in words]


def normalised_entropy(r: np.ndarray) -> float:
    """Entropy of a map over its frames / log(frames): 0 one frame, 1 uniform."""
    r = np.asarray(r, dtype=np.float64)
    if len(r) <= 1:
        return 0.0
    p = r / r.sum() if r.sum() > 0 else np.full(len(r), 1 / len(r))
    return float(-(p * np.log(p + 1e-12)).sum() / math.log(len(r)))


STABILITY_WEIGHT = 0.2


def suspicion(logprob: float, stability: float) -> float:
    """The documented score: 0.8 (1 - p) + 0.2 (1 - stability); 1 - p when stability is NaN."""
    doubt = 1 - math.exp(logprob)
    if math.isnan(stability):
        return float(doubt)
    return float((1 - STABILITY_WEIGHT) * doubt + STABILITY_WEIGHT * (1 - stability))


def word_errors(ex, reference: Reference):
    """(per-word (error, ref word index or None, ref word text), deletions, WER) from aligning the
    decoded words' folded pieces to the folded reference."""
    from ..bench.align import align_words, fold_words
    from ..bench.runner import word_pieces

    pieces = [(w.index, p) for w in ex.words for p, _ in word_pieces(ex, w)]
    ref_folded = fold_words(reference.text)
    alignment = align_words([p for _, p in pieces], ref_folded)
    # each folded reference piece -> its span (when the word spans line up with the text's words)
    ref_span = None
    if reference.words is not None:
        spans = [(w["start"], w["end"]) for w in reference.words for _ in fold_words(w["word"])]
        ref_span = spans if len(spans) == len(ref_folded) else None
    ops_of_word: dict[int, list] = {}
    deletions, last_hyp = [], -1
    for op in alignment.ops:
        if op.hyp is not None:
            ops_of_word.setdefault(pieces[op.hyp][0], []).append(op)
            last_hyp = op.hyp
        if op.op == "del":
            after = ex.words[pieces[last_hyp][0]].tokens[-1] if last_hyp >= 0 else -1
            start, end = ref_span[op.ref] if ref_span else (None, None)
            deletions.append({"ref_index": op.ref, "word": ref_folded[op.ref], "start": start, "end": end,
                              "after_token": after})
    per_word = []
    for w in ex.words:
        ops = ops_of_word.get(w.index, [])
        kinds = {o.op for o in ops}
        if not ops or kinds == {"match"}:
            error = "correct"  # no folded piece (punctuation only) counts as nothing to get wrong
        elif kinds == {"ins"}:
            error = "insertion"
        else:
            error = "substitution"
        refs = [o.ref for o in ops if o.ref is not None]
        ref_text = " ".join(ref_folded[r] for r in refs) or None
        span = (ref_span[refs[0]][0], ref_span[refs[-1]][1]) if ref_span and refs else None
        per_word.append((error, ref_text, span))
    return per_word, deletions, alignment.wer


def _noisy_twins(ex, noisy) -> dict[int, int]:
    """Clean token index -> the noisy explanation's token with the same id at the same place in the
    same (aligned) word; tokens whose noisy decode differs are absent."""
    from ..bench.align import align_words, fold

    matches = align_words([fold(w.text) for w in ex.words], [fold(w.text) for w in noisy.words]).matches()
    twins = {}
    for w, j in matches.items():
        mine, theirs = ex.words[w].tokens, noisy.words[j].tokens
        for q, t in enumerate(mine):
            if q < len(theirs) and noisy.tokens[theirs[q]].id == ex.tokens[t].id:
                twins[t] = theirs[q]
    return twins


def _token_spans(ex) -> dict[int, tuple[float, float]]:
    """Each token's time span from Whisper's own DTW timing (``whisper_dtw``), when the model has it."""
    from ..methods import get_method

    if ex.model is None or not get_method("whisper_dtw").supports(ex.model):
        return {}
    out = {}
    for tok in ex.tokens:
        frames = np.flatnonzero(ex.map(tok.index, "whisper_dtw") > 0)
        out[tok.index] = (round((tok.start_frame + frames[0]) * ex.frame_s, 3),
                          round((tok.start_frame + frames[-1] + 1) * ex.frame_s, 3))
    return out


def audit(ex, reference=None, *, method: str | None = None, stability: bool = True,
          noise_snr_db: float = NOISE_SNR_DB, seed: int = 0, threshold: float = FLAG_THRESHOLD):
    """The token audit of ``ex`` as a pandas DataFrame (``COLUMNS``); see the module docstring.

    ``reference``: None uses the one given to ``explain(..., reference=...)`` (if any).
    ``method``: the map the signals read (default: DEFAULT_METHOD). ``stability=False`` skips the
    noisy decode (``stability`` NaN, the score is 1 - p).
    """
    import pandas as pd

    from ..bench.manifests import add_noise
    from ..methods import DEFAULT_METHOD

    method = method or DEFAULT_METHOD
    if not 0 <= threshold <= 1 or isinstance(threshold, bool):
        raise ValueError(f"threshold must be a number in [0, 1] (the score's range), got {threshold!r}")
    if not ex.complete:
        ex.decode_all(progress=False)
    ref = parse_reference(reference if reference is not None else getattr(ex, "reference", None))
    if stability and (ex.model is None or ex.audio is None):
        raise ValueError("stability needs the model and the audio (this Explanation was read from JSON); "
                         "explain the audio again, or pass stability=False")
    twins, noisy = {}, None
    if stability and ex.tokens:
        from ..explanation import explain

        clean = np.asarray(ex.audio)  # whole: the noisy twin is a whole recording, explained again
        noisy_audio = add_noise(clean, noise_snr_db, seed=seed, reference=clean[np.abs(clean) > 0])
        noisy = explain(ex.model, noisy_audio, sample_rate=ex.sample_rate, progress=False, precompute=())
        twins = _noisy_twins(ex, noisy)
    per_word, deletions, wer = word_errors(ex, ref) if ref is not None else (None, [], None)
    spans = _token_spans(ex)
    rows = []
    for tok in ex.tokens:
        r = ex.map(tok.index, method)
        entropy = normalised_entropy(r)
        if not stability:
            stab, changed = float("nan"), False
        elif tok.index in twins:
            from ..bench.metrics import cosine

            stab, changed = cosine(ex.map_global(tok.index, method), noisy.map_global(twins[tok.index], method)), False
        else:
            stab, changed = 0.0, True
        error = ref_word = None
        outside = float("nan")
        if per_word is not None:
            error, ref_word, span = per_word[tok.word]
            if span is not None:
                from ..bench.metrics import mass_in_span

                local = (span[0] - tok.start_frame * ex.frame_s, span[1] - tok.start_frame * ex.frame_s)
                outside = 1.0 - mass_in_span(r, local, ex.frame_s) if local[1] > 0 else 1.0
        start, end = spans.get(tok.index, (float("nan"), float("nan")))
        score = suspicion(tok.logprob, stab)
        rows.append({"token": tok.index, "text": tok.text, "word_index": tok.word, "word": ex.words[tok.word].text,
                     "start_s": start, "end_s": end,
                     "peak_s": round((tok.start_frame + int(np.argmax(r)) + 0.5) * ex.frame_s, 4),
                     "logprob": tok.logprob, "entropy": entropy, "outside": outside, "stability": stab,
                     "changed": changed, "score": score, "flag": score >= threshold, "error": error,
                     "ref_word": ref_word})
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df = df.astype({"token": "int64", "word_index": "int64", "changed": "bool", "flag": "bool",
                    **{c: "float64" for c in ("start_s", "end_s", "peak_s", "logprob", "entropy", "outside",
                                              "stability", "score")}})
    df.attrs.update({"deletions": deletions, "wer": wer, "method": method, "threshold": threshold,
                     "noise_snr_db": noise_snr_db if stability else None,
                     "reference": ref.text if ref is not None else None})
    return df
