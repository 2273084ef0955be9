"""The one registry of attribution methods: the widget, the CLI and the benchmark all read ``METHODS``.

A method maps (window, token positions) -> one distribution over the window's
real frames per token. LEAF-X variants and ablations are registered here;
baselines register themselves from ``leafx_widgets.baselines``.
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
                f"method {self.name!r} needs {', '.join(self.missing)}, which is not installed: "
                f'pip install "leafx-widgets[{self.extra}]"')

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
    _load_baselines()
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    method = METHODS[name]
    if check_available:
        method.check_available()
    return method


def available_methods() -> list[str]:
    """Names of the registered methods whose dependencies are installed."""
    _load_baselines()
    return [name for name, m in METHODS.items() if m.available]


def _load_baselines():
    """Baselines register on import; kept out of this module's import so it stays cheap."""
    import leafx_widgets.baselines  # noqa: F401


LEAFX_PARAMS = {"tau": 1.0, "depth": "full", "frames": "valid", "eps": 1e-8}


def _leafx(**switches) -> Compute:
    def compute(window, positions, **params) -> np.ndarray:
        from .attribution import LeafxConfig, leafx_window  # torch: imported when work starts

        cfg = LeafxConfig(**switches, **params)
        maps = leafx_window(window.adapter, window.encoded, window.prompt, window.ids, window.n_valid, cfg,
                            cache=getattr(window, "cache", None)).maps
        return maps[positions].cpu().numpy().astype(np.float32)

    return compute


for _name, _label, _switches, _desc in [
    ("base", "LEAF-X base", {}, "entropy-weighted heads + multi-layer rollout (Eqs. 2-6)"),
    ("grad", "LEAF-X +grad", {"grad": True}, "base on gradient-modulated attention (adds Eq. 7)"),
    ("causal", "LEAF-X +causal", {"grad": True, "causal": True},
     "+grad with causal layer reweighting (Eqs. 8-10), the paper's Full"),
    ("leafx_no_entropy", "LEAF-X w/o entropy", {"grad": True, "causal": True, "entropy": False},
     "Table 3 ablation: plain head mean instead of entropy weights"),
    ("leafx_no_rollout", "LEAF-X w/o rollout", {"grad": True, "causal": True, "rollout": False},
     "Table 3 ablation: per-layer maps without rollout"),
    ("leafx_no_grad", "LEAF-X w/o grad", {"causal": True},
     "Table 3 ablation: causal reweighting on plain attention"),
    ("leafx_no_causal", "LEAF-X w/o causal", {"grad": True}, "Table 3 ablation: same as +grad"),
    # the fix for Whisper (README "Why the paper's recipe points at the wrong place"): value-norm
    # weighted attention + each query's own layers instead of the self-attention rollout
    ("base-vn", "LEAF-X-VN base", {"value_norm": True, "mixing": "direct"},
     "base with value-norm weighted attention and direct-path layer aggregation"),
    ("grad-vn", "LEAF-X-VN +grad", {"value_norm": True, "mixing": "direct", "grad": True},
     "+grad with value-norm weighting and direct-path aggregation"),
    ("causal-vn", "LEAF-X-VN +causal", {"value_norm": True, "mixing": "direct", "grad": True, "causal": True},
     "+causal with value-norm weighting and direct-path aggregation"),
]:
    register(Method(_name, _label, _leafx(**_switches), family="leafx",
                    cost="slow" if {"grad", "causal"} & set(_switches) else "fast",
                    params=dict(LEAFX_PARAMS), description=_desc))

VARIANTS = ("base", "grad", "causal")  # the paper's three, as written
# what word peaks, the CLI and the widget use unless told otherwise: chosen on the development
# sets (README, "Benchmark"), because the paper's recipe points at an attention sink on Whisper
DEFAULT_METHOD = "leafx_sf"  # LEAF-X-SF, leafx_widgets/baselines/leafx_sf.py
