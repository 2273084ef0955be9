"""Progress bars and one-line messages: tqdm on stderr in a terminal, tqdm's widget in a notebook,
nothing in pipes, logs or with --quiet. Shared by explain, the CLI and the bench."""
from __future__ import annotations

import sys


def in_notebook() -> bool:
    return "ipykernel.zmqshell" in sys.modules  # the test tqdm.auto itself uses


def bars_enabled(quiet: bool = False, stream=None) -> bool:
    """Progress bars in a notebook or on a terminal's stderr, never with ``quiet`` or into a file or pipe."""
    if quiet:
        return False
    if in_notebook():
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or file-less streams
        return False


def bar(iterable=None, desc: str = "", *, enabled: bool, total=None, leave: bool = False, unit: str = "it"):
    """A tqdm bar on stderr (``tqdm.auto``: a widget in a notebook); a plain pass-through when disabled."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, unit=unit, disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)


def progress(iterable, *, total: int | None = None, desc: str = "", enabled: bool | None = None, unit: str = "it"):
    """``iterable`` in a bar; ``enabled=None`` decides by ``bars_enabled()``."""
    return bar(iterable, desc, enabled=bars_enabled() if enabled is None else enabled, total=total, unit=unit)


def say(message: str) -> None:
    """One line on stderr that does not tear an active progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
    sys.stderr.flush()
