"""One row of a corpus audit (``leafx-widgets audit --out OUT``) opened in the widget: ``show_audit``.

The audit's folder holds every token's row (``tokens.parquet`` / ``tokens.csv``: ``dataset``, ``clip``, then
the columns of ``ex.audit()``), each clip's audio file (``clips.csv``) and the model it ran (``audit.json``).
The row's clip is explained again with that model (decoding is deterministic, and the tokens are checked
against the audit's), and the widget shows the clip's rows as its audit, with the row's token selected.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path

TEXT_COLUMNS = ("dataset", "clip", "text", "word", "error", "ref_word", "contrast_foil")


def _read(out: Path, stem: str):
    """OUT/{stem}.parquet when pyarrow can read it (exact types), else OUT/{stem}.csv (same rows, same order)."""
    import pandas as pd

    parquet, csv = out / f"{stem}.parquet", out / f"{stem}.csv"
    if parquet.is_file():
        try:
            return pd.read_parquet(parquet)
        except ImportError:  # no parquet engine: the CSV holds the same table
            pass
    if not csv.is_file():
        raise ValueError(f"{out} holds no corpus audit ({stem}.csv is missing): run "
                         f"`leafx-widgets audit --manifest M.json --out {out}` first")
    # ids and token texts stay strings ("001", " 7", "nan"); only an empty cell is missing there
    columns = pd.read_csv(csv, nrows=0).columns
    missing = {c: [""] if c in TEXT_COLUMNS else ["", "NaN", "nan"] for c in columns}
    return pd.read_csv(csv, dtype={c: str for c in TEXT_COLUMNS if c in columns}, keep_default_na=False,
                       na_values=missing)


def locate(tokens, row) -> tuple[str, str, int]:
    """(dataset, clip, token) of ``row``: an index into tokens.csv, (clip, token) or (dataset, clip, token)."""
    if isinstance(row, numbers.Integral) and not isinstance(row, bool):
        if not 0 <= row < len(tokens):
            raise ValueError(f"row {row} is out of range: the audit has {len(tokens)} token rows (0..{len(tokens) - 1})")
        r = tokens.iloc[int(row)]
        return str(r["dataset"]), str(r["clip"]), int(r["token"])
    if isinstance(row, tuple) and len(row) in (2, 3):
        *where, token = row
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise ValueError(f"the token of row {row!r} must be a token index (an integer), got {token!r}")
        clip = str(where[-1])
        found = tokens[(tokens["clip"] == clip) & (tokens["token"] == int(token))]
        if len(where) == 2:
            found = found[found["dataset"] == str(where[0])]
        if found.empty:
            known = tokens["clip"] == clip
            raise ValueError(f"the audit has no row for clip {clip!r}, token {token}" +
                             (f" (that clip has tokens 0..{int(tokens.loc[known, 'token'].max())})"
                              if known.any() else " (no such clip)"))
        datasets = sorted(set(found["dataset"]))
        if len(datasets) > 1:
            raise ValueError(f"clip {clip!r} is in several datasets ({', '.join(datasets)}): give "
                             f"(dataset, clip, token)")
        return datasets[0], clip, int(token)
    raise ValueError(f"row must be an index into tokens.csv, (clip, token) or (dataset, clip, token), got {row!r}")


def clip_audit(out_dir, row):
    """``(clip's audit rows as a DataFrame, its clips.csv entry as a dict, token)`` of one corpus-audit row."""
    out = Path(out_dir).expanduser()
    tokens = _read(out, "tokens")
    dataset, clip, token = locate(tokens, row)
    rows = tokens[(tokens["dataset"] == dataset) & (tokens["clip"] == clip)]
    rows = rows.drop(columns=["dataset", "clip"]).sort_values("token").reset_index(drop=True)
    clips = _read(out, "clips")
    entry = clips[(clips["dataset"] == dataset) & (clips["clip"] == clip)]
    if entry.empty:
        raise ValueError(f"clips.csv in {out} has no entry for clip {clip!r} of {dataset!r}")
    return rows, entry.iloc[0].to_dict(), token


def show_audit(out_dir, row, *, model=None, **kwargs):
    """The widget for one row of a corpus audit: the row's clip, its token selected, the clip's rows as
    the widget's audit (flags and table).

    ``out_dir``: the folder of ``leafx-widgets audit --out``. ``row``: an index into its tokens.csv,
    ``(clip, token)``, or ``(dataset, clip, token)`` when clip ids repeat across datasets. ``model``: a
    loaded adapter or a name (default: the model the audit ran, from audit.json). Other keywords go
    to :class:`LeafXWidget`.
    """
    import pandas as pd

    from .. import explain, load_model
    from . import LeafXWidget

    out = Path(out_dir).expanduser()
    rows, entry, token = clip_audit(out, row)
    audio = Path(str(entry["file"]))
    if not audio.is_file():
        raise ValueError(f"the audio of clip {entry['clip']!r} ({audio}) is gone: the audit in {out} cannot be shown")
    if model is None:
        info = out / "audit.json"
        model = json.loads(info.read_text()).get("model", "tiny.en") if info.is_file() else "tiny.en"
    if isinstance(model, (str, Path)):
        model = load_model(str(model))
    ref = entry.get("ref")
    ex = explain(model, audio, reference=None if ref is None or pd.isna(ref) or not str(ref).strip() else str(ref))
    decoded, audited = [t.text for t in ex.tokens], [str(t) for t in rows["text"]]
    if decoded != audited:
        k = next((i for i, (a, b) in enumerate(zip(decoded, audited)) if a != b), min(len(decoded), len(audited)))
        raise ValueError(f"clip {entry['clip']!r} decodes to other tokens than the audit recorded (token {k}: "
                         f"{decoded[k] if k < len(decoded) else None!r} here, "
                         f"{audited[k] if k < len(audited) else None!r} in the audit): pass the model the audit "
                         f"ran as model=")
    kwargs.setdefault("selected_token", token)
    return LeafXWidget(ex, audit=rows, **kwargs)
