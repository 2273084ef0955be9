"""Static, exportable bokeh figures from an Explanation: for papers and reports.

Four figures, each a function that returns a bokeh layout:

* ``spectrogram``: the model's log-Mel input, one token's (or word's) attribution
  drawn over it, word spans (when given) and each word's attribution peak;
* ``token_matrix``: every token's map, tokens x time;
* ``comparison_grid``: chosen words x methods (LEAF-X variants and baselines);
* ``curves_figure``: deletion and insertion curves, from ``faithfulness_curves``
  (computed here with the benchmark's masking) or from LEAF-XBench records;
* ``lens_figure``: a token's logit lens, its probability layer by layer;
* ``patching_figure``: activation patching over time, the effect of restoring each stretch.

``export(fig, "out/name")`` writes ``name.png``, ``name.svg`` (through selenium with
a headless chromium) and a standalone ``name.html`` with bokeh's JavaScript inline,
so every file works offline.

Colours are colour-blind safe: Cividis for the spectrogram and matrices, the
Okabe-Ito set for lines (each line also gets its own dash and marker), and fonts
are sized to stay legible when a figure is printed at column width.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .methods import DEFAULT_METHOD, METHODS, get_method

# Okabe & Ito (2008), "Color Universal Design": safe for the common colour-vision deficiencies
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
LINE_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")  # no yellow on white
DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot", (6, 2, 2, 2), (2, 4))
MARKERS = ("circle", "square", "triangle", "diamond", "inverted_triangle", "star", "hex")
OVERLAY_COLOR = "#E69F00"  # attribution over the (Cividis) spectrogram
PEAK_COLOR = "#D55E00"

# print sizes: a 900 px wide figure printed 17 cm wide keeps 10 pt ticks at ~7.5 pt
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
TITLE_PT, LABEL_PT, TICK_PT, LEGEND_PT = "13pt", "12pt", "10pt", "10pt"
WIDE, TALL = 900, 320  # spectrogram / matrix size in CSS px
CELL_W, CELL_H = 230, 120  # one cell of the comparison grid
CURVE_W, CURVE_H = 440, 340

DEFAULT_LEVELS = (0.05, 0.10, 0.20, 0.30, 0.50)  # fraction of real frames masked (the benchmark's levels)


# ----------------------------------------------------------------------------- helpers

def _style(fig, *, title: bool = True):
    """Print fonts and a quiet frame on one bokeh figure; returns it."""
    if title and fig.title is not None:
        fig.title.text_font_size = TITLE_PT
        fig.title.text_font = FONT
        fig.title.text_font_style = "bold"
    for axis in fig.axis:
        axis.axis_label_text_font_size = LABEL_PT
        axis.axis_label_text_font = FONT
        axis.axis_label_text_font_style = "normal"
        axis.major_label_text_font_size = TICK_PT
        axis.major_label_text_font = FONT
    fig.grid.grid_line_alpha = 0.3
    fig.toolbar.logo = None
    fig.outline_line_color = "#444444"
    return fig


def _legend_style(fig, location="top_right"):
    fig.legend.location = location
    fig.legend.label_text_font_size = LEGEND_PT
    fig.legend.label_text_font = FONT
    fig.legend.background_fill_alpha = 0.8
    fig.legend.spacing = 0
    fig.legend.padding = 4
    fig.legend.click_policy = "hide"


def _word_index(ex, word) -> int:
    """A word given as an index or as its text (first match, case and punctuation ignored)."""
    if isinstance(word, (int, np.integer)) and not isinstance(word, bool):
        if not 0 <= word < len(ex.words):
            raise IndexError(f"word index {word} is out of range: {len(ex.words)} words")
        return int(word)
    if isinstance(word, str):
        key = _fold(word)
        for w in ex.words:
            if _fold(w.text) == key:
                return w.index
        raise ValueError(f"no word {word!r} in {ex.text!r}")
    raise TypeError(f"word must be an int index or a str, got {type(word).__name__}")


def _fold(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def word_map(ex, word, method: str = DEFAULT_METHOD, **params) -> np.ndarray:
    """A word's attribution over the whole clip: its tokens' maps summed and renormalised."""
    w = ex.words[_word_index(ex, word)]
    mass = sum(ex.map_global(t, method, **params) for t in w.tokens)
    total = float(mass.sum())
    return (mass / total if total > 0 else mass).astype(np.float32)


def first_token_map(ex, word, method: str = DEFAULT_METHOD, **params) -> np.ndarray:
    """The map of a word's first token over the whole clip (what the benchmark scores)."""
    return ex.map_global(ex.words[_word_index(ex, word)].tokens[0], method, **params)


