"""The seam between the method code and a speech model.

LEAF-X only needs what ``SpeechAdapter`` offers: decode a window, run a
teacher-forced pass that captures attention over audio frames, and bypass one
layer's audio attention. Whisper implements it in ``whisper.py``; a
speech-augmented decoder-only model (attention to audio pseudo-tokens) can be
added beside it without touching ``leafx.py`` or ``explanation.py``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch


@dataclass
class Decoded:
    """Greedy decoding of one window."""

    prompt: list[int]  # special tokens fed before the text (start of transcript, language, task, ...)
    ids: list[int]  # text tokens only, end-of-text excluded
    logprobs: list[float]  # log p(ids[i] | prefix, audio)


@dataclass
class TeacherPass:
    """One teacher-forced decoder pass over ``prompt + ids``. P = len(prompt) + len(ids) positions.

    Text token ``ids[i]`` is predicted by query position ``len(prompt) + i - 1``.
    ``cross[l]`` / ``self_attn[l]`` hold what the per-layer ``reduce`` callables
    returned (they receive the (1, H, P, X) tensor the graph itself uses, so
    gradients can be taken with respect to it); without them, the raw (H, P, X)
    attention probabilities.
    """

    cross: list[torch.Tensor]  # per decoder layer: (H, P, S) attention over audio frames, or reduced
    self_attn: list[torch.Tensor]  # per decoder layer: (H, P, P) causal self-attention, or reduced
    # computes the log-probs on first use: the vocabulary projection costs as much as the decoder
    # on a small model, and attention-only methods never need it
    logprobs_fn: Callable[[], torch.Tensor] | None = None

    @functools.cached_property
    def logprobs(self) -> torch.Tensor:
        """(n_ids,) log p of each text token under teacher forcing."""
        return self.logprobs_fn()


Reduce = Callable[[int, torch.Tensor], object]  # (layer, (1, H, P, X) probabilities) -> anything


class SpeechAdapter(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype
    sample_rate: int  # audio sample rate the model expects
    frame_s: float  # seconds of audio per attended frame
    window_samples: int  # samples per decoding window
    n_window_frames: int  # attended frames per window (padding included)
    n_layers: int
    n_heads: int

    def features(self, audio: np.ndarray) -> torch.Tensor: ...
    def encode(self, features: torch.Tensor) -> torch.Tensor: ...
    def decode(self, encoded: torch.Tensor) -> Decoded: ...
    def teacher_forced(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       bypass_layer: int | None = None, reduce_cross: Reduce | None = None,
                       reduce_self: Reduce | None = None) -> TeacherPass: ...
    # per-token dlog p / dA: an object with .attention(layer) -> (cross, self) probabilities and
    # .attention_grads(targets, lowest, self_attention) yielding (layer, "cross" | "self", (H, C, n, S | n))
    def token_gradients(self, encoded: torch.Tensor, prompt: list[int], ids: list[int]): ...
    def score(self, features: torch.Tensor, prompt: list[int], ids: list[int],
              keep_tokens: torch.Tensor | None = None) -> torch.Tensor: ...
    def valid_frames(self, n_samples: int) -> int: ...
    def value_norms(self, encoded: torch.Tensor) -> torch.Tensor: ...  # (L, H, S) size of what each head writes
    def token_text(self, token_id: int) -> str: ...
