"""The one registry of attribution methods: the widget, the CLI and the benchmark all read ``METHODS``.

A method maps (window, token positions) -> one distribution over the window's
real frames per token. This module imports no method: each family module of the
package (``leafx``, ``leafx_sf``, ``attention``, ``timing``, ``gradient``,
``perturbation``) registers its own, and ``leafx_widgets.methods`` imports them all.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Compute = Callable[..., np.ndarray]  # (window, positions: list[int], **params) -> (len(positions), n_valid)


@dataclass(frozen=True)
class Method:
    name: str  # registry key, used in the CLI, JSON and widget
    label: str  # for legends and buttons
    compute: Compute
    family: str = "leafx"  # leafx | attention | gradient | perturbation | reference
    cost: str = "fast"  # fast: interactive; slow: seconds per token or more
    batched: bool = True  # True: one call computes every token of a window as cheaply as one
    params: dict = field(default_factory=dict)  # tunable parameters and their defaults
    description: str = ""
    requires: tuple[str, ...] = ()  # modules from an optional extra, e.g. ("captum",)
    extra: str = "bench"  # the extra that brings them: pip install "leafx-widgets[bench]"
    # capabilities the loaded model must offer (names in leafx_widgets.models.base.CAPABILITIES),
    # e.g. ("token_gradients",) for methods that take dlog p / dA
    needs: tuple[str, ...] = ()

    @property
    def missing(self) -> list[str]:
        """The required modules that are not installed (empty when the method can run)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    @property
    def available(self) -> bool:
        return not self.missing

    def check_available(self) -> None:
        if self.missing:
            raise MethodUnavailable(
                f"method {self.name!r} needs {', '.join(self.missing)}, "
                f"which {'is' if len(self.missing) == 1 else 'are'} not installed: "
                f'pip install "leafx-widgets[{self.extra}]"')

    def supports(self, adapter) -> bool:
        """Whether ``adapter`` offers every capability this method needs (``adapter.supports``)."""
        return set(self.needs) <= set(adapter.supports)

    def resolve(self, params: dict) -> dict:
        """Defaults overlaid with ``params``; unknown names are an error."""
        unknown = set(params) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params)) or "none"
            raise ValueError(f"method {self.name!r} has no parameter(s) {sorted(unknown)}; it takes: {known}")
        return {**self.params, **params}


class MethodUnavailable(ValueError):
    """The method is registered but a package it needs (from an extra) is not installed."""


METHODS: dict[str, Method] = {}


def register(method: Method, *, replace: bool = False) -> Method:
    if method.name in METHODS and not replace:
        raise ValueError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str, *, check_available: bool = True) -> Method:
    """The registered method ``name``; a method whose extra is missing raises ``MethodUnavailable``."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    method = METHODS[name]
    if check_available:
        method.check_available()
    return method


def available_methods(adapter=None) -> list[str]:
    """Names of the registered methods whose dependencies are installed and, given an
    ``adapter``, that the model can run (``Method.supports``)."""
    return [name for name, m in METHODS.items() if m.available and (adapter is None or m.supports(adapter))]


VARIANTS = ("base", "grad", "causal")  # the paper's three, as written
# the widget's base / +grad / +causal toggle: the first ladder a model can run. LEAF-X-SF's comes first:
# the paper's points at an attention sink on Whisper tiny.en and base (README, "Benchmark", "Models")
LADDERS = {"LEAF-X-SF": ("leafx_sf", "leafx_sf_grad", "leafx_sf_causal"), "LEAF-X": VARIANTS}


def ladder(adapter=None, offered=None) -> tuple[str, str, str] | None:
    """The (base, +grad, +causal) methods the widget's toggle shows for ``adapter``: the first of
    ``LADDERS`` whose three methods it can run (and, given ``offered``, that are offered); None if none."""
    for rungs in LADDERS.values():
        if all(name in METHODS and METHODS[name].available and (adapter is None or METHODS[name].supports(adapter))
               and (offered is None or name in offered) for name in rungs):
            return rungs
    return None
# what word peaks, the CLI and the widget use unless told otherwise: chosen on the development
# sets (README, "Benchmark"), because the paper's recipe points at an attention sink on Whisper
DEFAULT_METHOD = "leafx_sf"  # LEAF-X-SF, methods/leafx_sf.py
