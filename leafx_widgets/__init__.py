"""leafx_widgets: LEAF-X token-to-time explanations for Whisper, in a Jupyter widget."""
from pathlib import Path

from .audio import Audio, AudioError, load_audio
from .explanation import Explanation, Token, Word, explain
from .methods import METHODS, VARIANTS, Method, get_method, register
from .models import DEFAULT_MODEL, load_model

__version__ = "0.1.0"

_DATA = Path(__file__).parent / "data"


def sample_path(name: str = "librivox_dashwood.wav") -> Path:
    """A bundled public-domain speech clip (LibriVox, read by a volunteer)."""
    path = _DATA / name
    if not path.exists():
        raise FileNotFoundError(f"no bundled sample {name!r}; available: {sorted(p.name for p in _DATA.glob('*.wav'))}")
    return path


def __getattr__(name):
    # the widget pulls in anywidget/ipywidgets: import it only when asked for
    if name in ("LeafXWidget", "show"):
        from . import widget

        return getattr(widget, name)
    raise AttributeError(f"module 'leafx_widgets' has no attribute {name!r}")


__all__ = ["LeafXWidget", "show", "explain", "Explanation", "Token", "Word", "load_model", "load_audio", "Audio", "AudioError",
           "METHODS", "VARIANTS", "Method", "register", "get_method", "sample_path", "DEFAULT_MODEL"]
