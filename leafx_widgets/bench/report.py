"""LEAF-XBench reports: per-token CSV/JSON, summary JSON, markdown tables, bokeh HTML."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .metrics import bootstrap_ci, minmax

# (record key, column title, higher is better?)
METRICS = [
    ("pointing", "PG", True), ("iou", "IoU", True), ("mass", "Mass", True), ("spr", "SPR", True),
    ("daopc", "D-AOPC", False), ("mean_logp_drop", "Δlogp del", True), ("ins_auc", "Ins AUC", True),
    ("inf", "INF", False), ("stab", "STAB cos", True), ("stab_noise_spearman", "STAB ρ noise", True),
    ("stab_shift_spearman", "STAB ρ shift", True), ("runtime_s", "s/token", False),
]
# the paper's five headline metrics (TLoc = top-k IoU with the word span)
HEADLINE = [("daopc", "D-AOPC ↓"), ("iou", "TLoc (IoU) ↑"), ("spr", "SPR ↑"), ("stab", "STAB ↑"), ("inf", "INF ↓")]


def summarise(records: list[dict], *, n_boot: int = 1000) -> dict:
    """{dataset: {method: {metric: {"mean", "low", "high", "n"}}}} with bootstrap CIs over words."""
    out: dict = {}
    groups: dict = {}
    for r in records:
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    for (dataset, method), rows in groups.items():
        entry = {}
        for key, _, _ in METRICS:
            values = np.array([r.get(key, np.nan) if r.get(key) is not None else np.nan for r in rows], float)
            values = values[np.isfinite(values)]
            ci = bootstrap_ci(values, n_boot=n_boot)
            entry[key] = {"mean": float(values.mean()) if len(values) else float("nan"),
                          "low": ci.low, "high": ci.high, "n": int(len(values))}
        out.setdefault(dataset, {})[method] = entry
    return out


def curves(records: list[dict]) -> dict:
    """{dataset: {method: {"del": mean curve, "ins": mean curve, "n": n}}}"""
    out: dict = {}
    for r in records:
        if "del_curve" not in r:
            continue
        d = out.setdefault(r["dataset"], {}).setdefault(r["method"], {"del": [], "ins": []})
        d["del"].append(r["del_curve"])
        d["ins"].append(r["ins_curve"])
    return {ds: {m: {"del": np.mean(v["del"], 0).tolist(), "ins": np.mean(v["ins"], 0).tolist(), "n": len(v["del"])}
                 for m, v in methods.items()} for ds, methods in out.items()}


def normalised(summary: dict) -> dict:
    """The paper's table: each headline metric min-max normalised across methods per dataset."""
    out = {}
    for dataset, methods in summary.items():
        table = {m: {} for m in methods}
        for key, _ in HEADLINE:
            scaled = minmax({m: methods[m][key]["mean"] for m in methods})
            for m, v in scaled.items():
                table[m][key] = v
        out[dataset] = table
    return out


