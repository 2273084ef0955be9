"""Write a file so that a reader sees the old content or the new one, never half of it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, data) -> Path:
    """Write ``data`` (str, bytes, or a callable that writes into a binary file handle) to a temporary
    file beside ``path``, then rename it over ``path``.

    The rename is atomic on one file system, so Ctrl-C, a crash or a full disk leaves the
    previous file intact; the temporary file is removed when writing fails.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