def word_peaks(ex, method: str = DEFAULT_METHOD, **params) -> list[tuple[str, float]]:
    """(word, time of its attribution peak in s) for every word, under ``method``."""
    return [(w.text, (int(np.argmax(word_map(ex, w.index, method, **params))) + 0.5) * ex.frame_s)
            for w in ex.words]


def _times(ex) -> np.ndarray:
    return (np.arange(ex.n_frames) + 0.5) * ex.frame_s


def _label(method: str) -> str:
    try:
        return get_method(method).label
    except ValueError:
        return METHODS[method].label if method in METHODS else method


# ----------------------------------------------------------------------------- figures

def spectrogram(ex, token: int | None = None, *, word=None, method: str = DEFAULT_METHOD,
                spans: Sequence[tuple[str, float, float]] | None = None, peaks: bool = True,
                width: int = WIDE, height: int = TALL, title: str | None = None, **params):
    """The log-Mel input with one attribution drawn over it.

    Give ``token`` (an index) or ``word`` (index or text; its tokens' maps summed).
    ``spans``: reference word intervals ``(text, start_s, end_s)`` drawn as shaded
    boxes with their text (e.g. from a forced alignment). ``peaks``: a tick at each
    word's attribution peak under ``method``.
    """
    from bokeh.core.properties import value
    from bokeh.models import ColorBar, LinearAxis, LinearColorMapper, Range1d, Span
    from bokeh.palettes import Cividis256
    from bokeh.plotting import figure

    if (token is None) == (word is None):
        raise ValueError("give exactly one of token= or word=")
    if token is not None:
        r = ex.map_global(token, method, **params)
        what = f"token {token} {ex.tokens[token].text.strip()!r}"
    else:
        r = word_map(ex, word, method, **params)
        what = f"word {ex.words[_word_index(ex, word)].text!r}"
    mel = ex.log_mel()
    duration = ex.n_frames * ex.frame_s
    n_mels = mel.shape[0]
    fig = figure(width=width, height=height, x_range=Range1d(0, duration), y_range=Range1d(0, n_mels),
                 x_axis_label="time (s)", y_axis_label="log-Mel bin", tools="xpan,xwheel_zoom,reset",
                 toolbar_location=None,
                 title=title if title is not None else f"{_label(method)}: {what}")
    mapper = LinearColorMapper(palette=Cividis256, low=float(mel.min()), high=float(mel.max()))
    fig.image(image=[mel], x=0, y=0, dw=duration, dh=n_mels, color_mapper=mapper, level="image")
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, title="log-Mel", title_text_font_size=TICK_PT,
                            major_label_text_font_size=TICK_PT), "right")

    # attribution on its own y axis, filled and outlined so it reads over the image
    top = float(r.max()) * 1.1 or 1.0
    fig.extra_y_ranges = {"attr": Range1d(0, top)}
    fig.add_layout(LinearAxis(y_range_name="attr", axis_label="attribution"), "right")
    t = _times(ex)
    fig.varea(x=t, y1=np.zeros_like(r), y2=r, y_range_name="attr", fill_color=OVERLAY_COLOR, fill_alpha=0.45)
    fig.line(t, r, y_range_name="attr", line_color="white", line_width=3.5)
    fig.line(t, r, y_range_name="attr", line_color=OVERLAY_COLOR, line_width=2, legend_label=_label(method))

    for i, (text, start, end) in enumerate(spans or ()):
        fig.add_layout(_box(start, end))
        # labels alternate between two rows so neighbouring short words do not overlap
        fig.text([0.5 * (start + end)], [n_mels * (0.93 if i % 2 == 0 else 0.85)], [text], text_align="center",
                 text_color="white", text_font_size="8pt", text_font=value(FONT), text_baseline="middle")
        for edge in (start, end):
            fig.add_layout(Span(location=edge, dimension="height", line_color="white", line_alpha=0.6,
                                line_width=1))
    if peaks:
        peak_list = word_peaks(ex, method, **params)
        fig.scatter([p for _, p in peak_list], [2.5] * len(peak_list), marker="triangle", size=9,
                    color=PEAK_COLOR, line_color="white", legend_label="word peaks")
        if not spans:  # with spans the words are named at the top already
            fig.text([p for _, p in peak_list], [5] * len(peak_list), [w for w, _ in peak_list], angle=np.pi / 2,
                     text_color="white", text_font_size="8pt", text_font=value(FONT), text_baseline="middle")
    _style(fig)
    _legend_style(fig)
    legend = fig.legend[0]
    legend.orientation = "horizontal"
    fig.add_layout(legend, "above")  # outside the image: nothing hidden under it
    return fig


