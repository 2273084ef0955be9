"""LEAF-XBench reports: per-token CSV/JSON, summary JSON, markdown tables, bokeh HTML."""
from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from . import metrics as M
from .metrics import bootstrap_ci, minmax, paired_difference, paired_verdict


def table_metrics() -> list[tuple[str, str, bool]]:
    """(record key, column title, higher is better?) of the raw table, from the metric registry."""
    return [(c.key, c.label, c.higher_is_better) for c in M.columns() if c.table]

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
        for key, _, _ in table_metrics():
            values = np.array([r.get(key, np.nan) if r.get(key) is not None else np.nan for r in rows], float)
            values = values[np.isfinite(values)]
            ci = bootstrap_ci(values, n_boot=n_boot)
            entry[key] = {"mean": float(values.mean()) if len(values) else float("nan"),
                          "low": ci.low, "high": ci.high, "n": int(len(values))}
        out.setdefault(dataset, {})[method] = entry
    return out


# head-to-head rows: these keys first, always, in this order; then every other registered key
# (STAB's, a new metric's) that the records have. Titles and directions come from the registry.
PAIRED_FIRST = ("daopc", "ins_auc", "inf", "pointing", "iou", "mass", "spr")
PAIRED_LAST = ("stab", "stab_noise_cos", "stab_shift_cos", "stab_noise_spearman", "stab_shift_spearman")
PAIRED_SKIP = ("runtime_s", "mean_logp_drop")  # timing, and D-AOPC's by-product
BAR_SKIP = ("mean_logp_drop", "ins_auc", "stab_noise_spearman", "stab_shift_spearman")  # no bar in the HTML
PAIRED_BASELINES = ("raa_last", "raa_mean")
PAIRED_MIN_N = 10  # fewer token pairs than this: no win/loss claimed (the percentile bootstrap is too narrow)


def paired(records: list[dict], reference: str = "leafx_sf", compare=None, *, n_boot: int = 1000,
           seed: int = 0) -> dict | None:
    """Reference minus each other method, paired by (dataset, clip, token_index), per metric.

    Returns ``None`` when no record has the reference method, else
    ``{"reference", "n_boot", "seed", "min_n", "metrics": [[key, title, higher_is_better], ...],
    "datasets": {dataset: {method: {metric: {"diff", "low", "high", "n", "verdict"}}}}}``.
    ``compare``: the methods to compare (default: raa_last, raa_mean, then every other method
    in record order). A cell needs at least one token with the metric finite for both methods.
    """
    methods = list(dict.fromkeys(r["method"] for r in records))
    if reference not in methods:
        return None
    if compare is None:
        compare = [m for m in PAIRED_BASELINES if m in methods] + [m for m in methods if m not in PAIRED_BASELINES]
    compare = [m for m in compare if m != reference]
    present = {k for r in records for k in r}
    metrics = paired_metrics(present)
    by_token: dict = {}
    for r in records:  # {(dataset, method): {(clip, token_index): record}}, first record of a token wins
        by_token.setdefault((r["dataset"], r["method"]), {}).setdefault((r["clip"], r["token_index"]), r)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    table: dict = {}
    for ds in datasets:
        ref = by_token.get((ds, reference))
        if not ref:
            continue
        for method in compare:
            other = by_token.get((ds, method))
            if not other:
                continue
            common = [k for k in ref if k in other]
            cells = {}
            for key, _, higher in metrics:
                a = np.array([_value(ref[k], key) for k in common], float)
                b = np.array([_value(other[k], key) for k in common], float)
                d = paired_difference(a, b, n_boot=n_boot, seed=seed)
                if d.n:
                    cells[key] = {"diff": d.mean, "low": d.low, "high": d.high, "n": d.n,
                                  "verdict": paired_verdict(d, higher, min_n=PAIRED_MIN_N)}
            if cells:
                table.setdefault(ds, {})[method] = cells
    return {"reference": reference, "n_boot": n_boot, "seed": seed, "min_n": PAIRED_MIN_N,
            "metrics": [list(m) for m in metrics], "datasets": table}


def paired_metrics(present) -> list[tuple[str, str, bool]]:
    """(key, title with its arrow, higher is better?) of the head-to-head rows for records with keys ``present``."""
    cols = {c.key: c for c in M.columns()}
    rest = [k for k in cols if k not in PAIRED_FIRST + PAIRED_LAST + PAIRED_SKIP]
    keys = [k for k in PAIRED_FIRST if k in cols] + [k for k in (*PAIRED_LAST, *rest) if k in present and k in cols]
    return [(k, f"{cols[k].label} {'↑' if cols[k].higher_is_better else '↓'}", cols[k].higher_is_better)
            for k in keys]


def _value(record: dict, key: str) -> float:
    v = record.get(key)
    return float("nan") if v is None else float(v)


