"""Does activation patching localise? For each word of the dev clips, restore the encoder output over the
word's own span (from the manifest) and over an equally long span elsewhere in the clip, and compare how
much of the word's first token's log-prob each recovers (the normalised effect, 0 = corrupted, 1 = clean).

    python -m leafx_widgets.bench.patch_localise /tmp/lfdata/librivox.json /tmp/lfdata/espeak.json [--corrupt silence]

Words are matched to decoded words in order by their folded text (``align``); a word the model did not
decode, or whose clean and corrupted log-probs agree, is skipped. The "elsewhere" span is drawn at random
(seeded) among the clip's spans of the same length that do not overlap the word.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def localisation(model, clips, *, corrupt: str = "silence", seed: int = 0) -> dict:
    import leafx_widgets as lw

    from . import align

    rng = np.random.default_rng(seed)
    wins, own_effects, other_effects, skipped = [], [], [], 0
    for clip in clips:
        ex = lw.explain(model, clip.path, progress=False, precompute=())
        decoded = [align.fold_words(w.text) for w in ex._words]
        used = 0
        for ref in clip.words:
            target = align.fold_words(ref["word"])
            match = next((i for i in range(used, len(decoded)) if decoded[i] == target), None)
            if match is None:
                skipped += 1
                continue
            used = match + 1
            token = ex._words[match].tokens[0]
            end_s = ex.tokens[token].n_frames * ex.frame_s
            length = ref["end"] - ref["start"]
            starts = [s for s in np.arange(0, end_s - length, ex.frame_s)
                      if s + length <= ref["start"] or s >= ref["end"]]
            if not starts:
                skipped += 1
                continue
            other = float(rng.choice(starts))
            clean = ex.patch(token, corrupt, restore=("encoder",))
            dirty = ex.patch(token, corrupt)
            if abs(clean - dirty) < 1e-3:
                skipped += 1
                continue
            own = ex.patch(token, corrupt, restore=(("time", ref["start"], min(ref["end"], end_s)),))
            elsewhere = ex.patch(token, corrupt, restore=(("time", other, other + length),))
            own_effects.append((own - dirty) / (clean - dirty))
            other_effects.append((elsewhere - dirty) / (clean - dirty))
            wins.append(own > elsewhere)
    wins = np.array(wins, dtype=float)
    return {"words": len(wins), "skipped": skipped, "fraction_own_span_wins": float(wins.mean()) if len(wins) else None,
            "mean_effect_own": float(np.mean(own_effects)) if own_effects else None,
            "mean_effect_elsewhere": float(np.mean(other_effects)) if other_effects else None, "corrupt": corrupt}


EXAMPLES = """examples:
  python -m leafx_widgets.bench.patch_localise librivox.json espeak.json
  python -m leafx_widgets.bench.patch_localise cards.json --corrupt noise --seed 1"""


def main(argv=None) -> int:
    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.patch_localise", formatter_class=HelpFormatter,
                                     description=__doc__.split("\n\n")[0], epilog=EXAMPLES)
    parser.add_argument("manifests", nargs="+", help="manifest JSON files whose words are patched")
    parser.add_argument("--model", default="tiny.en", help="model name or folder")
    parser.add_argument("--corrupt", default="silence", choices=("silence", "noise"), help="what replaces the audio")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of the spans elsewhere")
    args = parser.parse_args(argv)
    import leafx_widgets as lw

    from .manifests import load_manifests

    model = lw.load_model(args.model)
    for name, clips in load_manifests(args.manifests):
        print(name, localisation(model, clips, corrupt=args.corrupt, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
