"""Widget speed in a real browser against a real kernel, and the widget protocol under load.

Without options, runs the speed test of the end-to-end harness (``tests/e2e``: JupyterLab +
Playwright + Debian chromium; needs a source checkout with the JS bundle built) and prints
its numbers next to the targets of the widget issue. ``--load`` sends 1,000 rapid map
requests across the tokens of the bundled clip for a slow method, as a user clicking
through the transcript would, and prints how soon the newest was answered and what it
cost (no browser; tests/test_widget_load.py runs the same scenario in CI)::

    python -m leafx_widgets.bench.widget_speed            # about a minute
    python -m leafx_widgets.bench.widget_speed --load     # about 15 s
    python -m leafx_widgets.bench.widget_speed --load --method ig
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import threading
import time
import tracemalloc

REPO = pathlib.Path(__file__).resolve().parents[2]
MARK = "[e2e speed] "

# (key in the harness's report, what it is, target in ms or None)
ROWS = [
    ("cached_switch_painted_ms_median", "cached token switch, click to painted frame (median of 20)", 50),
    ("cached_switch_js_ms_median", "cached token switch, JavaScript work only (median)", None),
    ("clip30_first_map_at_open_ms", "30 s clip: first map on opening a view (kernel idle)", 300),
    ("clip30_first_map_new_tau_ms", "30 s clip: first map at a new tau (kernel recomputes the window)", 300),
    ("clip30_first_base_map_ms", "30 s clip: first map of method 'base' (kernel computes it)", 300),
    ("clip30_kernel_base_compute_s", "30 s clip: kernel time for the default method's maps (s)", None),
    ("long600_open_ms", "10-minute recording: view drawn (spectrogram + waveform)", 5000),
]


def run() -> dict:
    tests = REPO / "tests" / "e2e"
    if not tests.is_dir():
        raise SystemExit(f"needs a source checkout with tests/e2e (looked in {REPO})")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(tests), "-k", "speed"],
        cwd=REPO, capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if MARK in l), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
        raise SystemExit(f"the e2e speed test failed (exit {proc.returncode})")
    return json.loads(line.split(MARK, 1)[1])


def unit_method(name: str = "slow_units", n_units: int = 10, unit_s: float = 0.03):
    """A deliberately slow method for load tests: ``n_units`` units of work, each one small torch
    layer call (where the widget's worker can stop) and ``unit_s`` of sleep, then LEAF-X base's map.
    Sleeping keeps its time steady on a busy machine, so the figures measure the widget."""
    import torch

    from ..methods import METHODS, Method

    layer = torch.nn.Linear(4, 4)
    base = METHODS["base"]

    def compute(window, positions):
        with torch.no_grad():
            for _ in range(n_units):
                layer(torch.zeros(4))
                time.sleep(unit_s)
        return base.compute(window, positions, **base.params)

    return Method(name, f"slow test method ({n_units} x {unit_s * 1000:.0f} ms)", compute, family="reference",
                  cost="slow", batched=False)


def rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def protocol_load(widget, method: str, n_requests: int = 1000, seed: int = 0) -> dict:
    """``n_requests`` map requests for ``method`` as fast as the handler takes them, each for a random
    token with that token as the selection; the newest asks for a token not asked before. Returns
    the single-map time (one request on the idle widget, after a first map that pays for imports
    and warm-up), how long the newest waited, what was computed and replied, and the memory it
    took (Python allocations traced, and resident size)."""
    import numpy as np

    n = len(widget.explanation.tokens)
    if n < 4:
        raise ValueError(f"the load test needs an explanation with at least 4 tokens, got {n}")
    replies: dict = {}  # request id -> [(kind, time)]
    progress = []
    newest = threading.Event()
    last = f"load-{n_requests - 1}"

    def send(content, buffers=None):
        if content["type"] == "progress":
            progress.append(content["token"])
        elif content["type"] in ("map", "cancelled", "error"):
            now = time.perf_counter()
            ids = content.get("ids") or [content.get("id")]
            for i in ids:
                replies.setdefault(i, []).append((content["type"], now))
            if last in ids or "single" in ids or "warm-up" in ids:
                newest.set()

    def request(req_id, token):
        widget._on_custom_msg(widget, {"type": "map", "id": req_id, "key": f"{token}|{method}|", "token": token,
                                       "method": method, "params": {}, "selected": token}, [])

    widget.send = send
    widget.wait_idle()
    for req_id, token in (("warm-up", 0), ("single", 1)):
        newest.clear()
        t0 = time.perf_counter()
        request(req_id, token)
        newest.wait(600)
    single_s = replies["single"][0][1] - t0
    newest.clear()

    tokens = np.random.default_rng(seed).integers(2, n - 1, size=n_requests - 1).tolist() + [n - 1]
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    base_traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    rss0, t0 = rss_mb(), time.perf_counter()
    for i, token in enumerate(tokens):
        request(f"load-{i}", int(token))
    sent = time.perf_counter()
    newest.wait(600)
    widget.wait_idle()
    peak = tracemalloc.get_traced_memory()[1] - base_traced
    if not tracing:
        tracemalloc.stop()
    rss1 = rss_mb()
    kinds = [tuple(k for k, _ in replies.get(f"load-{i}", [])) for i in range(n_requests)]
    return {
        "method": method, "requests": n_requests, "tokens": n,
        "single_map_s": round(single_s, 3),
        "burst_s": round(sent - t0, 3),
        "newest_answer_s": round(replies[last][0][1] - sent, 3),
        "newest_over_single": round((replies[last][0][1] - sent) / single_s, 2),
        "answered_once": sum(len(k) == 1 for k in kinds),
        "maps_sent": sum(k == ("map",) for k in kinds),
        "cancelled": sum(k == ("cancelled",) for k in kinds),
        "started": len(progress) - 2,  # computations begun during the burst (warm-up and single excluded)
        "traced_peak_mb": round(peak / 2**20, 2),
        "rss_growth_mb": None if rss0 is None else round(rss1 - rss0, 1),
    }


def run_load(method: str | None, n_requests: int) -> dict:
    import warnings

    import leafx_widgets as lw
    from leafx_widgets.methods import METHODS
    from leafx_widgets.widget import LeafXWidget

    warnings.filterwarnings("ignore", category=FutureWarning)
    if method is None:
        test_method = unit_method()
        METHODS[test_method.name] = test_method
        method = test_method.name
    ex = lw.explain(lw.load_model("tiny.en"), lw.sample_path())
    w = LeafXWidget(ex)
    try:
        return protocol_load(w, method, n_requests)
    finally:
        w.close()


LOAD_ROWS = [
    ("single_map_s", "one map on an idle widget (s)"),
    ("burst_s", "time to hand the kernel all requests (s)"),
    ("newest_answer_s", "newest request answered after the last was sent (s)"),
    ("newest_over_single", "... in single-map times (target <= 2)"),
    ("answered_once", "requests answered exactly once"),
    ("maps_sent", "... with a map"),
    ("cancelled", "... with 'cancelled' (the user had moved on)"),
    ("started", "computations begun during the burst"),
    ("traced_peak_mb", "Python memory peak during the burst (MB, tracemalloc)"),
    ("rss_growth_mb", "resident memory growth (MB)"),
]


def main(argv=None) -> int:

    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.widget_speed",
                                     description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                     epilog="""examples:
  python -m leafx_widgets.bench.widget_speed            # browser speed; needs the JS bundle built
  python -m leafx_widgets.bench.widget_speed --load     # the protocol load test, no browser
  python -m leafx_widgets.bench.widget_speed --load --method ig""")
    parser.add_argument("--load", action="store_true", help="the protocol load test instead of the browser speed test")
    parser.add_argument("--method", default=None,
                        help="method for --load (default: a slow test method, 10 x 30 ms units per map)")
    parser.add_argument("--requests", type=int, default=1000, help="requests for --load")
    args = parser.parse_args(argv)
    if args.load:
        fig = run_load(args.method, args.requests)
        print(f"{fig['requests']} map requests for {fig['method']!r} across {fig['tokens']} tokens of the bundled clip")
        width = max(len(label) for _, label in LOAD_ROWS)
        for key, label in LOAD_ROWS:
            print(f"{label:<{width}}  {fig[key]:>9}")
        return 0
    report = run()
    width = max(len(r[1]) for r in ROWS)
    for key, label, target in ROWS:
        value = report.get(key)
        goal = "" if target is None else f"target {target} ms, " + ("met" if value <= target else "MISSED")
        print(f"{label:<{width}}  {value:>9}  {goal}")
    steps = report.get("long600_open_steps_ms", {})
    print(f"10-minute recording, ms after render: {json.dumps(steps)} (audio = PCM complete, playable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
