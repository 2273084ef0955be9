"""Deprecated: LEAF-X's window computation moved to ``leafx_widgets.methods.leafx``.

Kept so that ``from leafx_widgets.attribution import LeafxConfig, leafx_window`` in existing
notebooks and scripts still works.
"""
from __future__ import annotations

import warnings

warnings.warn("leafx_widgets.attribution is deprecated: import from leafx_widgets.methods.leafx", DeprecationWarning, stacklevel=2)

from .methods.leafx import (CACHE_ENTRIES, FRAMES, MIXING, LeafxConfig, WindowMaps, causal_deltas,  # noqa: F401
                            leafx_window)