def _fmt(cell: dict, digits: int = 2) -> str:
    if cell["n"] == 0 or not math.isfinite(cell["mean"]):
        return "–"
    if not math.isfinite(cell["low"]):
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def markdown(result: dict, summary: dict, norm: dict) -> str:
    s = result["settings"]
    lines = ["# LEAF-XBench results", ""]
    compute_s = sum(c.get("seconds") or 0 for c in result["clips"])
    lines.append(f"Model `{s['model']}`; {len(result['clips'])} clips; compute time {compute_s / 60:.1f} min "
                 f"(sum over clips; this report's own run {s.get('wall_s', 0) / 60:.1f} min).")
    lines.append("")
    lines.append("Evaluated tokens: the first token of each decoded word that matches a reference word "
                 "(case/punctuation folded edit-distance alignment). Means with 95% bootstrap CIs over words "
                 "(1000 resamples). D-AOPC, insertion and IG use up to "
                 f"{s['faith_per_clip'] or 'all'} tokens per clip (n column). Masking = the log-Mel frames of a "
                 "masked encoder frame set to the silence floor (Whisper's padding value).")
    lines.append("")
    for clip in result["clips"]:
        pass
    datasets = list(summary)
    for ds in datasets:
        clips = [c for c in result["clips"] if c["dataset"] == ds]
        wer = np.mean([c["wer"] for c in clips]) if clips else float("nan")
        lines += [f"## {ds}: raw values", "",
                  f"{len(clips)} clips, mean WER {wer:.3f}, {sum(c['n_tokens'] for c in clips)} evaluated words.", ""]
        cols = [(k, t) for k, t, _ in METRICS]
        lines.append("| method | n | n faith | " + " | ".join(t for _, t in cols) + " |")
        lines.append("|---|---|---|" + "---|" * len(cols))
        for method, entry in summary[ds].items():
            row = [method, str(entry["pointing"]["n"]), str(entry["daopc"]["n"])]
            row += [_fmt(entry[k], 3 if k == "runtime_s" else 2) for k, _ in cols]
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", f"## {ds}: min-max normalised across methods (paper convention)", "",
                  "| method | " + " | ".join(t for _, t in HEADLINE) + " |",
                  "|---|" + "---|" * len(HEADLINE)]
        for method, entry in norm[ds].items():
            lines.append("| " + method + " | " + " | ".join(
                "–" if not math.isfinite(entry[k]) else f"{entry[k]:.2f}" for k, _ in HEADLINE) + " |")
        lines.append("")
    lines += ["## Per-clip", "", "| dataset | clip | WER | words | faith | seconds | hypothesis |", "|---|---|---|---|---|---|---|"]
    for c in result["clips"]:
        lines.append(f"| {c['dataset']} | {c['clip']} | {c['wer']:.2f} | {c['n_tokens']} | {c['n_faith']} | "
                     f"{c.get('seconds', float('nan')):.0f} | {c['hyp']} |")
    lines += ["", "## Settings", "", "```json", json.dumps({k: v for k, v in s.items()}, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def html_report(result: dict, summary: dict, curve_data: dict, path: Path) -> None:
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, Div, Whisker
    from bokeh.palettes import Category20_20
    from bokeh.plotting import figure
    from bokeh.resources import INLINE  # works offline: nothing fetched from a CDN

    levels = [0.0] + list(result["settings"]["levels"])
    blocks = [Div(text="<h1>LEAF-XBench</h1><p>Deletion/insertion curves (mean ratio p(masked)/p(clean) over the "
                       "faithfulness tokens) and per-method bars with 95% bootstrap CIs over words.</p>")]
    for ds, methods in summary.items():
        blocks.append(Div(text=f"<h2>{ds}</h2>"))
        figs = []
        for kind, title in (("del", "Deletion (lower = more faithful)"), ("ins", "Insertion (higher = better)")):
            f = figure(title=f"{ds}: {title}", width=620, height=380, x_axis_label="fraction of frames",
                       y_axis_label="p(masked) / p(clean)")
            for i, (m, c) in enumerate(curve_data.get(ds, {}).items()):
                f.line(levels, c[kind], legend_label=m, color=Category20_20[i % 20], line_width=2,
                       line_dash="solid" if i < 20 else "dashed")
            f.legend.click_policy = "hide"
            f.legend.label_text_font_size = "8pt"
            figs.append(f)
        bars = []
        names = list(methods)
        for key, title, better in [(k, t, b) for k, t, b in (
                ("pointing", "Pointing game", True), ("iou", "TLoc IoU", True), ("mass", "Mass in span", True),
                ("spr", "SPR", True), ("daopc", "D-AOPC", False), ("inf", "INF", False), ("stab", "STAB (cos)", True),
                ("runtime_s", "seconds per token", False))]:
            means = [methods[m][key]["mean"] for m in names]
            src = ColumnDataSource(dict(m=names, v=[x if math.isfinite(x) else 0 for x in means],
                                        lo=[methods[m][key]["low"] for m in names],
                                        hi=[methods[m][key]["high"] for m in names]))
            f = figure(y_range=names[::-1], title=f"{title} ({'higher' if better else 'lower'} is better)",
                       width=420, height=26 * len(names) + 60, x_axis_type="log" if key == "runtime_s" else "linear")
            f.hbar(y="m", right="v", left=1e-4 if key == "runtime_s" else 0, height=0.7, source=src,
                   color="#4477aa")
            f.add_layout(Whisker(source=src, base="m", lower="lo", upper="hi", dimension="width"))
            bars.append(f)
        blocks.append(gridplot([figs], toolbar_location="right"))
        blocks.append(gridplot(bars, ncols=3, toolbar_location=None))
    path.write_text(file_html(column(*blocks), INLINE, "LEAF-XBench"), encoding="utf-8")


def write_reports(result: dict, out_dir) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = result["records"]
    (out / "records.json").write_text(json.dumps(records))
    keys = sorted({k for r in records for k in r})
    with open(out / "records.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in records:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    summary = summarise(records)
    norm = normalised(summary)
    curve_data = curves(records)
    (out / "summary.json").write_text(json.dumps({"summary": summary, "normalised": norm, "curves": curve_data,
                                                  "clips": result["clips"], "settings": result["settings"]},
                                                 indent=1, default=str))
    (out / "report.md").write_text(markdown(result, summary, norm))
    try:
        html_report(result, summary, curve_data, out / "report.html")
    except ImportError:  # bokeh missing: the other outputs still stand
        pass
    return summary
