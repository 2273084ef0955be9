"""Manifest checks: every problem of every entry, found before any work starts.

A manifest that passes names only regular, readable audio files inside its own folder
(unless the caller allows others), unique non-empty ids, string transcripts and word
spans that are finite, ordered (start <= end) and inside their clip. Anything else is
one :class:`ManifestError` that lists each problem with its entry and reason.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

SPAN_TOLERANCE_S = 1e-3  # spans are rounded to the millisecond or finer by the builders
MAX_WORD_PROBLEMS = 5  # per entry; a hostile list of 10^5 bad words stays readable
MAX_SHOWN = 200  # problems in the message (all of them stay in ``.problems``)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ManifestError(ValueError):
    """A manifest cannot be used; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        shown = self.problems[:MAX_SHOWN]
        more = [f"... and {n - MAX_SHOWN} more"] if n > MAX_SHOWN else []
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the manifest input, nothing was run:\n"
                         + "\n".join(f"  - {p}" for p in shown + more))


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def read_entries(path: Path):
    """The manifest's JSON list, or a ManifestError saying why it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([f"{path}: manifest not found"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError([f"{path}: cannot read the manifest: {err}"]) from None
    try:
        entries = json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, over-long integers, absurd nesting
        raise ManifestError([f"{path}: not valid JSON: {str(err)[:200]}"]) from None
    if not isinstance(entries, list):
        raise ManifestError([f"{path}: a manifest is a JSON list of clips, got {_kind(entries)}"])
    if not entries:
        raise ManifestError([f"{path}: the manifest lists no clips"])
    return entries


def _number(value) -> float | str:
    """``value`` as a finite float, or the reason it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"is {_kind(value)} {_short(value)}, not a number"
    try:
        x = float(value)
    except OverflowError:
        return "is too large a number"
    return x if math.isfinite(x) else f"is {value}, not a finite number"


def check_words(words, duration: float | None, where: str = "") -> list[str]:
    """Problems of a words list ``[{"word", "start", "end"}]`` for a clip lasting ``duration`` s."""
    if not isinstance(words, list):
        return [f"'words' must be a list of {{word, start, end}} objects or null, got {_kind(words)}"]
    problems = []
    for j, w in enumerate(words):
        found = []
        if not isinstance(w, dict):
            found.append(f"is {_kind(w)}, not an object with word, start and end")
        else:
            if not isinstance(w.get("word"), str):
                found.append("has no 'word' string" if "word" not in w else
                             f"'word' must be a string, got {_kind(w['word'])}")
            times = {}
            for key in ("start", "end"):
                if key not in w:
                    found.append(f"has no '{key}'")
                    continue
                x = _number(w[key])
                if isinstance(x, str):
                    found.append(f"'{key}' {x}")
                else:
                    times[key] = x
            start, end = times.get("start"), times.get("end")
            if start is not None and start < 0:
                found.append(f"starts before the clip (start {start:g} s)")
            if start is not None and end is not None and end < start:
                found.append(f"ends before it starts (start {start:g} s, end {end:g} s)")
            if duration is not None and end is not None and end > duration + SPAN_TOLERANCE_S:
                found.append(f"ends at {end:g} s, after the clip's end ({duration:g} s)")
            elif duration is not None and start is not None and start > duration + SPAN_TOLERANCE_S:
                found.append(f"starts at {start:g} s, after the clip's end ({duration:g} s)")
        problems += [f"{where}word {j} {reason}" for reason in found]
    if len(problems) > MAX_WORD_PROBLEMS:
        problems = problems[:MAX_WORD_PROBLEMS] + [f"... and {len(problems) - MAX_WORD_PROBLEMS} more word problems"]
    return problems


def resolve_inside(folder: Path, name, key: str, allow_outside: bool) -> tuple[Path | None, str | None]:
    """``folder / name`` resolved, or the reason it cannot be used (outside ``folder``, bad name)."""
    if not isinstance(name, str) or not name.strip():
        return None, f"'{key}' must be a non-empty path string, got {_kind(name)} {_short(name)}"
    if "\x00" in name:
        return None, f"'{key}' contains a NUL character"
    try:
        target = (folder / name).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # symlink loops, over-long names
        return None, f"'{key}' {_short(name)} cannot be resolved: {err}"
    root = folder.resolve()
    if not allow_outside and not target.is_relative_to(root):
        return None, (f"'{key}' {_short(name)} resolves to {target}, outside the manifest's folder {root} "
                      "(allow it with --allow-outside-paths)")
    return target, None


