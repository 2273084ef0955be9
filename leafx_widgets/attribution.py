"""Deprecated: LEAF-X's window computation moved to ``leafx_widgets.methods.leafx``.

Kept so that ``from leafx_widgets.attribution import LeafxConfig, leafx_window`` in existing
notebooks and scripts still works.
"""
from __future__ import annotations

from .methods.leafx import (CACHE_ENTRIES, FRAMES, MIXING, LeafxConfig, WindowMaps, causal_deltas,  # noqa: F401
                            leafx_window)
