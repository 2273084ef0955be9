"""How LEAF-X-SF's defaults were chosen: a grid over its settings on the development manifests.

    python -m leafx_widgets.bench.tune_sf --manifest librivox.json --manifest espeak.json [--model tiny.en]

For the first token of every matched word (as the benchmark evaluates it) and every setting of
the grid (de-sink exponent x head temperature tau x sharpening gamma, last layer), this prints
pointing game, top-k IoU, mass in span and INF, with INF's paired difference to RAA-last and its
95% bootstrap interval over tokens. INF uses ``--n-inf`` random masks of 100 ms segments per
window (the benchmark's own perturbations, ``runner.inf_masks``); the masked log-probs are
computed once and shared by every setting, and the cross-attention comes from one
teacher-forced pass per window, so the whole grid costs little more than the masked passes.

The selection rule, fixed before looking at the grid: among the settings that reach the
localisation targets (pointing >= 0.95, IoU >= 0.6, mass >= 0.6) on every development set,
take the one with the lowest INF summed over the sets. Only development manifests may be
passed here; the test manifests are for confirming the choice (``leafx-widgets bench``).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np

from . import metrics as M
from ..atomic import atomic_write
from .._progress import bar, bars_enabled, say
from ..threads import add_threads_option, set_threads
from .console import HelpFormatter
from .manifests import load_manifests
from .runner import Settings, inf_masks, matched_tokens

GRID = {"desink": (0.0, 0.25, 0.5, 0.75, 1.0), "tau": (0.5, 1.0, 2.0), "gamma": (1.0, 1.1, 1.2, 1.3, 1.5)}
TARGETS = {"pointing": 0.95, "iou": 0.6, "mass": 0.6}


def settings_grid(grid: dict = GRID) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _name(s: dict) -> str:
    return ",".join(f"{k}={v:g}" for k, v in s.items())


def sweep(manifests, model="tiny.en", grid: dict = GRID, n_inf: int = 64, seed: int = 0, log=print,
          progress: bool = False, allow_outside_paths: bool = False) -> dict:
    """{dataset: {setting name | "raa_last": {metric: per-token values}}}.

    Every manifest is checked before the model loads (``ManifestError`` lists every problem).
    ``progress``: tqdm bars on stderr over the clips, windows and grid settings."""
    import torch

    from .. import explain, load_model
    from ..baselines import raa_last
    from ..methods._common import MaskedScorer
    from ..methods.leafx_sf import layer_cross_attention, sink_free_maps

    datasets = load_manifests(manifests, allow_outside_paths=allow_outside_paths)
    adapter = load_model(model) if isinstance(model, str) else model
    settings, out = settings_grid(grid), {}
    rng = np.random.default_rng(seed)
    jobs = [(ds, clip) for ds, clips in datasets for clip in clips]
    for ds, clip in bar(jobs, "clips", enabled=progress, leave=True, unit="clip"):
        table = out.setdefault(ds, {})
        ex = explain(adapter, str(clip.path))
        tokens, _, _ = matched_tokens(ex, clip)
        windows = sorted({t.window for t in tokens})
        for w_index in bar(windows, f"{clip.id[:24]}: windows", enabled=progress, unit="window"):
            window = ex.windows[w_index]
            toks = [t for t in tokens if t.window == w_index]
            positions = [t.position for t in toks]
            scorer = MaskedScorer(window, positions)
            clean = scorer.masked(np.zeros((1, window.n_valid), bool))[0].numpy()
            masks = inf_masks(window.n_valid, Settings(n_inf=n_inf), rng)
            drops = clean[None] - scorer.masked(masks).numpy()  # (n_inf, tokens)
            cross, text_rows = layer_cross_attention(window, [adapter.n_layers - 1])
            rows = window.adapter.query_rows(window.prompt, positions)
            candidates = {"raa_last": raa_last(window, positions)}
            for s in bar(settings, "grid", enabled=progress, unit="setting"):
                with torch.no_grad():
                    maps = sink_free_maps(cross, text_rows, window.n_valid, **s)
                candidates[_name(s)] = maps[rows].numpy()
            for name, maps in candidates.items():
                cell = table.setdefault(name, {"pointing": [], "iou": [], "mass": [], "inf": []})
                for col, t in enumerate(toks):
                    r = M.as_map(maps[col])
                    cell["pointing"].append(M.pointing_game(r, t.span, ex.frame_s))
                    cell["iou"].append(M.topk_iou(r, t.span, ex.frame_s))
                    cell["mass"].append(M.mass_in_span(r, t.span, ex.frame_s))
                    cell["inf"].append(M.infidelity_optimal(r, masks, drops[:, col]))
        log(f"  {ds}/{clip.id}: {len(tokens)} tokens")
    return out


def choose(result: dict, targets: dict = TARGETS) -> str | None:
    """The selection rule: targets met on every dataset, then the lowest summed mean INF."""
    names = [n for n in next(iter(result.values())) if n != "raa_last"]
    ok = [n for n in names
          if all(np.mean(result[ds][n][k]) >= v for ds in result for k, v in targets.items())]
    return min(ok, key=lambda n: sum(np.mean(result[ds][n]["inf"]) for ds in result), default=None)


def table(result: dict) -> str:
    datasets = list(result)
    head = "| setting | " + " | ".join(f"{ds} PG / IoU / mass | {ds} INF (vs RAA-last, 95% CI)" for ds in datasets) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(datasets))]
    names = sorted(result[datasets[0]], key=lambda n: sum(np.mean(result[ds][n]["inf"]) for ds in datasets))
    for n in names:
        cells = []
        for ds in datasets:
            c = result[ds][n]
            d = M.paired_difference(c["inf"], result[ds]["raa_last"]["inf"], n_boot=2000)
            cells.append(f"{np.mean(c['pointing']):.2f} / {np.mean(c['iou']):.2f} / {np.mean(c['mass']):.2f}")
            cells.append(f"{np.mean(c['inf']):.3f} ({d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}])")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m leafx_widgets.bench.tune_sf --manifest bench_data/librivox.json --manifest bench_data/espeak.json
  python -m leafx_widgets.bench.tune_sf --manifest bench_data/librivox.json --n-inf 16 --out sweep.json --quiet"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.tune_sf", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--manifest", action="append", required=True, help="development manifest (repeat)")
    p.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    p.add_argument("--n-inf", type=int, default=64, help="random masks per window for INF")
    p.add_argument("--seed", type=int, default=0, help="seed of the INF masks")
    add_threads_option(p)
    p.add_argument("--out", help="write the per-setting means as JSON here")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a manifest name audio or TextGrid files outside its own folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-clip lines")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        set_threads(args.threads)
        result = sweep(args.manifest, args.model, n_inf=args.n_inf, seed=args.seed,
                       log=(lambda m: None) if args.quiet else say, progress=bars_enabled(args.quiet),
                       allow_outside_paths=args.allow_outside_paths)
    except ValueError as err:  # a ManifestError lists every problem of every manifest
        print(f"tune_sf: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        say("tune_sf: interrupted")
        return 130
    print(table(result))
    best = choose(result)
    print(f"\nchosen by the rule (targets {TARGETS}, then lowest summed INF): {best}")
    if args.out:
        means = {ds: {n: {k: float(np.mean(v)) for k, v in c.items()} for n, c in r.items()} for ds, r in result.items()}
        atomic_write(args.out, json.dumps({"means": means, "chosen": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