def _box(start: float, end: float):
    from bokeh.models import BoxAnnotation

    return BoxAnnotation(left=start, right=end, fill_color="white", fill_alpha=0.10, line_alpha=0)


def token_matrix(ex, method: str = DEFAULT_METHOD, *, tokens: Iterable[int] | None = None, row_normalise: bool = True,
                 width: int = WIDE, height: int | None = None, title: str | None = None, **params):
    """Every token's map as one row of an image: tokens (top to bottom) x time.

    ``row_normalise``: each row divided by its maximum, so weak and sharp maps are
    equally visible (the colour bar then reads "fraction of the row's peak").
    """
    from bokeh.models import ColorBar, FixedTicker, LinearColorMapper, Range1d
    from bokeh.palettes import Viridis256
    from bokeh.plotting import figure

    rows = list(range(len(ex.tokens)) if tokens is None else tokens)
    if not rows:
        raise ValueError("no tokens to draw")
    mat = np.stack([ex.map_global(k, method, **params) for k in rows]).astype(np.float64)
    if row_normalise:
        mat = mat / np.maximum(mat.max(axis=1, keepdims=True), 1e-12)
    n = len(rows)
    duration = ex.n_frames * ex.frame_s
    height = height or max(220, 60 + 18 * n)
    fig = figure(width=width, height=height, x_range=Range1d(0, duration), y_range=Range1d(n, 0),
                 x_axis_label="time (s)", tools="xpan,xwheel_zoom,reset", toolbar_location=None,
                 title=title if title is not None else f"{_label(method)}: tokens x time")
    mapper = LinearColorMapper(palette=Viridis256, low=0.0, high=float(mat.max()) or 1.0)
    # rows drawn top-down: image row 0 sits at y=0, the flipped y range puts token 0 on top
    fig.image(image=[mat], x=0, y=0, dw=duration, dh=n, color_mapper=mapper, level="image")
    fig.yaxis.ticker = FixedTicker(ticks=[i + 0.5 for i in range(n)])
    fig.yaxis.major_label_overrides = {i + 0.5: repr(ex.tokens[k].text)[1:-1] for i, k in enumerate(rows)}
    fig.add_layout(ColorBar(color_mapper=mapper, width=10, major_label_text_font_size=TICK_PT,
                            title="of row peak" if row_normalise else "attribution",
                            title_text_font_size=TICK_PT), "right")
    _style(fig)
    fig.yaxis.major_label_text_font_size = "9pt"
    fig.grid.visible = False
    return fig


def comparison_grid(ex, words: Sequence, methods: Sequence[str], *,
                    spans: dict | None = None, per: str = "first_token", params: dict | None = None,
                    cell_width: int = CELL_W, cell_height: int = CELL_H, title: str | None = None):
    """Words (rows) x methods (columns), each cell one map over the whole clip.

    ``per``: "first_token" (the token that starts the word, as the benchmark scores it)
    or "word" (the word's tokens summed). ``spans``: {word text: (start_s, end_s)}
    reference spans, shaded in each cell of that row. ``params``: {method: params}.
    """
    from bokeh.layouts import column, gridplot
    from bokeh.models import Div, Range1d
    from bokeh.plotting import figure

    if per not in ("first_token", "word"):
        raise ValueError(f"per must be 'first_token' or 'word', got {per!r}")
    if not words or not methods:
        raise ValueError("give at least one word and one method")
    params = params or {}
    pick = first_token_map if per == "first_token" else word_map
    duration = ex.n_frames * ex.frame_s
    x_range = Range1d(0, duration)
    t = _times(ex)
    rows = []
    for i, word in enumerate(words):
        w = ex.words[_word_index(ex, word)]
        row = []
        for j, method in enumerate(methods):
            r = pick(ex, w.index, method, **params.get(method, {}))
            fig = figure(width=cell_width + (40 if j == 0 else 0), height=cell_height + (30 if i == 0 else 0),
                         x_range=x_range, y_range=Range1d(0, float(r.max()) * 1.15 or 1.0),
                         title=_label(method) if i == 0 else None, toolbar_location=None, tools="")
            span = (spans or {}).get(w.text)
            if span is not None:
                fig.add_layout(_span_box(*span))
            fig.varea(x=t, y1=np.zeros_like(r), y2=r, fill_color=LINE_COLORS[0], fill_alpha=0.35)
            fig.line(t, r, line_color=LINE_COLORS[0], line_width=1.5)
            peak = (int(np.argmax(r)) + 0.5) * ex.frame_s
            fig.scatter([peak], [float(r.max())], marker="triangle", size=8, color=PEAK_COLOR)
            fig.yaxis.visible = j == 0
            if j == 0:
                fig.yaxis.axis_label = w.text
            fig.xaxis.visible = i == len(words) - 1
            if i == len(words) - 1:
                fig.xaxis.axis_label = "time (s)"
            fig.yaxis.major_label_text_font_size = "0pt"
            fig.yaxis.major_tick_line_color = None
            fig.yaxis.minor_tick_line_color = None
            _style(fig)
            fig.yaxis.major_label_text_font_size = "0pt"
            fig.min_border_left = fig.min_border_right = 4
            row.append(fig)
        rows.append(row)
    grid = gridplot(rows, toolbar_location=None)
    if title:
        return column(Div(text=f"<b style='font: {TITLE_PT} {FONT}'>{title}</b>"), grid)
    return grid


