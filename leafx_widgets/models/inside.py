"""Forward hooks that read and swap activations inside a model: what every family's logit lens,
encoder lens and activation patching (``decoder_states`` / ``encoder_states``) are built on.

Each helper is a context manager that registers hooks on modules an adapter names, appends what
passes through them to a list, swaps replacements in on the way, and removes its hooks on exit.
A replacement is ``(mask, values)``: ``mask`` covers the leading dimensions of the activation
((B,) rows, (B, S) frames or (B, H) heads) and ``values`` (1 | B, ...) the activation's shape.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .base import DecoderStates


def swap(current: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``current`` (B, T, ...) with ``values`` where ``mask`` (its leading dimensions) is True.

    A (B, S) frame mask with S < T replaces only the first S frames: a model that encodes only the
    real audio's frames (Qwen2-Audio) reports, and is patched on, those alone."""
    mask = mask.to(current.device)
    values = values.to(current.device, current.dtype)
    if mask.ndim == 2 and current.ndim == 3 and mask.shape[1] < current.shape[1]:
        extra = current.shape[1] - mask.shape[1]
        mask, values = F.pad(mask, (0, extra)), F.pad(values, (0, 0, 0, extra))
    mask = mask.reshape(*mask.shape, *[1] * (current.ndim - mask.ndim))
    return torch.where(mask, values, current)


def lens_float(logits: torch.Tensor) -> torch.Tensor:
    """Logits read out by a lens, in at least float32 (float64 for a float64 model, so that the lens's last
    layer equals the model's own log-probs to its precision)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


@contextlib.contextmanager
def _hooks(handles: list):
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def layer_outputs(layers, out: list, replace: dict | None = None):
    """Forward hooks on ``layers`` (each returns its output tensor, or a tuple that starts with it):
    layer l's output, with ``replace[l] = (mask, values)`` swapped in, is appended to ``out`` and is
    what the next layer reads. The residual stream of a decoder, or the frames of an encoder."""
    replace = replace or {}
    handles = []
    for l, layer in enumerate(layers):
        def on_layer(module, args, output, l=l):
            hidden = output[0] if isinstance(output, tuple) else output
            if l in replace:
                hidden = swap(hidden, *replace[l])
            out.append(hidden)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handles.append(layer.register_forward_hook(on_layer))
    return _hooks(handles)


def head_outputs(projections, head_dim: int, out: list, replace: dict | None = None):
    """Forward pre-hooks on attention output projections: their input (B, P, H * dh) is every head's
    output side by side, appended to ``out`` with ``replace[l] = (heads (B, H) bool, values)`` swapped
    in per head, so restoring every head restores the whole block exactly."""
    replace = replace or {}
    handles = []
    for l, projection in enumerate(projections):
        def on_heads(module, args, l=l):
            heads = args[0]
            if l in replace:
                mask, values = replace[l]
                heads = swap(heads, mask.to(heads.device).repeat_interleave(head_dim, dim=-1)[:, None, :], values)
            out.append(heads)
            return (heads, *args[1:])

        handles.append(projection.register_forward_pre_hook(on_heads))
    return _hooks(handles)


@contextlib.contextmanager
def decoder_capture(layers, replace: dict | None, *, projections=None, head_dim: int = 0):
    """Capture a decoder pass as ``DecoderStates``: each layer's residual (``replace[("dec", l)]``
    swapped in) and, given the cross-attention ``projections``, each one's per-head output
    (``replace[("cross", l)]``); a decoder-only model has no cross-attention, and ``cross`` stays empty."""
    replace = replace or {}
    states = DecoderStates(residual=[], cross=[])
    with contextlib.ExitStack() as stack:
        stack.enter_context(layer_outputs(layers, states.residual,
                                          {l: v for (kind, l), v in replace.items() if kind == "dec"}))
        if projections is not None:
            stack.enter_context(head_outputs(projections, head_dim, states.cross,
                                             {l: v for (kind, l), v in replace.items() if kind == "cross"}))
        yield states


def cross_decoder_states(decoder, tokens: torch.Tensor, encoded: torch.Tensor, replace: dict | None, *,
                         projections, head_dim: int) -> DecoderStates:
    """One pass of an encoder-decoder's text decoder (transformers' ``decoder(input_ids=...,
    encoder_hidden_states=...)``, Whisper's and Canary's) captured by ``decoder_capture``."""
    with decoder_capture(decoder.layers, replace, projections=projections, head_dim=head_dim) as states:
        decoder(input_ids=tokens, encoder_hidden_states=encoded)
    return states
