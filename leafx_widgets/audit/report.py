"""The corpus audit's HTML page (bokeh, self-contained): clips ranked by flagged tokens and WER, the
most suspicious tokens, score against log-prob by error label, and the substitutions' contrasts."""
from __future__ import annotations

import html
from pathlib import Path

from ..atomic import atomic_write

TOP_TOKENS = 300  # rows of the token table (the CSV and parquet hold them all)
ERROR_COLOURS = {"correct": "#9e9e9e", "substitution": "#d62728", "insertion": "#ff7f0e", "none": "#1f77b4"}


def _table(df, columns: list[tuple[str, str]], height: int = 320):
    from bokeh.models import ColumnDataSource, DataTable, NumberFormatter, TableColumn

    data = {c: df[c].astype(object).where(df[c].notna(), None).tolist() for c, _ in columns}
    cols = [TableColumn(field=c, title=t, formatter=NumberFormatter(format="0.000"))
            if df[c].dtype.kind == "f" else TableColumn(field=c, title=t) for c, t in columns]
    return DataTable(source=ColumnDataSource(data), columns=cols, height=height, sizing_mode="stretch_width",
                     index_position=None)


def html_report(tokens, clips, failed, meta: dict, path: Path) -> None:
    """Write the page to ``path`` (atomically)."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Div
    from bokeh.plotting import figure
    from bokeh.resources import INLINE  # offline: nothing fetched from a CDN

    status = (f"{meta['done_clips']} of {meta['planned_clips']} clips audited"
              + (f", {meta['failed_clips']} failed" if meta["failed_clips"] else "")
              + (" (interrupted: rerun the command to resume)" if meta["interrupted"] else "")
              + f"; model {html.escape(meta['model'])}; {len(tokens)} tokens, {int(tokens['flag'].sum())} flagged "
              f"(score >= {meta['settings']['threshold']:g})")
    blocks = [Div(text=f"<h1>Token audit</h1><p>{status}</p><p>score = 0.8 (1 - p(token)) + 0.2 (1 - "
                       "stability under noise); errors from aligning each transcript to its reference.</p>")]
    if len(clips):
        ranked = clips.assign(flag_share=clips["n_flagged"] / clips["n_tokens"].clip(lower=1))
        ranked = ranked.sort_values(["n_flagged", "wer", "max_score"], ascending=False, na_position="last")
        blocks += [Div(text="<h2>Clips, most flagged first</h2>"),
                   _table(ranked, [("dataset", "dataset"), ("clip", "clip"), ("n_flagged", "flagged"),
                                   ("flag_share", "flagged share"), ("wer", "WER"),
                                   ("n_substitutions", "sub"), ("n_insertions", "ins"), ("n_deletions", "del"),
                                   ("max_score", "max score"), ("hyp", "transcript"), ("ref", "reference")], 260)]
    if len(tokens):
        top = tokens.sort_values("score", ascending=False).head(TOP_TOKENS)
        blocks += [Div(text=f"<h2>Tokens, highest score first (top {min(TOP_TOKENS, len(tokens))})</h2>"),
                   _table(top, [("dataset", "dataset"), ("clip", "clip"), ("token", "#"), ("text", "token"),
                                ("word", "word"), ("score", "score"), ("flag", "flag"), ("logprob", "log p"),
                                ("entropy", "entropy"), ("outside", "outside"), ("stability", "stability"),
                                ("error", "error"), ("ref_word", "reference"), ("start_s", "start s")])]
        fig = figure(height=320, sizing_mode="stretch_width", title="score against the model's own log-prob",
                     x_axis_label="log p(token)", y_axis_label="score", tools="pan,wheel_zoom,box_zoom,reset,hover",
                     tooltips=[("clip", "@clip"), ("token", "@text"), ("error", "@error")])
        labels = tokens["error"].fillna("none")
        for label, colour in ERROR_COLOURS.items():
            part = tokens[labels == label]
            if len(part):
                src = ColumnDataSource({"x": part["logprob"].tolist(), "y": part["score"].tolist(),
                                        "clip": part["clip"].tolist(), "text": part["text"].tolist(),
                                        "error": [label] * len(part)})
                fig.scatter("x", "y", source=src, color=colour, alpha=0.7, size=6, legend_label=label)
        fig.legend.location = "bottom_left"
        blocks.append(fig)
        subs = tokens[tokens["contrast_foil"].notna()].drop_duplicates(["dataset", "clip", "word_index"])
        if len(subs):
            blocks += [Div(text="<h2>Substitutions: the model's word against the reference word</h2><p>delta = "
                                "log p(model's word) - log p(reference word) on the clip; total = how much the "
                                "sound, against silence, moved the choice towards the model's word; peak = where "
                                "it did most.</p>"),
                       _table(subs, [("dataset", "dataset"), ("clip", "clip"), ("word", "model's word"),
                                     ("contrast_foil", "reference word"), ("contrast_delta", "delta"),
                                     ("contrast_total", "total"), ("contrast_peak_s", "peak s"),
                                     ("score", "score")], 220)]
    if len(failed):
        blocks += [Div(text="<h2>Failed clips</h2>"),
                   _table(failed, [("dataset", "dataset"), ("clip", "clip"), ("reason", "reason")], 160)]
    atomic_write(path, file_html(column(*blocks, sizing_mode="stretch_width"), INLINE, "Token audit"))
