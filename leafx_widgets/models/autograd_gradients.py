"""Per-token d log p / d attention by autograd, for any adapter (the generic +grad path).

Whisper has a hand-written batched backward (``whisper_backward``); any other adapter gets
this one, as long as its ``teacher_forced`` hands the ``reduce`` callables the attention
tensors its graph actually uses. One teacher-forced pass is recorded with autograd on, then
one backward per token, to the layers asked for only. It hands out what
``whisper_backward.TokenGradients`` does, so every +grad method runs unchanged on it.
``tests/test_speech_llm.py`` holds it to the hand-written backward on tiny.en.

Memory: the recorded pass, plus dA of the requested layers for one batch of tokens
(layers x heads x tokens x positions x frames), which ``methods._common.gradient_batches`` bounds.
"""
from __future__ import annotations

import torch


class TokenGradients:
    """dlog p_t / dA of every layer's audio (cross) and self-attention, for any set of tokens t."""

    def __init__(self, adapter, encoded: torch.Tensor, prompt: list[int], ids: list[int]):
        if not ids:
            raise ValueError("per-token gradients need at least one text token")
        self.rows = adapter.query_rows(prompt, range(len(ids)))
        self.n_pos = max(self.rows) + 1  # up to the last query that predicts a token
        self.cross: list[torch.Tensor] = []
        self.selfs: list[torch.Tensor] = []
        with torch.enable_grad():
            tp = adapter.teacher_forced(encoded, prompt, ids,
                                        reduce_cross=lambda l, a: self.cross.append(a) or a,
                                        reduce_self=lambda l, a: self.selfs.append(a) or a)
            self.logprobs = tp.logprobs
        if not self.logprobs.requires_grad or not all(a.requires_grad for a in self.cross + self.selfs):
            raise ValueError(f"{type(adapter).__name__}.teacher_forced does not hand out the attention tensors "
                             "its graph uses, so gradients cannot be taken with respect to them")

    def attention(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass's (cross (H, P, S), self (H, P, P)) attention of one layer (P: up to the last query)."""
        n = self.n_pos
        return self.cross[layer][0, :, :n].detach(), self.selfs[layer][0, :, :n, :n].detach()

    def attention_grads(self, targets: list[int], lowest: int = 0, self_attention: bool = False):
        """Yield (layer, "cross" | "self", dA (H, C, n, S or n)) for the tokens ``targets``
        (n = their last query + 1), from the top layer down to ``lowest``; "self" only with
        ``self_attention``, after the layer's "cross"."""
        n = max(self.rows[t] for t in targets) + 1
        layers = range(len(self.cross) - 1, lowest - 1, -1)
        inputs = [self.cross[l] for l in layers] + ([self.selfs[l] for l in layers] if self_attention else [])
        per_token = []
        with torch.enable_grad():  # the methods call this under no_grad
            for t in targets:  # one backward each, down to the lowest layer asked for
                grads = torch.autograd.grad(self.logprobs[t], inputs, retain_graph=True, allow_unused=True)
                per_token.append([torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)])
        for i, layer in enumerate(layers):
            yield layer, "cross", torch.stack([g[i][0, :, :n] for g in per_token], dim=1)
            if self_attention:
                yield layer, "self", torch.stack([g[len(layers) + i][0, :, :n, :n] for g in per_token], dim=1)