def audio_duration(path: Path) -> tuple[float | None, str | None]:
    """The clip's duration from its header, or the reason the file is not usable audio."""
    import soundfile

    try:
        if not path.exists():
            return None, f"audio file {path} not found"
        if not path.is_file():
            return None, f"audio file {path} is not a regular file"
        if path.stat().st_size == 0:
            return None, f"audio file {path} is empty (0 bytes)"
        info = soundfile.info(str(path))
    except Exception as err:  # soundfile raises its own error types, OSError for permissions
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        return None, f"audio file {path} cannot be read as audio: {reason[:200]}"
    if info.samplerate <= 0 or info.frames <= 0:
        return None, f"audio file {path} holds no samples"
    return info.frames / info.samplerate, None


def _string_problem(entry: dict, key: str) -> str | None:
    """What is wrong with ``entry[key]`` as a non-empty string, or None."""
    if key not in entry:
        return f"has no {key!r}"
    value = entry[key]
    if not isinstance(value, str):
        return f"{key!r} must be a string, got {_kind(value)} {_short(value)}"
    if not value.strip():
        return f"{key!r} is empty"
    return None


def check_entry(entry, folder: Path, allow_outside: bool) -> tuple[list[str], tuple | None]:
    """(problems, (id, path, text, words)) for one manifest entry; the tuple only when it has no problem."""
    if not isinstance(entry, dict):
        return [f"is {_kind(entry)}, not an object with id, file and text"], None
    clip_id, text = entry.get("id"), entry.get("text")
    id_problem = _string_problem(entry, "id")
    if id_problem is None and _CONTROL.search(clip_id):
        id_problem = "'id' contains control characters (a newline or tab would break the reports)"
    problems = [p for p in (id_problem, _string_problem(entry, "text")) if p]
    duration = path = None
    if "file" not in entry:
        problems.append("has no 'file'")
    else:
        path, reason = resolve_inside(folder, entry["file"], "file", allow_outside)
        if reason is None:
            duration, reason = audio_duration(path)
        if reason:
            problems.append(reason)
    words, textgrid = entry.get("words"), entry.get("textgrid")
    if words is not None and textgrid is not None:
        problems.append("give 'words' or 'textgrid', not both")
    elif words is not None:
        problems += check_words(words, duration)
    elif textgrid is not None:
        tg_path, reason = resolve_inside(folder, textgrid, "textgrid", allow_outside)
        if reason is None:
            try:
                from .textgrid import read_textgrid_words

                words = read_textgrid_words(tg_path)
            except Exception as err:  # praatio's parse errors, a missing file
                reason = f"'textgrid' {tg_path} cannot be read: {str(err)[:200] or type(err).__name__}"
        if reason:
            problems.append(reason)
        else:
            problems += check_words(words, duration, "textgrid ")
    if problems:
        return problems, None
    return [], (clip_id, path, text, words)


def check_manifest(path: Path, entries: list, *, allow_outside: bool = False) -> tuple[list[tuple], list[str]]:
    """(clips as (id, path, text, words), problems) for every entry of one manifest."""
    folder = path.parent
    clips, problems, first_seen = [], [], {}
    for i, entry in enumerate(entries):
        clip_id = entry.get("id") if isinstance(entry, dict) else None
        label = f"{path}: entry {i}" + (f" (id {_short(clip_id)})" if isinstance(clip_id, str) else "")
        found, clip = check_entry(entry, folder, allow_outside)
        if isinstance(clip_id, str):
            if clip_id in first_seen:
                found.append(f"duplicate id: entry {first_seen[clip_id]} has the same id")
            first_seen.setdefault(clip_id, i)
        problems += [f"{label}: {reason}" for reason in found]
        if clip is not None and not found:
            clips.append(clip)
    return clips, problems
