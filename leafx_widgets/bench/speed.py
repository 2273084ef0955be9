"""Cost of LEAF-X relative to plain transcription, measured in the same run.

    python -m leafx_widgets.bench.speed [--model tiny.en] [--repeats 3] [--device cpu]

Prints a markdown table: median seconds of plain transcription (features, encoder,
greedy decoding) and of transcription plus every token's map for each variant,
and their ratios. With ``--memory``, each stage's peak resident memory above the
level before it, in a fresh process (RSS sampled every 2 ms).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
STAGES = ("transcribe", "base", "grad", "causal", "base-vn", "grad-vn", "causal-vn")


def speech_clip(seconds: float) -> np.ndarray:
    """Real LibriVox speech, clips joined (0.3 s pauses) and cut to ``seconds``."""
    import soundfile

    pieces = []
    paths = sorted(glob.glob(LIBRIVOX))
    if not paths:
        raise SystemExit("needs Debian's pocketsphinx-testdata (LibriVox clips)")
    while sum(len(p) for p in pieces) < seconds * 16000:
        for path in paths:
            pieces += [soundfile.read(path, dtype="float32")[0], np.zeros(4800, np.float32)]
    return np.concatenate(pieces)[: int(seconds * 16000)]


def run_stage(model, audio, stage: str) -> int:
    """Transcribe, then (unless stage == "transcribe") compute every token's map. Returns token count."""
    import leafx_widgets as lw

    ex = lw.explain(model, audio, sample_rate=16000)
    if stage != "transcribe":
        for tok in ex.tokens:
            ex.map(tok.index, stage)
    return len(ex.tokens)


def time_stages(model, audio, repeats: int, stages) -> dict[str, float]:
    run_stage(model, audio, "transcribe")  # warm-up
    times = {s: [] for s in stages}
    for _ in range(repeats):
        for stage in stages:  # interleaved, so machine load hits every stage alike
            t0 = time.perf_counter()
            run_stage(model, audio, stage)
            times[stage].append(time.perf_counter() - t0)
    return {s: statistics.median(v) for s, v in times.items()}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stage_memory(model_name: str, seconds: float, stage: str, device: str) -> float:
    """Peak resident memory above the level before the stage (MB), sampled every 2 ms while it runs.

    (``ru_maxrss`` cannot tell: loading the model peaks higher than any stage.)"""
    import leafx_widgets as lw

    model = lw.load_model(model_name, device=device)
    audio = speech_clip(seconds)
    run_stage(model, audio, "transcribe")  # warm-up: allocator pools, lazy imports
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    before = _rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_stage(model, audio, stage)
    done.set()
    sampler.join()
    return max(peak[0], _rss_mb()) - before


def peak_rss_mb(model_name: str, seconds: float, stage: str, device: str) -> float:
    code = (f"from leafx_widgets.bench.speed import stage_memory;"
            f"print(stage_memory({model_name!r}, {seconds}, {stage!r}, {device!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


EXAMPLES = """examples:
  python -m leafx_widgets.bench.speed --repeats 3
  python -m leafx_widgets.bench.speed --seconds 10 --stages transcribe,base,leafx_sf --memory --json speed.json"""


def main(argv=None) -> int:
    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.speed", description=__doc__,
                                     formatter_class=HelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps ...")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per stage (the median is shown)")
    parser.add_argument("--seconds", default="10,30", help="clip lengths in seconds, comma-separated")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated: transcribe, then methods (each: transcription + every token's map)")
    parser.add_argument("--memory", action="store_true", help="also each stage's peak memory (fresh processes)")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args(argv)
    import torch

    import leafx_widgets as lw

    stages = [s.strip() for s in args.stages.split(",")]
    if stages[0] != "transcribe":
        stages.insert(0, "transcribe")
    model = lw.load_model(args.model, device=args.device)
    print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} interleaved runs\n")
    print("| clip | tokens | " + " | ".join(f"{s} (s)" for s in stages) + " | "
          + " | ".join(f"{s} / transcribe" for s in stages[1:]) + " |")
    print("|---" * (2 + 2 * len(stages) - 1) + "|")
    results = []
    for seconds in [float(s) for s in args.seconds.split(",")]:
        audio = speech_clip(seconds)
        n_tokens = len(lw.explain(model, audio, sample_rate=16000).tokens)
        times = time_stages(model, audio, args.repeats, stages)
        ratios = {s: times[s] / times["transcribe"] for s in stages[1:]}
        print(f"| {seconds:.0f} s | {n_tokens} | " + " | ".join(f"{times[s]:.2f}" for s in stages) + " | "
              + " | ".join(f"{ratios[s]:.2f}x" for s in stages[1:]) + " |")
        row = {"seconds": seconds, "tokens": n_tokens, "times": times, "ratios": ratios}
        if args.memory:
            row["peak_rss_mb"] = {s: peak_rss_mb(args.model, seconds, s, args.device) for s in stages}
        results.append(row)
    if args.memory:
        print("\npeak resident memory above the level before the stage (MB, fresh process, sampled every 2 ms):\n")
        print("| clip | " + " | ".join(stages) + " |")
        print("|---" * (1 + len(stages)) + "|")
        for row in results:
            print(f"| {row['seconds']:.0f} s | " + " | ".join(f"{row['peak_rss_mb'][s]:.0f}" for s in stages) + " |")
    if args.json:
        from ..atomic import atomic_write

        atomic_write(args.json, json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