def _span_box(start: float, end: float):
    from bokeh.models import BoxAnnotation

    return BoxAnnotation(left=start, right=end, fill_color="#999999", fill_alpha=0.25, line_alpha=0)


# ----------------------------------------------------------------------------- faithfulness curves

def faithfulness_curves(ex, words: Sequence, methods: Sequence[str], *, levels: Sequence[float] = DEFAULT_LEVELS,
                        params: dict | None = None) -> dict:
    """Deletion and insertion curves for each method, averaged over the first tokens of ``words``.

    Same convention as LEAF-XBench: mask the top ``level`` fraction of the real frames
    (ranked by the map) with the log-Mel of silence and take p(masked) / p(clean) of the
    token (deletion; low = faithful); insertion restores only the top frames of a fully
    masked input (high = faithful). Model passes are batched and shared per window.
    Returns ``{"levels": [0, *levels], "curves": {method: {"del": [...], "ins": [...], "n": k}}}``.
    """
    from .bench.metrics import deletion_masks, ratio_curves
    from .methods._common import MaskedScorer

    params = params or {}
    levels = [float(x) for x in levels]
    if not levels or not all(0 < x <= 1 for x in levels):
        raise ValueError(f"levels must be fractions in (0, 1], got {levels}")
    tokens = [ex.words[_word_index(ex, w)].tokens[0] for w in words]
    by_window: dict[int, list[int]] = {}
    for k in tokens:
        by_window.setdefault(ex.tokens[k].window, []).append(k)
    sums = {m: {"del": np.zeros(len(levels) + 1), "ins": np.zeros(len(levels) + 1), "n": 0} for m in methods}
    for w, ks in by_window.items():
        window = ex.windows[w]
        positions = [window.tokens.index(k) for k in ks]
        scorer = MaskedScorer(window, positions)
        n = window.n_valid
        masks = [np.zeros(n, bool), np.ones(n, bool)]  # clean, everything masked
        index = {}
        for method in methods:
            for k in ks:
                r = ex.map(k, method, **params.get(method, {}))
                for level, dm in zip(levels, deletion_masks(r, levels, n)):  # the bench's masks
                    index[(method, k, level)] = len(masks)
                    masks += [dm, ~dm]
        logp = scorer.masked(np.array(masks)).numpy()  # (n_masks, len(positions))
        for col, k in enumerate(ks):
            clean, empty = logp[0, col], logp[1, col]
            for method in methods:
                rows = [index[(method, k, level)] for level in levels]
                dele, ins = ratio_curves(clean, logp[rows, col], empty, logp[[i + 1 for i in rows], col])
                sums[method]["del"] += dele
                sums[method]["ins"] += ins
                sums[method]["n"] += 1
    curves = {m: {"del": (s["del"] / max(s["n"], 1)).tolist(), "ins": (s["ins"] / max(s["n"], 1)).tolist(),
                  "n": s["n"]} for m, s in sums.items()}
    return {"levels": [0.0, *levels], "curves": curves}


