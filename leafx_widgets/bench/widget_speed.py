"""Widget speed in a real browser against a real kernel.

Runs the speed test of the end-to-end harness (``tests/e2e``: JupyterLab + Playwright +
Debian chromium; needs a source checkout with the JS bundle built) and prints its numbers
next to the targets of the widget issue::

    python -m leafx_widgets.bench.widget_speed            # about a minute
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

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


def main(argv=None) -> int:
    import argparse

    from .console import HelpFormatter

    argparse.ArgumentParser(prog="python -m leafx_widgets.bench.widget_speed", description=__doc__.split("\n")[0],
                            formatter_class=HelpFormatter, epilog="""examples:
  python -m leafx_widgets.bench.widget_speed    # needs a source checkout with the JS bundle built""").parse_args(argv)
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
