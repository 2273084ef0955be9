"""Reference word spans from Praat TextGrids (praatio)."""
from __future__ import annotations

from pathlib import Path

SILENCE_LABELS = {"", "sil", "sp", "spn", "<sil>", "<s>", "</s>", "<unk>"}


def read_textgrid_words(path: str | Path, *, tier: str | None = None) -> list[dict]:
    """Words of a TextGrid interval tier as ``[{"word", "start", "end"}]``.

    ``tier`` defaults to a tier named "words" (any case) or else the first interval tier.
    Silence and empty labels are dropped.
    """
    from praatio import textgrid

    tg = textgrid.openTextgrid(str(path), includeEmptyIntervals=False)
    names = list(tg.tierNames)
    if tier is None:
        lowered = {n.lower(): n for n in names}
        tier = lowered.get("words") or lowered.get("word")
        if tier is None:
            interval_tiers = [n for n in names if tg.getTier(n).entryType.__name__ == "Interval"]
            if not interval_tiers:
                raise ValueError(f"{path}: no interval tier among {names}")
            tier = interval_tiers[0]
    if tier not in names:
        raise ValueError(f"{path}: no tier {tier!r} (has {names})")
    words = []
    for start, end, label in tg.getTier(tier).entries:
        if label.strip().lower() in SILENCE_LABELS:
            continue
        words.append({"word": label.strip(), "start": float(start), "end": float(end)})
    return words


def write_textgrid_words(path: str | Path, words: list[dict], duration: float, *, tier: str = "words") -> None:
    """Write ``[{"word", "start", "end"}]`` as a one-tier TextGrid (for tests and exports)."""
    from praatio import textgrid

    entries = [(w["start"], w["end"], w["word"]) for w in words]
    tg = textgrid.Textgrid()
    tg.addTier(textgrid.IntervalTier(tier, entries, 0.0, duration))
    tg.save(str(path), format="short_textgrid", includeBlankSpaces=True)
