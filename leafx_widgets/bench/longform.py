"""Long recordings stitched from short clips with known words, and how well they are transcribed.

``stitch`` joins manifest clips (LibriVox, espeak-ng) with silent gaps into one recording and
keeps every reference word's span in it; ``evaluate`` aligns an explanation of that recording to
the references: word recall, the words that cross a fixed 30 s boundary, and whether each matched
word's map peaks inside its own clip. ``python -m leafx_widgets.bench.longform`` prints the table
the README quotes (long-form recall against decoding each clip on its own, and against transformers'
own long-form ``generate`` with openai-whisper's defaults on the same recording).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np

from . import align
from .manifests import Clip

SAMPLE_RATE = 16000


@dataclass
class Placed:
    clip: str
    start_s: float  # where the clip starts in the stitched recording
    end_s: float
    text: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end"} in the stitched recording


@dataclass
class Stitched:
    samples: np.ndarray
    clips: list[Placed]
    sample_rate: int = SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def reference(self) -> list[str]:
        return [w for c in self.clips for w in align.fold_words(c.text)]


def read_clip(clip: Clip) -> np.ndarray:
    from ..audio import load_audio

    return load_audio(clip.path, target_rate=SAMPLE_RATE).samples


def stitch(clips: list[Clip], *, gap_s: float = 0.8, repeat: int = 1, lead_s: float = 0.0) -> Stitched:
    """The clips one after another (``repeat`` times over), ``gap_s`` of digital silence between."""
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE)), np.float32)
    pieces, placed, at = [np.zeros(int(round(lead_s * SAMPLE_RATE)), np.float32)], [], lead_s
    cached: dict[str, np.ndarray] = {}
    for _ in range(repeat):
        for clip in clips:
            samples = cached.setdefault(clip.id, read_clip(clip))
            length = len(samples) / SAMPLE_RATE
            words = [{"word": w["word"], "start": at + w["start"], "end": at + w["end"]} for w in clip.words or []]
            placed.append(Placed(clip.id, at, at + length, clip.text, words))
            pieces += [samples, gap]
            at += length + gap_s
    return Stitched(np.concatenate(pieces).astype(np.float32), placed)


def recall(hyp_text: str, ref_text_or_words) -> tuple[float, align.Alignment]:
    """Share of reference words matched exactly (after folding) by the hypothesis."""
    ref = align.fold_words(ref_text_or_words)
    alignment = align.align_words(align.fold_words(hyp_text), ref)
    return len(alignment.matches()) / max(len(ref), 1), alignment


def _hyp_words(ex) -> list[tuple[int, str]]:
    """(explanation word index, folded piece) for every folded piece of every word."""
    out = []
    for word in ex._words:
        for piece in align.fold_words(word.text):
            out.append((word.index, piece))
    return out


def evaluate(ex, stitched: Stitched, *, boundary_s: float = 30.0, method: str | None = None) -> dict:
    """Recall, boundary words and map peaks of ``ex`` (an explanation of ``stitched``)."""
    hyp = _hyp_words(ex)
    ref_words = [(c, w) for c in stitched.clips for w in (c.words or [])]
    ref = [p for _, w in ref_words for p in align.fold_words(w["word"])][: len(ref_words)]
    if len(ref) != len(ref_words):  # a reference word that folds to several (a numeral): use the text
        ref_words = []
    alignment = align.align_words([p for _, p in hyp], [p for c in stitched.clips for p in align.fold_words(c.text)])
    matches = alignment.matches()
    n_ref = alignment.n_ref
    result = {"duration_s": round(stitched.duration_s, 1), "n_ref": n_ref, "matched": len(matches),
              "recall": len(matches) / max(n_ref, 1), "windows": len(ex.windows), "segments": len(ex.segments)}
    if not ref_words:
        return result
    crossing = [j for j, (_, w) in enumerate(ref_words)
                if int(w["start"] // boundary_s) != int(w["end"] // boundary_s)]
    matched_refs = set(matches.values())
    result["boundary_words"] = len(crossing)
    result["boundary_intact"] = sum(j in matched_refs for j in crossing)
    if method is not None:
        inside = 0
        for h, r in matches.items():
            word = ex._words[hyp[h][0]]
            clip = ref_words[r][0]
            peak = ex._peak(word, method, {})
            inside += clip.start_s <= peak <= clip.end_s
        result["peak_in_clip"] = inside / max(len(matches), 1)
    return result


def clip_by_clip_recall(model, clips: list[Clip]) -> float:
    """Recall when every clip is decoded on its own (the ceiling long-form decoding aims at)."""
    from ..explanation import explain

    hyp, ref = [], []
    for clip in clips:
        hyp.append(explain(model, read_clip(clip), sample_rate=SAMPLE_RATE, progress=False).text)
        ref.append(clip.text)
    return recall(" ".join(hyp), " ".join(ref))[0]


def reference_row(model, stitched: Stitched, **options) -> dict:
    """Recall of transformers' own long-form ``generate`` with openai-whisper's transcribe defaults (fallback,
    thresholds, conditioning; ``options`` override them) on the same recording: the reference implementation."""
    from .speed import WHISPER_TRANSCRIBE, hf_transcribe

    value, alignment = recall(hf_transcribe(model, stitched.samples, **{**WHISPER_TRANSCRIBE, **options}),
                              [p for c in stitched.clips for p in align.fold_words(c.text)])
    return {"recall": value, "matched": len(alignment.matches()), "n_ref": alignment.n_ref}


EXAMPLES = """examples:
  python -m leafx_widgets.bench.longform --manifest librivox.json --manifest espeak.json --method leafx_sf
  python -m leafx_widgets.bench.longform --manifest cards.json --gap 0 --repeat 2"""


def main(argv=None) -> int:
    from ..models import load_model
    from .console import HelpFormatter
    from .manifests import load_manifests

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.longform", formatter_class=HelpFormatter,
                                     description="Long-form transcription of recordings stitched from manifest clips.",
                                     epilog=EXAMPLES)
    parser.add_argument("--manifest", action="append", required=True, help="manifest JSON (repeatable)")
    parser.add_argument("--model", default="tiny.en", help="model name or folder")
    parser.add_argument("--gap", type=float, default=0.8, help="seconds of silence between clips")
    parser.add_argument("--repeat", type=int, default=1, help="times the clip list is repeated")
    parser.add_argument("--method", default=None, help="also check each matched word's map peak under METHOD")
    args = parser.parse_args(argv)
    from ..explanation import explain

    model = load_model(args.model)
    clips = [c for _, cs in load_manifests(args.manifest) for c in cs]
    stitched = stitch(clips, gap_s=args.gap, repeat=args.repeat)
    rows = []
    for label, options in (("long-form", {}), ("long-form, no conditioning", {"condition_on_previous_text": False}),
                           ("fixed 30 s windows", {"timestamps": False})):
        t0 = time.perf_counter()
        ex = explain(model, stitched.samples, sample_rate=SAMPLE_RATE, progress=False, **options)
        row = evaluate(ex, stitched, method=args.method)
        row.update(label=label, seconds=round(time.perf_counter() - t0, 1))
        rows.append(row)
    for label, options in (("transformers generate, Whisper's defaults", {}),
                           ("transformers generate, no conditioning", {"condition_on_prev_tokens": False})):
        t0 = time.perf_counter()
        rows.append(reference_row(model, stitched, **options))
        rows[-1].update(label=label, seconds=round(time.perf_counter() - t0, 1))
    clipwise = clip_by_clip_recall(model, clips)
    print(f"{len(clips)} clips x{args.repeat}, {stitched.duration_s:.1f} s, gaps {args.gap} s; "
          f"clip-by-clip recall {clipwise:.3f}")
    keys = ["label", "recall", "matched", "n_ref", "boundary_intact", "boundary_words", "peak_in_clip",
            "windows", "seconds"]
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3f}" if isinstance(row.get(k), float) and k != "seconds" else str(row.get(k, ""))
                         for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
