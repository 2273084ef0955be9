"""Baseline attribution methods and the LEAF-X-SF variant; each registers itself in the one
method registry (``leafx_widgets.methods.METHODS``) on import.

Every ``compute(window, positions, **params)`` returns (len(positions), window.n_valid) maps
over the window's real frames, non-negative, rows summing to 1.
"""
from __future__ import annotations

from ..methods import METHODS, Method, register
from .attention import plain_rollout, raa_last, raa_mean, saco, ta, whisper_dtw
from .gradient import integrated_gradients
from .leafx_sf import FULL_DESINK_PARAMS, SF_PARAMS, leafx_sf
from .perturbation import kernelshap, lime, occlusion, spes

BASELINES = [
    Method("leafx_sf", "LEAF-X-SF (sink-free)", leafx_sf, family="leafx", cost="fast",
           params=dict(SF_PARAMS),
           description="fixed LEAF-X: last-layer entropy-weighted heads, no self-attention rollout, "
                       "frames divided by (their mean attention over the window's tokens)^0.75"),
    Method("leafx_sf_full", "LEAF-X-SF, full de-sink", leafx_sf, family="leafx", cost="fast",
           params=dict(FULL_DESINK_PARAMS),
           description="LEAF-X-SF with the whole sink division and gamma 1.5 (sharper, loses INF to RAA)"),
    Method("leafx_sf_grad", "LEAF-X-SF +grad", leafx_sf, family="leafx", cost="fast",
           params={**SF_PARAMS, "grad": True},
           description="LEAF-X-SF on gradient-modulated attention (Eq. 7 on each token's own query)"),
    Method("raa_last", "RAA (last layer)", raa_last, family="attention",
           description="head-mean cross-attention of the last decoder layer"),
    Method("raa_mean", "RAA (all layers)", raa_mean, family="attention",
           description="head- and layer-mean cross-attention"),
    Method("rollout", "Attention rollout", plain_rollout, family="attention",
           description="head-mean attention rollout through the decoder (no entropy, no gradient)"),
    Method("saco", "SaCo", saco, family="gradient",
           description="gradient-weighted cross-attention rolled out with 0.5 I + 0.5 A self-attention"),
    Method("ta", "TA (Chefer 2021)", ta, family="gradient",
           description="Chefer et al. 2021 encoder-decoder relevance rules, decoder side"),
    Method("whisper_dtw", "Whisper DTW timing", whisper_dtw, family="reference", params={"medfilt_width": 7},
           description="openai-whisper alignment heads + median filter + DTW; uniform over the token's frames"),
    Method("ig", "Integrated Gradients", integrated_gradients, family="gradient", cost="slow", batched=False,
           requires=("captum",),
           params={"n_steps": 8, "method": "riemann_trapezoid"},
           description="captum IG over the log-Mel from the silence floor"),
    Method("occlusion", "Occlusion / SpecMask", occlusion, family="perturbation", cost="slow",
           requires=("captum",),
           params={"window_frames": 10, "stride_frames": 10},
           description="captum Occlusion: silence 200 ms time patches"),
    Method("lime", "LIME", lime, family="perturbation", cost="slow", requires=("captum", "sklearn"),
           params={"n_samples": 32, "segment_frames": 5, "seed": 0},
           description="captum Lime over 100 ms segments, ridge surrogate"),
    Method("kernelshap", "KernelSHAP", kernelshap, family="perturbation", cost="slow",
           requires=("captum", "sklearn"),
           params={"n_samples": 32, "segment_frames": 5, "seed": 0},
           description="captum KernelShap over 100 ms segments"),
    Method("spes", "SPES", spes, family="perturbation", cost="slow",
           params={"n_samples": 32, "patch_frames": 5, "patch_mels": 16, "p_mask": 0.5, "seed": 0,
                   "batch_size": 8},
           description="time-frequency patch perturbation (RISE estimate): SPES's spectrogram explanation; "
                       "its explanation over earlier tokens is baselines.perturbation.spes_scores"),
]

for _method in BASELINES:
    if _method.name not in METHODS:
        register(_method)
