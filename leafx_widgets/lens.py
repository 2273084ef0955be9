"""Logit lens and encoder lens: what the model would say if it stopped at a given layer.

Logit lens (nostalgebraist 2020): the residual stream after each decoder layer, read through the
decoder's final norm and output projection, gives the distribution of the next token at that layer.
One teacher-forced pass per window captures every layer's residual for every token, and one output
projection reads all of them out (both cached with the window); a token's lens is then a lookup.

Encoder lens: an encoder layer's output, through the rest of the encoder's path to the decoder (Whisper:
its final norm; a speech LLM: the audio tower's pooling and norm and the projector), fed to the decoder as
if it were the whole encoder's: where in the encoder the words become decodable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .models import base

DEFAULT_TOP_K = 5
STATES_KEY = "inside.decoder_states"  # the window's clean DecoderStates, in window.cache
ENCODER_KEY = "inside.encoder_states"


def require(adapter, capability: str, what: str) -> None:
    """A one-sentence ValueError unless ``adapter`` offers ``capability``."""
    if capability not in adapter.supports:
        raise ValueError(f"{adapter.name} does not support {what} (it lacks the {capability!r} capability)")


@dataclass
class LogitLens:
    """The emitted token at every decoder layer: ``logprob`` (L,), ``rank`` (L,) (0 = the layer's top
    choice) and the ``top`` alternatives per layer as (text, probability)."""

    token: int
    text: str
    layers: list[str]
    logprob: np.ndarray
    rank: np.ndarray
    top: list[list[tuple[str, float]]]

    def to_json(self) -> dict:
        return {"token": int(self.token), "text": self.text, "layers": list(self.layers),
                "logprob": [round(float(x), 6) for x in self.logprob], "rank": [int(r) for r in self.rank],
                "top": [[[t, round(float(p), 6)] for t, p in layer] for layer in self.top]}


@dataclass
class EncoderLens:
    """The transcript decoded from encoder layer ``layer``'s output (``tokens``: their texts)."""

    layer: int
    window: int
    text: str
    ids: list[int]
    tokens: list[str]
    logprobs: np.ndarray

    def to_json(self) -> dict:
        return {"layer": self.layer, "window": self.window, "text": self.text, "tokens": list(self.tokens),
                "logprobs": [round(float(x), 6) for x in self.logprobs]}


def layer_names(adapter) -> list[str]:
    """The patching site of each lens row: the residual after decoder layer l."""
    return [f"dec.{l}" for l in range(adapter.n_layers)]


def clean_states(window) -> base.DecoderStates:
    """The window's teacher-forced decoder states (every layer's residual and cross-attention output),
    computed once per window and kept with its encoder output."""
    cache = window.cache
    states = cache.get(STATES_KEY)
    if states is None:
        states = cache[STATES_KEY] = window.adapter.decoder_states(window.encoded, window.prompt, window.ids)
    return states


@torch.no_grad()
def window_lens(window, k: int = DEFAULT_TOP_K) -> dict:
    """Every text position's lens at once (cached per window and k): ``logprob`` and ``rank`` (L, n_ids) of
    each emitted token, ``top_p`` / ``top_i`` (L, n_ids, k). One output projection over all layers and
    positions reads the projection's weights once (per token, they would be read L times per token)."""
    key = ("inside.lens", int(k))
    cache = window.cache
    if key not in cache:
        adapter = window.adapter
        states = clean_states(window)
        rows = torch.tensor(adapter.query_rows(window.prompt, range(len(window.ids))))
        residual = torch.stack([r[0, rows] for r in states.residual])  # (L, n_ids, d)
        logp = torch.log_softmax(adapter.lens_logits(residual), dim=-1)  # (L, n_ids, V)
        target = torch.tensor(window.ids, device=logp.device)[None, :, None].expand(len(logp), -1, 1)
        lp = logp.gather(-1, target)  # (L, n_ids, 1)
        top_p, top_i = logp.topk(int(k), dim=-1)
        cache[key] = {"logprob": lp[..., 0].double().cpu().numpy(), "rank": (logp > lp).sum(-1).cpu().numpy(),
                      "top_p": top_p.exp().cpu().numpy(), "top_i": top_i.cpu().numpy()}
    return cache[key]


def logit_lens(window, position: int, token_index: int, k: int = DEFAULT_TOP_K) -> LogitLens:
    """The lens of the token at ``position`` of ``window.ids`` (global index ``token_index``)."""
    adapter = window.adapter
    require(adapter, base.LOGIT_LENS, "the logit lens")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (top alternatives per layer) must be a whole number >= 1, got {k!r}")
    lensed = window_lens(window, k)
    top = [[(adapter.token_text(int(i)), float(p)) for p, i in zip(ps, ix)]
           for ps, ix in zip(lensed["top_p"][:, position], lensed["top_i"][:, position])]
    return LogitLens(token=token_index, text=adapter.token_text(window.ids[position]), layers=layer_names(adapter),
                     logprob=lensed["logprob"][:, position].copy(), rank=lensed["rank"][:, position].astype(int),
                     top=top)


def encoder_layer_states(window) -> list[torch.Tensor]:
    """The window's every encoder layer output, over the frames its encoder output has (cached)."""
    cache = window.cache
    states = cache.get(ENCODER_KEY)
    if states is None:
        states = cache[ENCODER_KEY] = window.adapter.encoder_states(window.features, n_frames=window.encoded.shape[1])
    return states


@torch.no_grad()
def encoder_lens(window, layer: int) -> EncoderLens:
    """Greedy decoding of ``window`` from encoder layer ``layer``'s output (negative: from the top)."""
    adapter = window.adapter
    require(adapter, base.ENCODER_LENS, "the encoder lens")
    n = adapter.n_encoder_layers
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n <= layer < n:
        raise ValueError(f"layer must be an encoder layer in [0, {n}) (or -{n}..-1), got {layer!r}")
    layer = int(layer) % n
    encoded = adapter.encoder_readout(encoder_layer_states(window)[layer])
    decoded = adapter.decode(encoded)
    return EncoderLens(layer=layer, window=window.index, text=adapter.text(decoded.ids).strip(), ids=list(decoded.ids),
                       tokens=[adapter.token_text(i) for i in decoded.ids], logprobs=np.array(decoded.logprobs))
