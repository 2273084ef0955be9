"""Throughput of the bench's clips on the local executor and on 1 and 2 local Ray workers.

    python -m leafx_widgets.bench.executor_speed --manifest /tmp/lfdata/librivox.json \\
        --manifest /tmp/lfdata/espeak.json [--clips 6] [--methods leafx_sf raa_last]

The same clip jobs (``runner.evaluate_job``, no cache) run three times: in this process, then
on a Ray cluster started here (``--cpus`` CPUs) with one worker and with two. Printed as a
markdown table: the cluster's start-up and the workers' model loading apart, the seconds from
the first clip handed out to the last result, clips per second, the speed-up of 2 workers over
1, the serial fraction that speed-up implies (Amdahl: f = 2/S - 1), and the Ray path's overhead
per clip against the local one (1 worker). The records of every run are checked to be equal.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

from ..executors import run_jobs
from . import runner
from .console import HelpFormatter
from .manifests import load_manifests


def _timed_run(jobs, executor, model, workers=None) -> dict:
    """Run ``jobs``; seconds to the first hand-out, seconds of the job phase, and the records."""
    t0 = time.perf_counter()
    first, results = [], {}

    def on_start(job):
        if not first:
            first.append(time.perf_counter())

    def on_result(job, result, error):
        if error is not None:
            raise error
        results[job.index] = result

    run_jobs(jobs, runner.evaluate_job, executor=executor, model=model, on_result=on_result, on_start=on_start,
             num_workers=workers)
    end = time.perf_counter()
    records = [r for i in sorted(results) for r in results[i]["records"]]
    for r in records:
        r.pop("runtime_s", None)  # the one timer in a record
    return {"startup_s": first[0] - t0, "jobs_s": end - first[0], "records": records}


def measure(manifests, n_clips: int, methods: list, model: str = "tiny.en", cpus: int = 2) -> list[dict]:
    import ray

    from ..models import load_model

    settings = runner.Settings(faith_per_clip=1, n_inf=8, levels=(0.2, 0.5), stab=False,
                               faith_methods=tuple(methods))
    per = [[(name, c, rank) for rank, c in enumerate(clips)] for name, clips in load_manifests(manifests)]
    order = [j for group in itertools.zip_longest(*per) for j in group if j is not None][:n_clips]
    jobs = [runner.ClipJob(i, d, c, r, methods, settings) for i, (d, c, r) in enumerate(order)]
    adapter = load_model(model)
    rows = [{"run": "local", **_timed_run(jobs, "local", adapter)}]
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="warning")
    cluster_s = time.perf_counter() - t
    try:
        for workers in (1, 2):
            rows.append({"run": f"ray, {workers} worker{'s' if workers > 1 else ''}",
                         **_timed_run(jobs, "ray", model, workers)})
    finally:
        ray.shutdown()
    for row in rows[1:]:
        if row["records"] != rows[0]["records"]:
            raise AssertionError(f"{row['run']}: records differ from the local run")
    rows[1]["cluster_s"] = cluster_s
    for row in rows:
        row["clips"] = len(jobs)
    return rows


def table(rows: list[dict]) -> str:
    local, one, two = rows
    n_clips = local["clips"]
    speedup = one["jobs_s"] / two["jobs_s"]
    lines = [f"{n_clips} clips; start-up = cluster start ({one['cluster_s']:.1f} s, once) not included, "
             "workers loading the model included",
             "", "| run | start-up s | clips s | clips/s | per clip s |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['run']} | {row['startup_s']:.1f} | {row['jobs_s']:.1f} | "
                     f"{n_clips / row['jobs_s']:.3f} | {row['jobs_s'] / n_clips:.2f} |")
    lines += ["", f"2 workers / 1 worker: {speedup:.2f}x; serial fraction (Amdahl, f = 2/S - 1): "
                  f"{max(0.0, 2 / speedup - 1):.2f}",
              f"Ray path overhead per clip (1 worker vs local): "
              f"{(one['jobs_s'] - local['jobs_s']) / n_clips:+.2f} s",
              "records identical in all three runs: yes"]
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m leafx_widgets.bench.executor_speed --manifest /tmp/lfdata/librivox.json --manifest /tmp/lfdata/espeak.json
  python -m leafx_widgets.bench.executor_speed --manifest bench_data/librivox.json --clips 4 --methods raa_last"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.executor_speed", description=__doc__.split("\n")[0],
                                formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--manifest", action="append", required=True, help="manifest JSON (repeat for several)")
    p.add_argument("--clips", type=int, default=6, help="clips to run, interleaved across the manifests")
    p.add_argument("--methods", nargs="+", default=["leafx_sf", "raa_last"], help="method specs per clip")
    p.add_argument("--model", default="tiny.en", help="model name (each Ray worker loads its own)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster started here")
    p.add_argument("--json", default=None, help="also write the timings to this JSON file (default: none)")
    args = p.parse_args(argv)
    rows = measure(args.manifest, args.clips, args.methods, args.model, args.cpus)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{k: v for k, v in r.items() if k != "records"} for r in rows], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
