"""Command line: ``leafx-widgets explain | bench | lab``. Only wiring; the work lives elsewhere."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from .methods import DEFAULT_METHOD

DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16"}


def _explain(args) -> int:
    import torch

    from . import explain, load_model, sample_path
    from .methods import get_method

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        get_method(v)  # unknown names fail before the model loads
    audio = args.audio or sample_path()
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    t1 = time.perf_counter()
    ex = explain(model, audio)
    t2 = time.perf_counter()
    for v in variants:
        for tok in ex.tokens:
            ex.map(tok.index, v)
    t3 = time.perf_counter()
    print(f"{audio}  ({ex.duration_s:.2f} s, model {ex.model_name}, {len(ex.tokens)} tokens)")
    print(f"transcript: {ex.text}")
    print(f"{'word':<20} {'peak (s)':>8} {'p(first token)':>15}")
    for word in ex.words:
        p = math.exp(ex.tokens[word.tokens[0]].logprob)
        print(f"{word.text:<20} {word.peak_s:>8.2f} {p:>15.2f}")
    print(f"load {t1 - t0:.2f} s, decode {t2 - t1:.2f} s, maps ({','.join(variants)}) {t3 - t2:.2f} s")
    if args.json:
        path = ex.save_json(args.json, variants)
        print(f"wrote {path}")
    return 0


def _bench(args, rest) -> int:
    from .bench import runner

    return runner.main(rest)


def _lab(args) -> int:
    import subprocess

    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
    target = [str(notebook)] if notebook.exists() else []
    return subprocess.call([sys.executable, "-m", "jupyter", "lab", *target])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="leafx-widgets", description="LEAF-X explanations for Whisper")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="decode audio and print each word's peak evidence time")
    ex.add_argument("audio", nargs="?", help="wav/flac/mp3/ogg file (default: the bundled LibriVox sample)")
    ex.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    ex.add_argument("--variants", default=DEFAULT_METHOD,
                    help=f"comma-separated methods (default {DEFAULT_METHOD}), e.g. base,grad,causal,base-vn")
    ex.add_argument("--json", help="write the leafx-explanation/1 JSON here")
    ex.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps ...")
    ex.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    sub.add_parser("bench", help="LEAF-XBench on a manifest (see `leafx-widgets bench --help`)", add_help=False)
    sub.add_parser("lab", help="open JupyterLab on the quickstart notebook")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "explain":
            if rest:
                parser.error(f"unrecognised arguments: {' '.join(rest)}")
            return _explain(args)
        if args.command == "bench":
            return _bench(args, rest)
        return _lab(args)
    except (ValueError, FileNotFoundError, IndexError, TypeError) as err:
        print(f"leafx-widgets: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