def _paired_rows(pair: dict):
    """(method, metric title, {dataset: cell or None}) for each row of the head-to-head table."""
    datasets = list(pair["datasets"])
    methods = list(dict.fromkeys(m for ds in datasets for m in pair["datasets"][ds]))
    for method in methods:
        for key, title, _ in pair["metrics"]:
            cells = {ds: pair["datasets"][ds].get(method, {}).get(key) for ds in datasets}
            if any(cells.values()):
                yield method, title, cells


def _fmt_pair(cell: dict | None) -> str:
    if not cell:
        return "–"
    return f"{cell['diff']:+.3f} [{cell['low']:+.3f}, {cell['high']:+.3f}] {cell['verdict']} (n={cell['n']})"


def _paired_title(pair: dict) -> str:
    return f"Head-to-head: {pair['reference']} vs each method (paired, 95% bootstrap over tokens)"


def _paired_note(pair: dict) -> str:
    lower = ", ".join(title.removesuffix(" ↓") for _, title, higher in pair["metrics"] if not higher)
    return (f"Each cell: mean of {pair['reference']} minus the row's method over the tokens that have the metric "
            "for both (same dataset, clip and token), a 95% percentile bootstrap interval resampling those "
            f"token pairs ({pair['n_boot']} resamples, seed {pair['seed']}), the verdict and n. win / loss: the "
            f"interval excludes 0 on the metric's good / bad side (↓ lower is better: {lower}; ↑ higher: "
            "the rest, SPR included, as in the tables above); tie otherwise, and always when n < "
            f"{pair['min_n']}. Intervals are not corrected for the many comparisons.")


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


