"""The built JavaScript bundle, and the self-contained HTML page that needs no kernel.

The page embeds the bundle's ``standalone.js`` (the same View code, answering its requests from
the data in the page), the audio, the spectrogram, the maps under their ``map_key``, and the layers
pane's lens and patching lanes under their ``layers_key``, the contrast lanes under their ``contrast_key``.
"""

from __future__ import annotations

import html
import json
import pathlib
from collections.abc import Iterable
from typing import Any

from .. import _codecs
from . import protocol
from .contrast import reply_fields
from .layers import DEFAULT_CORRUPT, LENS, PATCHING

STATIC = pathlib.Path(__file__).parent.parent / "static"
BUNDLE = ("widget.js", "widget.css", "standalone.js")  # built by js/build.mjs into STATIC


class MissingBundleError(RuntimeError):
    """The built JavaScript bundle (``leafx_widgets/static``) is missing, e.g. in a fresh source checkout."""


def check_bundle(*names: str) -> None:
    missing = [n for n in names if not (STATIC / n).is_file()]
    if missing:
        raise MissingBundleError(
            f"The widget's JavaScript bundle is missing ({', '.join(missing)} in {STATIC}): build it with "
            f"`pip install -e .` (its build hook runs npm) or `cd js && npm ci && npm run build` "
            f"in the source checkout.")


def bundle_file(name: str):
    """anywidget reads ``_esm``/``_css`` when the class is defined: a missing bundle must not break the
    import (the constructor says how to build it instead)."""
    path = STATIC / name
    return path if path.is_file() else ""


def read_bundle_file(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def save_html(widget, path, methods: Iterable[str] | None = None, *, title: str | None = None,
              audit: bool | None = None) -> pathlib.Path:
    """``LeafXWidget.save_html``: the maps of ``methods`` for every token at the widget's tau and depth,
    and the audit's rows (``audit``: None when the widget has them, True computed first, False never)."""
    check_bundle("standalone.js", "widget.css")  # before minutes of maps, not after
    names = list(methods) if methods is not None else [widget.method, widget.compare_method]
    names = list(dict.fromkeys(n for n in names if n))
    for n in names:
        widget._check_method(n)
    widget.wait_decoded()  # a recording still being decoded: all of it first, with a progress bar
    ex = widget.explanation
    maps = {}
    for n in names:
        params = widget.method_params(n)
        for k in range(len(ex.tokens)):
            arr = widget.get_map(k, n, **params)
            maps[protocol.map_key(k, n, params)] = {"b64": _codecs.b64(arr),
                                                     "start_frame": int(ex.tokens[k].start_frame)}
    layers = export_layers(widget)
    contrasts = export_contrasts(widget)
    if audit:
        widget.audit()
    rows = widget._audit.rows if audit is not False else None
    p, _notes = widget._audio_and_mel()
    overview = widget.overview(widget.default_method) if len(ex.tokens) else None
    data = {
        # meta.audit false: the page hides its flag controls (an export cannot compute an audit)
        "meta": {**(widget._meta if widget._meta["complete"] else widget._build_meta()), "audit": rows is not None},
        "state": {"selected_token": widget.selected_token, "current_time": 0.0,
                  "method": names[0] if names else widget.method,
                  "compare_method": widget.compare_method if widget.compare_method in names else None,
                  "compare_mode": widget.compare_mode, "tau": widget.tau, "depth": widget.depth,
                  "show_layers": widget.show_layers, "contrast_foils": dict(widget.contrast_foils)},
        "methods": names,
        "audio": {"b64": _codecs.b64(p["pcm"]), "total": int(p["pcm"].size)},
        "peaks": {"b64": _codecs.b64(p["peaks"]), "block": protocol.PEAK_BLOCK,
                  "n_blocks": int(p["peaks"].shape[0]), "total_samples": int(p["pcm"].size)},
        "mel": {"b64": _codecs.b64(p["codes"]), "n_cols": p["n_cols"], "total_cols": p["n_cols"],
                "n_mels": p["n_mels"], "col_s": p["col_s"], "lo": p["lo"], "hi": p["hi"]},
        "maps": maps,
        "layers": layers,
        "contrasts": contrasts,
        "overview": None if overview is None else {
            "b64": _codecs.b64(overview), "key": "base|embedded", "n_rows": int(overview.shape[0]),
            "n_tokens": int(overview.shape[0]), "n_bins": int(overview.shape[1])},
        "audit": rows,  # the page's audit rows ({type: "audit", state: "ready", rows}), sorted by score
    }
    path = pathlib.Path(path)
    path.write_text(render_html(data, title=title or f"LEAF-X · {ex.model_name}"), encoding="utf-8")
    return path


def export_layers(widget) -> dict:
    """The layers pane's results for the page: every lens and patching lane computed so far, and the
    selected token's lens (computed now where the model supports it; milliseconds). Its patching lane
    (~30 decoder passes) is computed now only while the pane is shown (``show_layers``)."""
    token, supports = widget.selected_token, widget._layers.supports
    if token < len(widget.explanation.tokens):
        if supports[LENS]:
            widget._layers.run_now(LENS, token)
        if supports[PATCHING] and widget.show_layers:
            widget._layers.run_now(PATCHING, token, DEFAULT_CORRUPT)
    return widget._layers.computed()


def export_contrasts(widget) -> dict:
    """Every contrast computed so far, and those ``contrast_foils`` asks for (computed now where they are
    not: ~32 decoder passes each; a foil the kernel refuses, such as the word itself, is left out)."""
    for token, foil in widget.contrast_foils.items():
        try:
            widget._contrasts.run_now(int(token), foil)
        except ValueError:  # the page shows the same refusal as an error; nothing to export
            pass
    return {key: {**reply_fields(c), "b64": _codecs.b64(c.map.astype("float32"))}
            for key, c in widget._contrasts.computed().items()}


def _script_safe_json(data: Any) -> str:
    """JSON that cannot end its <script> element: <, >, & become \\u escapes."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(data: dict, *, title: str) -> str:
    check_bundle("standalone.js", "widget.css")
    bundle = read_bundle_file("standalone.js").replace("</script", "<\\/script")
    css = read_bundle_file("widget.css")
    text = html.escape(data["meta"]["text"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="leafx_widgets">
<title>{html.escape(title)}</title>
<style>
:root {{ color-scheme: light dark; }}
body {{ margin: 16px; font-family: system-ui, sans-serif; background: Canvas; color: CanvasText; }}
{css}
</style>
</head>
<body>
<noscript><p class="leafx-transcript-static">{text}</p></noscript>
<div id="leafx"></div>
<script id="leafx-data" type="application/json">{_script_safe_json(data)}</script>
<script>{bundle}</script>
<script>
window.leafxView = LeafX.mount(document.getElementById("leafx"),
  JSON.parse(document.getElementById("leafx-data").textContent));
</script>
</body>
</html>
"""
