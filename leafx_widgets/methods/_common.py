"""Shared plumbing for the methods: query rows, raw attention, cropping, and a cached masked-input scorer.

Masking convention (every perturbation baseline and the benchmark's D-AOPC,
insertion and INF): the two log-Mel frames of each masked encoder frame are
replaced by the log-Mel of digital silence, i.e. the floor Whisper's log-Mel
clamps silence to, which is also the value of the window's padding
(``adapter.mask_frames``).
"""
from __future__ import annotations

import numpy as np
import torch



def gradient_batches(gradients, targets: list[int], size: int, *, layers=None, self_attention: bool = False):
    """The adapter's per-token attention gradients (``token_gradients``), ``size`` targets per
    batched backward, which bounds the memory held at once.

    Yields (batch, its gradients) per batch; the gradients are (layer, "cross" | "self", dA) from
    the top layer down, dA (H, C, n, S) or, with ``self_attention``, also (H, C, n, n); with
    ``layers`` only those layers, and the backward stops at the lowest of them. Consume each
    batch's gradients before asking for the next batch.
    """
    lowest = min(layers) if layers else 0
    for start in range(0, len(targets), size):
        batch = list(targets[start:start + size])
        grads = gradients.attention_grads(batch, lowest=lowest, self_attention=self_attention)
        yield batch, (g for g in grads if layers is None or g[0] in layers)


@torch.no_grad()
def raw_attention(window) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw attention of one teacher-forced pass: cross (L, H, P, S), self (L, H, P, P)."""
    tp = window.adapter.teacher_forced(window.encoded, window.prompt, window.ids)
    return torch.stack(tp.cross).float(), torch.stack(tp.self_attn).float()


def crop_normalise(maps: np.ndarray, n_valid: int) -> np.ndarray:
    """Keep the real frames, clip negatives, rows sum to 1 (uniform when nothing is positive)."""
    maps = np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float64)[..., :n_valid]), 0.0, None)
    total = maps.sum(axis=-1, keepdims=True)
    uniform = np.full_like(maps, 1.0 / max(n_valid, 1))
    return np.where(total > 0, maps / np.where(total > 0, total, 1.0), uniform).astype(np.float32)


def mel_to_frames(attr: torch.Tensor, window) -> np.ndarray:
    """(1, n_mels, T) input attribution -> (n_valid,) per encoder frame (summed over mels and the frame's
    input columns)."""
    per_mel = attr.detach().float().sum(dim=-2)[0]  # (T,)
    return window.adapter.input_to_frames(per_mel)[: window.n_valid].cpu().numpy()


def frame_groups(n_valid: int, n_frames: int, segment: int, per_frame: int, device=None) -> torch.Tensor:
    """Feature mask over the log-Mel input (1, 1, per_frame * n_frames): segments of ``segment`` encoder
    frames over the real audio, numbered 0..k-1; all padding is the one extra group k."""
    frame_ids = torch.arange(n_frames, device=device) // segment
    n_groups = int((n_valid + segment - 1) // segment)
    frame_ids[n_valid:] = n_groups
    return frame_ids.repeat_interleave(per_frame)[None, None, :]


class MaskedScorer:
    """log p of the window's tokens at ``positions`` for perturbed log-Mel inputs, cached by which
    encoder frames differ from the clean input (all perturbations here set frames to the silence
    floor, so that set determines the input). Shared by every target token of the window, so
    perturbation baselines pay their forward passes once per window, not once per token."""

    def __init__(self, window, positions: list[int], *, batch_size: int = 8):
        self.window = window
        self.adapter = window.adapter
        self.positions = list(positions)
        self.ids = list(window.ids[: max(self.positions) + 1]) if self.positions else []
        self.clean = window.features
        self.floor = self.clean.amin()
        self.batch_size = batch_size
        self.cache: dict[bytes, torch.Tensor] = {}
        self.n_evaluated = 0  # model passes actually run (for runtime accounting)

    def _key(self, feats: torch.Tensor) -> bytes:
        changed = (feats != self.clean[0]).any(dim=0)  # (T,)
        return (self.adapter.input_to_frames(changed.int()) > 0).cpu().numpy().tobytes()

    @torch.no_grad()
    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, 2S) perturbed inputs -> (B, len(positions)) log-probs."""
        keys = [self._key(f) for f in feats]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        seen = {}
        todo = [i for i in todo if not (keys[i] in seen or seen.setdefault(keys[i], i) != i)]
        for start in range(0, len(todo), self.batch_size):
            rows = todo[start:start + self.batch_size]
            logp = self.adapter.score(feats[rows].to(self.clean.dtype), self.window.prompt, self.ids)
            self.n_evaluated += len(rows)
            for i, lp in zip(rows, logp):
                self.cache[keys[i]] = lp[self.positions].float().cpu()
        return torch.stack([self.cache[k] for k in keys])

    def masked(self, frame_masks: np.ndarray) -> torch.Tensor:
        """(B, n_valid) bool, True = mask -> (B, len(positions)) log-probs."""
        masks = torch.zeros(len(frame_masks), self.adapter.n_window_frames, dtype=torch.bool)
        masks[:, : frame_masks.shape[1]] = torch.as_tensor(np.asarray(frame_masks, dtype=bool))
        feats = self.adapter.mask_frames(self.clean.expand(len(masks), -1, -1), masks.to(self.clean.device))
        return self(feats)