def _cell(text) -> str:
    """Text safe inside a markdown table cell (ids and transcripts may hold '|')."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def status_lines(result: dict) -> list[str]:
    """Plain sentences about an interrupted run (none when it ran to the end)."""
    if not result.get("interrupted"):
        return []
    done = len(result["clips"]) + len(result.get("failed", []))
    return [f"Partial report: interrupted after {done} of {result.get('planned_clips', '?')} clips; "
            "run the same command with the same --out to resume (finished clips come from the cache)."]


def markdown(result: dict, summary: dict, norm: dict, pair: dict | None = None) -> str:
    s = result["settings"]
    lines = ["# LEAF-XBench results", ""]
    for line in status_lines(result):
        lines += [f"**{line}**", ""]
    failed = result.get("failed", [])
    if failed:
        lines += [f"**{len(failed)} clip{'s' if len(failed) != 1 else ''} failed** and "
                  f"{'are' if len(failed) != 1 else 'is'} left out of every table (see Failed clips below).", ""]
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
    datasets = list(summary)
    for ds in datasets:
        clips = [c for c in result["clips"] if c["dataset"] == ds]
        wer = np.mean([c["wer"] for c in clips]) if clips else float("nan")
        lines += [f"## {ds}: raw values", "",
                  f"{len(clips)} clips, mean WER {wer:.3f}, {sum(c['n_tokens'] for c in clips)} evaluated words.", ""]
        cols = [(k, t) for k, t, _ in table_metrics()]
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
    if pair and pair["datasets"]:
        datasets = list(pair["datasets"])
        lines += [f"## {_paired_title(pair)}", "", _paired_note(pair), "",
                  "| method | metric | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
        for method, title, cells in _paired_rows(pair):
            lines.append(f"| {method} | {title} | " + " | ".join(map(_fmt_pair, cells.values())) + " |")
        lines.append("")
    lines += ["## Per-clip", "", "| dataset | clip | WER | words | faith | seconds | hypothesis |", "|---|---|---|---|---|---|---|"]
    for c in result["clips"]:
        lines.append(f"| {_cell(c['dataset'])} | {_cell(c['clip'])} | {c['wer']:.2f} | {c['n_tokens']} | "
                     f"{c['n_faith']} | {c.get('seconds', float('nan')):.0f} | {_cell(c['hyp'])} |")
    if failed:
        lines += ["", "## Failed clips", "", "| dataset | clip | file | reason |", "|---|---|---|---|"]
        lines += [f"| {_cell(f['dataset'])} | {_cell(f['clip'])} | {_cell(f.get('file', ''))} | {_cell(f['reason'])} |"
                  for f in failed]
    lines += ["", "## Settings", "", "```json", json.dumps({k: v for k, v in s.items()}, indent=1, default=str), "```", ""]
    return "\n".join(lines)


def html_report(result: dict, summary: dict, curve_data: dict, path: Path, pair: dict | None = None) -> None:
    """Write the bokeh page (curves, bars, head-to-head, failed clips), self-contained, to ``path``."""
    from bokeh.embed import file_html
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, Div, Whisker
    from bokeh.palettes import Category20_20
    from bokeh.plotting import figure
    from bokeh.resources import INLINE  # works offline: nothing fetched from a CDN

    levels = [0.0] + list(result["settings"]["levels"])
    blocks = [Div(text="<h1>LEAF-XBench</h1><p>Deletion/insertion curves (mean ratio p(masked)/p(clean) over the "
                       "faithfulness tokens) and per-method bars with 95% bootstrap CIs over words.</p>"
                       + "".join(f"<p><b>{html.escape(line)}</b></p>" for line in status_lines(result)))]
    failed = result.get("failed", [])
    if failed:
        rows = "".join(f"<tr><td>{html.escape(str(f['dataset']))}</td><td>{html.escape(str(f['clip']))}</td>"
                       f"<td>{html.escape(str(f['reason']))}</td></tr>" for f in failed)
        blocks.append(Div(text=f"<h2>Failed clips ({len(failed)}, left out of every figure)</h2>"
                               '<table border="1" cellpadding="3" style="border-collapse:collapse">'
                               f"<tr><th>dataset</th><th>clip</th><th>reason</th></tr>{rows}</table>", width=1300))
    for ds, methods in summary.items():
        blocks.append(Div(text=f"<h2>{html.escape(str(ds))}</h2>"))
        figs = []
        kinds = (("del", "Deletion (lower = more faithful)"), ("ins", "Insertion (higher = better)"))
        for kind, title in kinds if curve_data.get(ds) else ():  # no D-AOPC run: no empty plots (bokeh warns)
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
        titles = {"pointing": "Pointing game", "iou": "TLoc IoU", "mass": "Mass in span", "stab": "STAB (cos)",
                  "runtime_s": "seconds per token"}  # longer titles than the table's; any other: its label
        shown = [c for c in M.columns() if c.table and c.key not in BAR_SKIP]
        for key, title, better in [(c.key, titles.get(c.key, c.label), c.higher_is_better) for c in shown]:
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
        if figs:
            blocks.append(gridplot([figs], toolbar_location="right"))
        blocks.append(gridplot(bars, ncols=3, toolbar_location=None))
    if pair and pair["datasets"]:
        blocks.append(Div(text=_paired_html(pair), width=1300))
    atomic_write(path, file_html(column(*blocks), INLINE, "LEAF-XBench"))


# tints of Okabe-Ito blue (win) and vermillion (loss); the verdict is written in the cell too
_VERDICT_STYLE = {"win": "background:#d6e9f5", "loss": "background:#f9dcc4", "tie": ""}


def _paired_html(pair: dict) -> str:
    head = "".join(f"<th>{html.escape(ds)}</th>" for ds in pair["datasets"])
    rows = []
    for method, title, cells in _paired_rows(pair):
        tds = [f'<td style="{_VERDICT_STYLE[c["verdict"]] if c else ""}">{html.escape(_fmt_pair(c))}</td>'
               for c in cells.values()]
        rows.append(f"<tr><td>{html.escape(method)}</td><td>{html.escape(title)}</td>{''.join(tds)}</tr>")
    return (f"<h2>{html.escape(_paired_title(pair))}</h2><p>{html.escape(_paired_note(pair))}</p>"
            '<table style="border-collapse:collapse;font-family:monospace;font-size:12px" border="1" cellpadding="3">'
            f"<tr><th>method</th><th>metric</th>{head}</tr>{''.join(rows)}</table>")


def write_reports(result: dict, out_dir, *, reference: str = "leafx_sf", compare=None) -> dict:
    """Write records (JSON, CSV), summary.json, report.md and report.html into ``out_dir``.

    Each file is written whole to a temporary file and renamed, so an interrupted write
    leaves the previous version. Failed clips (``result["failed"]``) and an interrupted run
    (``result["interrupted"]``) are stated in summary.json, report.md and report.html.
    ``reference``/``compare``: the head-to-head section (``paired``); skipped when no record
    has the reference method. Returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = result["records"]
    atomic_write(out / "records.json", json.dumps(records))
    keys = sorted({k for r in records for k in r})
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    for r in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    atomic_write(out / "records.csv", buffer.getvalue())
    summary = summarise(records)
    norm = normalised(summary)
    curve_data = curves(records)
    pair = paired(records, reference, compare)
    atomic_write(out / "summary.json", json.dumps(
        {"summary": summary, "normalised": norm, "curves": curve_data, "paired": pair, "clips": result["clips"],
         "failed": result.get("failed", []), "interrupted": bool(result.get("interrupted")),
         "planned_clips": result.get("planned_clips", len(result["clips"])), "settings": result["settings"]},
        indent=1, default=str))
    atomic_write(out / "report.md", markdown(result, summary, norm, pair))
    try:
        html_report(result, summary, curve_data, out / "report.html", pair)
    except ImportError:  # bokeh missing: the other outputs still stand
        pass
    return summary
