"""Peak memory of explaining long recordings: does it stay flat as the audio grows?

    python -m leafx_widgets.bench.long_memory [--minutes 10,60] [--model tiny.en] [--threads 2]

For each length, a recording is tiled from speech clips with silent gaps (the LibriVox clips, or
``--manifest`` clips) and written to a 16-bit WAV; a fresh process loads the model, explains the
file with ``lw.explain`` (the default method's maps computed window by window) and reads every
token's map, and reports its peak resident memory (``ru_maxrss``) and, on Linux, the peak while
explaining alone (the kernel's high-water mark started afresh once the model is loaded, since
loading may be the higher peak and hide what explaining costs). The table gives each peak, the
difference between the longest and the shortest, and the size of the audio difference itself
(float32 at the model's rate): memory is flat when the peaks differ by no more than the audio.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

BYTES_PER_SAMPLE = 4  # the yardstick: the audio difference as float32 in memory
MB = 2**20


def write_recording(path, seconds: float, clips=None, *, sample_rate: int = 16000) -> float:
    """A WAV of speech clips with 0.8 s gaps, cycled to ``seconds``; returns its duration in seconds."""
    import soundfile

    from .speed import long_recording

    stitched = long_recording(seconds, clips)
    samples = stitched.samples[: int(seconds * sample_rate)]
    soundfile.write(str(path), samples, sample_rate, subtype="PCM_16")
    return len(samples) / sample_rate


def measure(path, model_name: str = "tiny.en", *, device: str = "cpu", threads: int | None = None) -> dict:
    """Explain ``path`` in this process and return what it took (call it in a fresh process: the peak
    is this process's own ``ru_maxrss``, model loading included)."""
    import resource

    import torch

    import leafx_widgets as lw

    if threads:
        torch.set_num_threads(threads)
    model = lw.load_model(model_name, device=device)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fresh_mark = restart_high_water_mark()
    t0 = time.perf_counter()
    ex = lw.explain(model, str(path), progress=False)
    for tok in ex.tokens:  # every token's default-method map: the windows' maps no longer kept are recomputed
        ex.map(tok.index)
    seconds = time.perf_counter() - t0
    maps_mb = sum(m.nbytes for m in ex._cache.values()) / MB
    stores = {id(w.store): w.store for w in ex.windows if w.store is not None}
    return {"duration_s": round(ex.duration_s, 1), "windows": len(ex.windows), "tokens": len(ex.tokens),
            "seconds": round(seconds, 1), "model_loaded_mb": round(loaded, 1), "maps_mb": round(maps_mb, 1),
            "recomputed": sum(s.recomputed for s in stores.values()), "maps_evicted": ex._cache.evicted,
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "explain_peak_mb": high_water_mb() if fresh_mark else None}


def restart_high_water_mark() -> bool:
    """Start this process's peak resident memory (VmHWM) afresh; False where the system cannot (not Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS (proc(5))
        return True
    except OSError:
        return False


def high_water_mb() -> float | None:
    """Peak resident memory since it was last started afresh (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def measure_in_subprocess(path, model_name: str = "tiny.en", *, device: str = "cpu",
                          threads: int | None = None) -> dict:
    command = [sys.executable, "-m", "leafx_widgets.bench.long_memory", "--child", str(path),
               "--model", model_name, "--device", device] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"explaining {path} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def flat_memory(minutes=(10, 60), model_name: str = "tiny.en", *, clips=None, device: str = "cpu",
                threads: int | None = None, folder=None) -> list[dict]:
    """One row per length (``measure`` in a fresh process on a recording of that many minutes)."""
    rows = []
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        for m in minutes:
            path = os.path.join(tmp, f"speech_{m:g}min.wav")
            write_recording(path, m * 60, clips)
            rows.append(measure_in_subprocess(path, model_name, device=device, threads=threads))
            os.remove(path)
    return rows


def table(rows, sample_rate: int = 16000) -> str:
    """Markdown: each run's peak, then the longest minus the shortest against the audio difference."""
    lines = ["| audio | windows | tokens | seconds | peak RSS (MB) | peak while explaining (MB) "
             "| of which maps kept (MB) | windows recomputed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        explaining = "-" if r.get("explain_peak_mb") is None else f"{r['explain_peak_mb']:.0f}"
        lines.append(f"| {r['duration_s'] / 60:.1f} min | {r['windows']} | {r['tokens']} | {r['seconds']:.0f} | "
                     f"{r['peak_mb']:.0f} | {explaining} | {r['maps_mb']:.1f} | {r['recomputed']} |")
    short, long = min(rows, key=lambda r: r["duration_s"]), max(rows, key=lambda r: r["duration_s"])
    grew = long["peak_mb"] - short["peak_mb"]
    audio = (long["duration_s"] - short["duration_s"]) * sample_rate * BYTES_PER_SAMPLE / MB
    lines.append("")
    lines.append(f"peak difference {grew:.0f} MB for {audio:.0f} MB more audio (float32): "
                 f"{grew / audio if audio else float('nan'):.2f}x the audio "
                 f"({'within' if grew <= audio else 'over'} the target of 1x); the maps kept grew by "
                 f"{long['maps_mb'] - short['maps_mb']:.0f} MB (MB = 2**20 bytes)")
    if short.get("explain_peak_mb") is not None and long.get("explain_peak_mb") is not None:
        grew = long["explain_peak_mb"] - short["explain_peak_mb"]
        lines.append(f"peak while explaining: {grew:.0f} MB more, {grew / audio if audio else float('nan'):.2f}x "
                     "the audio difference")
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m leafx_widgets.bench.long_memory --minutes 10,60 --threads 1
  python -m leafx_widgets.bench.long_memory --minutes 5,20 --manifest espeak.json --json memory.json"""


def main(argv=None) -> int:
    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.long_memory", description=__doc__,
                                     formatter_class=HelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--minutes", default="10,60", help="recording lengths in minutes, comma-separated")
    parser.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps ...")
    parser.add_argument("--threads", type=int, help="torch threads in each run (default: torch's)")
    parser.add_argument("--manifest", action="append", help="tile these manifests' clips (default: LibriVox)")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.model, device=args.device, threads=args.threads)))
        return 0
    clips = None
    if args.manifest:
        from .manifests import load_manifests

        clips = [c for _, cs in load_manifests(args.manifest) for c in cs]
    minutes = [float(m) for m in args.minutes.split(",")]
    rows = flat_memory(minutes, args.model, clips=clips, device=args.device, threads=args.threads)
    print(table(rows))
    if args.json:
        from ..atomic import atomic_write

        atomic_write(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
