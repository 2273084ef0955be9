"""Why does the paper's LEAF-X recipe localise badly on a small Whisper?  A localisation-only sweep.

    python -m leafx_widgets.bench.diagnose --manifest librivox.json --manifest espeak.json [--model tiny.en]

For the first token of every matched word: pointing game, top-k IoU, mass in span, and
where the map's peak sits (``start``: first 3 frames, ``border``: last 3 real frames,
``before``: ends before the word span minus 20 ms) for LEAF-X configurations with single
switches flipped (rollout, entropy, frames) and the main baselines. Decoder passes only:
a few minutes on tiny.en.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import metrics as M
from ..atomic import atomic_write
from .console import HelpFormatter
from .manifests import load_manifests
from .runner import matched_tokens, parse_method

CUSTOM = {  # LeafxConfig switches the registry does not expose as parameters
    "base(rollout=False)": dict(rollout=False),
    "base(rollout=False,frames=all)": dict(rollout=False, frames="all"),
    "base(entropy=False,rollout=False)": dict(entropy=False, rollout=False),
}
SPECS = ["base", "base@frames=all", *CUSTOM, "base@depth=one", "base@depth=one,frames=all", "grad", "causal",
         "leafx_no_rollout", "raa_mean", "raa_last", "rollout", "leafx_sf", "leafx_sf_full", "leafx_sf@delta=0.001",
         "leafx_sf@tau=1", "leafx_sf@layers=last_half", "whisper_dtw", "saco", "ta"]
KEYS = ("pg", "iou", "mass", "border", "start", "before")


def diagnose(manifests, model="tiny.en", specs=SPECS, *, allow_outside_paths: bool = False) -> dict:
    from .. import explain, load_model
    from ..methods.leafx import LeafxConfig, leafx_window

    datasets = load_manifests(manifests, allow_outside_paths=allow_outside_paths)  # checked before the model loads
    adapter = load_model(model) if isinstance(model, str) else model
    rows: dict = {s: {} for s in specs}
    for ds, clips in datasets:
        for clip in clips:
            ex = explain(adapter, str(clip.path))
            toks, _, _ = matched_tokens(ex, clip)
            for s in specs:
                for w_index in {t.window for t in toks}:
                    w = ex.windows[w_index]
                    wt = [t for t in toks if t.window == w_index]
                    pos = [t.position for t in wt]
                    if s in CUSTOM:
                        maps = leafx_window(adapter, w.encoded, w.prompt, w.ids, w.n_valid,
                                            LeafxConfig(**CUSTOM[s])).maps[pos].numpy()
                    else:
                        spec = parse_method(s)
                        maps = spec.method.compute(w, pos, **spec.params)
                    for t, r in zip(wt, maps):
                        r = M.as_map(r)
                        peak = int(np.argmax(r))
                        d = rows[s].setdefault(ds, {k: [] for k in KEYS})
                        d["pg"].append(M.pointing_game(r, t.span, ex.frame_s))
                        d["iou"].append(M.topk_iou(r, t.span, ex.frame_s))
                        d["mass"].append(M.mass_in_span(r, t.span, ex.frame_s))
                        d["border"].append(peak >= w.n_valid - 3)
                        d["start"].append(peak < 3)
                        d["before"].append((peak + 1) * ex.frame_s <= t.span[0] - M.POINTING_TOL_S)
    return {s: {ds: {**{k: float(np.mean(v)) for k, v in d.items()}, "n": len(d["pg"])} for ds, d in by.items()}
            for s, by in rows.items()}


def table(result: dict) -> str:
    datasets = sorted({ds for by in result.values() for ds in by})
    head = "| variant | " + " | ".join(f"{ds} PG / IoU / mass / peak start / peak before (n)" for ds in datasets) + " |"
    lines = [head, "|---|" + "---|" * len(datasets)]
    for s, by in result.items():
        cells = []
        for ds in datasets:
            v = by.get(ds)
            cells.append("–" if v is None else f"{v['pg']:.2f} / {v['iou']:.2f} / {v['mass']:.2f} / "
                                               f"{v['start']:.2f} / {v['before']:.2f} ({v['n']})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m leafx_widgets.bench.diagnose --manifest bench_data/librivox.json --manifest bench_data/espeak.json
  python -m leafx_widgets.bench.diagnose --manifest bench_data/librivox.json --json diagnose.json"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.diagnose", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--manifest", action="append", required=True, help="manifest JSON (repeat for several)")
    p.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a manifest name audio or TextGrid files outside its own folder")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = diagnose(args.manifest, args.model, allow_outside_paths=args.allow_outside_paths)
    except ValueError as err:  # a ManifestError lists every problem of the manifest
        print(f"diagnose: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
