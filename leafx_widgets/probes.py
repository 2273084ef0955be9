"""Linear probes of the encoder: what each layer's frames say, linearly, about the speech they hear.

Per-frame labels come from a manifest's word spans: ``"speech"`` (the frame's centre lies inside a
word) or ``"word_boundary"`` (within ``boundary_s`` of a word's start or end). A scikit-learn
logistic regression is fitted per encoder layer on the frames of some clips and scored on the frames
of held-out clips; the interval is a bootstrap over the held-out clips (frames of one clip are not
independent), next to the accuracy of always answering the majority label.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models import base

LABELS = ("speech", "word_boundary")
DEFAULT_BOUNDARY_S = 0.04


@dataclass
class Probe:
    """Held-out accuracy per encoder layer (``low``/``high``: the bootstrap interval) of one label."""

    label: str
    layers: list[int]
    accuracy: np.ndarray
    low: np.ndarray
    high: np.ndarray
    chance: float  # the majority label's share of the held-out frames
    train_clips: list[str]
    test_clips: list[str]
    n_test_frames: int

    def to_json(self) -> dict:
        return {"label": self.label, "layers": list(self.layers),
                "accuracy": [round(float(x), 4) for x in self.accuracy], "low": [round(float(x), 4) for x in self.low],
                "high": [round(float(x), 4) for x in self.high], "chance": round(float(self.chance), 4),
                "train_clips": list(self.train_clips), "test_clips": list(self.test_clips),
                "n_test_frames": int(self.n_test_frames)}

    def __repr__(self):
        rows = ", ".join(f"{l}: {a:.3f} [{lo:.3f}, {hi:.3f}]" for l, a, lo, hi in
                         zip(self.layers, self.accuracy, self.low, self.high))
        return f"Probe({self.label!r}, chance {self.chance:.3f}; {rows})"


def frame_labels(words: list[dict], n_frames: int, frame_s: float, label: str,
                 boundary_s: float = DEFAULT_BOUNDARY_S) -> np.ndarray:
    """(n_frames,) 0/1 labels of a clip's frames from its word spans (seconds from the clip start)."""
    centres = (np.arange(n_frames) + 0.5) * frame_s
    out = np.zeros(n_frames, dtype=bool)
    for w in words:
        if label == "speech":
            out |= (centres >= w["start"]) & (centres < w["end"])
        else:
            out |= (np.abs(centres - w["start"]) <= boundary_s) | (np.abs(centres - w["end"]) <= boundary_s)
    return out.astype(np.int8)


def _clips(manifest):
    from .bench.manifests import load_manifests

    paths = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    clips = [c for _, group in load_manifests(paths) for c in group]
    missing = [c.id for c in clips if not c.words]
    if missing:
        raise ValueError(f"probes need word spans, and {len(missing)} clips have none (first: {missing[0]!r})")
    return clips


def encoder_frames(model, clip) -> tuple[list[np.ndarray], int]:
    """Every encoder layer's output over the clip's real frames (its first window), at the layers' own frame
    rate (``encoder_frames_per_frame`` per attended frame): ([n_layers x (n, d)], n)."""
    from .audio import load_audio

    audio = load_audio(clip.path, target_rate=model.sample_rate).samples[: model.window_samples]
    n_attended = model.valid_frames(len(audio))
    n = n_attended * model.encoder_frames_per_frame
    states = model.encoder_states(model.features(audio), n_frames=n_attended)
    return [s[0, :n].float().cpu().numpy() for s in states], n


def probe(model, manifest, *, layer=None, label: str = "speech", test_fraction: float = 0.3, seed: int = 0,
          n_boot: int = 1000, boundary_s: float = DEFAULT_BOUNDARY_S) -> Probe:
    """Fit a logistic-regression probe of ``label`` per encoder ``layer`` (an int, a list, or None: every
    layer) on the clips of ``manifest`` (a path or several), holding out ``test_fraction`` of the clips."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(model, (str, Path)):
        from .models import load_model

        model = load_model(model)
    if base.ENCODER_LENS not in model.supports:
        raise ValueError(f"{model.name} does not expose its encoder layers, so it cannot be probed")
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(map(repr, LABELS))}, got {label!r}")
    n_layers = model.n_encoder_layers
    layers = list(range(n_layers)) if layer is None else [layer] if isinstance(layer, (int, np.integer)) else list(layer)
    bad = [l for l in layers if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 0 <= l < n_layers]
    if bad or not layers:
        raise ValueError(f"layer must be an encoder layer in [0, {n_layers}) or a list of them, got {layer!r}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    clips = _clips(manifest)
    if len(clips) < 2:
        raise ValueError(f"probes need at least 2 clips (some to fit, some held out), got {len(clips)}")
    order = np.random.default_rng(seed).permutation(len(clips))
    n_test = min(max(1, round(test_fraction * len(clips))), len(clips) - 1)
    test_set = set(order[:n_test].tolist())

    import torch

    feats, labels, groups = [[] for _ in layers], [], []
    with torch.no_grad():
        for i, clip in enumerate(clips):
            states, n = encoder_frames(model, clip)
            for j, l in enumerate(layers):
                feats[j].append(states[l])
            frame_s = model.frame_s / model.encoder_frames_per_frame  # the encoder layers' own frames
            labels.append(frame_labels(clip.words, n, frame_s, label, boundary_s))
            groups.append(np.full(n, i))
    y, g = np.concatenate(labels), np.concatenate(groups)
    test = np.isin(g, list(test_set))
    if len(np.unique(y[~test])) < 2:
        raise ValueError(f"the training clips have only one {label!r} label; use more clips")
    rng = np.random.default_rng(seed + 1)
    test_groups = np.array(sorted(test_set))
    g_test = g[test]
    boots = [np.concatenate([np.flatnonzero(g_test == c) for c in rng.choice(test_groups, len(test_groups))])
             for _ in range(n_boot)]  # indices into the held-out frames, whole clips drawn with replacement
    acc, low, high = [], [], []
    for x in feats:
        x = np.concatenate(x)
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        clf.fit(x[~test], y[~test])
        correct = (clf.predict(x[test]) == y[test]).astype(float)
        samples = [correct[b].mean() for b in boots]
        acc.append(correct.mean())
        low.append(np.percentile(samples, 2.5))
        high.append(np.percentile(samples, 97.5))
    majority = float(max(y[test].mean(), 1 - y[test].mean()))
    return Probe(label=label, layers=[int(l) for l in layers], accuracy=np.array(acc), low=np.array(low),
                 high=np.array(high), chance=majority, train_clips=[clips[i].id for i in sorted(set(range(len(clips))) - test_set)],
                 test_clips=[clips[i].id for i in sorted(test_set)], n_test_frames=int(test.sum()))