def curves_from_records(records: list[dict], *, levels: Sequence[float] | None = None,
                        dataset: str | None = None) -> dict:
    """The same structure from LEAF-XBench per-token records.

    ``levels``: the run's masking fractions, ``result["settings"]["levels"]`` of ``run_bench``
    (default: the benchmark's default levels, which must then match the curves' length).
    """
    from .bench.report import curves as bench_curves

    per_dataset = bench_curves(records)
    if not per_dataset:
        raise ValueError("no records carry deletion/insertion curves (faith_per_clip was 0?)")
    name = dataset or next(iter(per_dataset))
    if name not in per_dataset:
        raise ValueError(f"no dataset {name!r} in the records; have {sorted(per_dataset)}")
    curves = per_dataset[name]
    levels = [float(x) for x in (DEFAULT_LEVELS if levels is None else levels)]
    n_points = len(next(iter(curves.values()))["del"])
    if n_points != len(levels) + 1:
        raise ValueError(f"the curves have {n_points} points but {len(levels)} levels were given (+ the clean "
                         f"point); pass levels=result['settings']['levels']")
    return {"levels": [0.0, *levels], "curves": curves}


def curves_figure(data: dict, *, width: int = CURVE_W, height: int = CURVE_H, title: str | None = None):
    """Deletion (left) and insertion (right) curves from ``faithfulness_curves`` or ``curves_from_records``."""
    from bokeh.layouts import column, row
    from bokeh.models import Div
    from bokeh.plotting import figure

    levels = [100 * x for x in data["levels"]]
    figs = []
    for kind, name, better, where in (("del", "Deletion", "lower", "top_right"),
                                      ("ins", "Insertion", "higher", "bottom_right")):
        fig = figure(width=width, height=height, title=f"{name} ({better} is more faithful)",
                     x_axis_label="top frames masked (%)" if kind == "del" else "top frames kept (%)",
                     y_axis_label="p(masked) / p(clean)", toolbar_location=None, tools="")
        for i, (method, c) in enumerate(data["curves"].items()):
            color, dash, marker = LINE_COLORS[i % 7], DASHES[i % 7], MARKERS[i % 7]
            label = _label(method)
            fig.line(levels, c[kind], line_color=color, line_dash=dash, line_width=2.5, legend_label=label)
            fig.scatter(levels, c[kind], marker=marker, size=8, color=color, legend_label=label)
        _style(fig)
        _legend_style(fig, where)
        figs.append(fig)
    layout = row(*figs)
    if title:
        return column(Div(text=f"<b style='font: {TITLE_PT} {FONT}'>{title}</b>"), layout)
    return layout


# ----------------------------------------------------------------------------- export

# ----------------------------------------------------------------------------- inside the model

def lens_figure(lensed, *, width: int = CURVE_W, height: int | None = None, title: str | None = None):
    """A logit lens (``ex.logit_lens(token)``): the emitted token's probability after each decoder layer, one
    bar per layer (bottom: the first), labelled with its rank and the layer's top alternative."""
    from bokeh.core.properties import value
    from bokeh.models import ColumnDataSource, Range1d
    from bokeh.plotting import figure

    layers = list(lensed.layers)
    probs = np.exp(np.asarray(lensed.logprob, dtype=np.float64))
    notes = [f"rank {int(r)}" + ("" if r == 0 else f", top {layer[0][0].strip()!r} {layer[0][1]:.2f}")
             for r, layer in zip(lensed.rank, lensed.top)]
    source = ColumnDataSource({"layer": layers, "p": probs, "note": notes, "x": np.full(len(layers), 1.02)})
    fig = figure(width=width, height=height or 80 + 42 * len(layers), y_range=layers, x_range=Range1d(0, 1.9),
                 x_axis_label=f"p({lensed.text.strip()!r}) read out after the layer", toolbar_location=None,
                 tools="", title=title if title is not None else f"logit lens: token {lensed.token} {lensed.text.strip()!r}")
    fig.hbar(y="layer", right="p", height=0.6, source=source, color=LINE_COLORS[0])
    fig.text(x="x", y="layer", text="note", source=source, text_font_size="9pt", text_font=value(FONT),
             text_baseline="middle")
    _style(fig)
    fig.xaxis.ticker = [0, 0.25, 0.5, 0.75, 1.0]
    return fig


