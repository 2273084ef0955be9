"""leafx_widgets: LEAF-X token-to-time explanations for Whisper, in a Jupyter widget.

The public names are imported on first use (PEP 562), so that ``import leafx_widgets``
and the command line's ``--help`` do not pay for torch and transformers.
"""
from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"

_DATA = Path(__file__).parent / "data"

# public name -> the submodule that defines it
_EXPORTS = {
    "Audio": "audio", "AudioError": "audio", "load_audio": "audio",
    "Explanation": "explanation", "Token": "explanation", "Word": "explanation", "explain": "explanation",
    "explain_many": "batch",
    "METHODS": "methods", "VARIANTS": "methods", "DEFAULT_METHOD": "methods", "Method": "methods",
    "get_method": "methods", "register": "methods", "available_methods": "methods",
    "DEFAULT_MODEL": "models", "load_model": "models",
    "LeafXWidget": "widget", "show": "widget", "record": "widget", "show_audit": "widget",
    "probe": "probes",
}


def sample_path(name: str = "librivox_dashwood.wav") -> Path:
    """A bundled public-domain speech clip (LibriVox, read by a volunteer)."""
    path = _DATA / name
    if not path.exists():
        raise FileNotFoundError(f"no bundled sample {name!r}; available: {sorted(p.name for p in _DATA.glob('*.wav'))}")
    return path


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'leafx_widgets' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = ["sample_path", "__version__", *_EXPORTS]
