"""Progress bars: tqdm on stderr in a terminal, tqdm's widget in a notebook, nothing otherwise."""
from __future__ import annotations

import sys
from collections.abc import Iterable


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enabled: bool | None = None,
             unit: str = "it"):
    """``iterable`` wrapped in a progress bar. ``enabled=None``: on in a terminal or a notebook, off when
    stderr is a file or a pipe (logs, CI); ``False`` (``--quiet``) always off."""
    if enabled is None:
        enabled = _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    if not enabled:
        return iterable
    if _in_notebook():
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True)