def patching_figure(ex, result, *, spans: Sequence[tuple[str, float, float]] | None = None, width: int = WIDE,
                    height: int = 260, title: str | None = None):
    """Patching over time (``ex.patching(token, over="time")``): the normalised effect of restoring each
    stretch of the encoder output (0 = corrupted, 1 = clean), on the recording's time axis, with the
    token's decoded word peaks (or reference ``spans``) marked."""
    from bokeh.models import Range1d, Span
    from bokeh.plotting import figure

    if result.over != "time":
        raise ValueError(f"patching_figure draws patching over time, got over={result.over!r}")
    effect = np.nan_to_num(np.asarray(result.effect, dtype=np.float64))
    low, high = min(0.0, float(effect.min())), max(1.0, float(effect.max()))
    fig = figure(width=width, height=height, x_range=Range1d(float(result.start_s[0]), float(result.end_s[-1])),
                 y_range=Range1d(low - 0.05, high + 0.05), x_axis_label="time (s)",
                 y_axis_label="effect (0 corrupted, 1 clean)", tools="xpan,xwheel_zoom,reset", toolbar_location=None,
                 title=title if title is not None else
                 f"patching {result.text.strip()!r} ({result.corrupt}): restoring each stretch of the encoder output")
    fig.quad(left=result.start_s, right=result.end_s, bottom=np.minimum(effect, 0), top=np.maximum(effect, 0),
             color=LINE_COLORS[0], line_color="white", fill_alpha=0.8)
    fig.add_layout(Span(location=0, dimension="width", line_color="#444444", line_width=1))
    fig.add_layout(Span(location=1, dimension="width", line_color=PEAK_COLOR, line_dash="dashed", line_width=1))
    for text, start, end in spans or ():
        fig.add_layout(_span_box(start, end))
        fig.text([0.5 * (start + end)], [high], [text], text_align="center", text_font_size="8pt")
    _style(fig)
    return fig


def webdriver(*, scale_factor: float = 2.0):
    """A headless chromium driven by selenium (Debian's ``chromium`` + ``chromedriver``).

    Paths come from ``$PATH``: no download, no network. The caller quits it (``export`` does).
    """
    import importlib.util

    if importlib.util.find_spec("selenium") is None:
        raise RuntimeError('PNG/SVG export needs selenium, which is not installed: pip install "leafx-widgets[export]" '
                           "(HTML export needs nothing more)")
    from selenium.webdriver import Chrome, ChromeOptions
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        raise RuntimeError("PNG/SVG export needs chromium and chromedriver on PATH "
                           "(Debian: apt-get install chromium chromium-driver)")
    options = ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--force-color-profile=srgb", f"--force-device-scale-factor={scale_factor}"):
        options.add_argument(arg)
    return Chrome(service=Service(driver), options=options)


def _plots(obj):
    from bokeh.models import Plot

    return list(obj.select({"type": Plot}))


def export(fig, path_stem, *, formats: Sequence[str] = ("png", "svg", "html"), scale_factor: float = 2.0,
           title: str = "LEAF-X figure", driver=None) -> dict[str, Path]:
    """Write ``fig`` to ``<path_stem>.png`` / ``.svg`` / ``.html``; returns {format: path}.

    PNG and SVG are rendered by a headless chromium through selenium (one browser for
    both; pass ``driver`` to reuse one across many figures). The HTML is standalone:
    bokeh's JavaScript is inlined, nothing is fetched from a CDN.
    """
    from bokeh.embed import file_html
    from bokeh.io import export_png, export_svg
    from bokeh.resources import INLINE

    unknown = set(formats) - {"png", "svg", "html"}
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; choose from png, svg, html")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if "html" in formats:
        out["html"] = stem.with_suffix(".html")
        out["html"].write_text(file_html(fig, INLINE, title), encoding="utf-8")
    if {"png", "svg"} & set(formats):
        own = driver is None
        driver = driver or webdriver(scale_factor=scale_factor)
        try:
            if "png" in formats:
                out["png"] = stem.with_suffix(".png")
                export_png(fig, filename=out["png"], webdriver=driver, scale_factor=scale_factor, timeout=30)
            if "svg" in formats:
                plots = _plots(fig)
                backends = [p.output_backend for p in plots]
                for p in plots:
                    p.output_backend = "svg"
                try:
                    out["svg"] = stem.with_suffix(".svg")
                    # a layout of several plots is drawn into one SVG document
                    export_svg(fig, filename=out["svg"], webdriver=driver, timeout=30)
                finally:
                    for p, b in zip(plots, backends):
                        p.output_backend = b
        finally:
            if own:
                driver.quit()
    return out
