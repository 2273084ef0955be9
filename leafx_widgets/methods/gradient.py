"""Integrated Gradients over the log-Mel input (captum), one target token at a time."""
from __future__ import annotations

import numpy as np

from ._common import crop_normalise, mel_to_frames
from .registry import Method, register


def integrated_gradients(window, positions, *, n_steps: int = 8, method: str = "riemann_trapezoid") -> np.ndarray:
    """IG from the silence log-Mel (the feature floor) to the clip's log-Mel, attribution summed
    over mel bins and the two mel frames of each encoder frame; negative frames clip to zero.
    Costs ``n_steps`` forward + backward passes through the encoder per token."""
    from captum.attr import IntegratedGradients

    adapter = window.adapter
    feats = window.features
    ids = list(window.ids[: max(positions) + 1])

    def forward(x):
        return adapter.score(x, window.prompt, ids)[:, positions]

    ig = IntegratedGradients(forward)
    maps = []
    for j in range(len(positions)):
        attr = ig.attribute(feats, baselines=float(feats.amin()), target=j, n_steps=n_steps,
                            method=method, internal_batch_size=n_steps)
        maps.append(mel_to_frames(attr, window))
    return crop_normalise(np.stack(maps), window.n_valid)


register(Method("ig", "Integrated Gradients", integrated_gradients, family="gradient", cost="slow", batched=False,
                requires=("captum",), params={"n_steps": 8, "method": "riemann_trapezoid"},
                description="captum IG over the log-Mel from the silence floor", needs=("input_gradients",)))
