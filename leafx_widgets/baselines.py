"""Deprecated: the baselines moved into ``leafx_widgets.methods`` (one module per family).

Kept so that ``from leafx_widgets.baselines import ...`` in existing notebooks and scripts
still works; new code imports from ``leafx_widgets.methods.<family>``.
"""
from __future__ import annotations

import warnings

warnings.warn("leafx_widgets.baselines is deprecated: import from leafx_widgets.methods", DeprecationWarning, stacklevel=2)

from .methods import METHODS, Method, register  # noqa: F401
from .methods.attention import plain_rollout, raa, raa_last, raa_mean, saco, ta  # noqa: F401
from .methods.gradient import integrated_gradients  # noqa: F401
from .methods.leafx_sf import FULL_DESINK_PARAMS, SF_PARAMS, leafx_sf, sink_free_maps  # noqa: F401
from .methods.perturbation import kernelshap, lime, occlusion, spes, spes_scores  # noqa: F401
from .methods.timing import dtw, median_filter, whisper_dtw  # noqa: F401
