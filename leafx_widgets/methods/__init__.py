"""Attribution methods: the registry and one module per family, each registering its methods.

Every ``compute(window, positions, **params)`` returns (len(positions), window.n_valid) maps
over the window's real frames, non-negative, rows summing to 1.

``registry`` imports no method; importing this package imports every family, in the order
the registry lists them (CLI, widget, benchmark).
"""
from __future__ import annotations

from .registry import (DEFAULT_METHOD, LADDERS, METHODS, VARIANTS, ladder, Method, MethodUnavailable, available_methods,  # noqa: F401
                       get_method, register)
from . import leafx, leafx_sf, attention, timing, gradient, perturbation  # noqa: E402,F401  (they register)
from .leafx import LEAFX_PARAMS  # noqa: F401

__all__ = ["DEFAULT_METHOD", "LEAFX_PARAMS", "METHODS", "VARIANTS", "Method", "MethodUnavailable",
           "available_methods", "get_method", "register"]
