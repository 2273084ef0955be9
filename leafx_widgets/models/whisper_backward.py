"""Whisper's decoder backward pass for many tokens at once, written out by hand.

+grad (Eq. 7) needs dlog p_t / dA for every decoded token t: one backward pass per
token. Autograd runs them one by one (or through vmap) as many small matrix
products; written out here they share one forward trace and run as a batch of
C tokens: every product is C times larger, the tokens of a batch only go as far as
their longest prefix, and the cross-attention gradient dA, an intermediate of the
backward pass anyway, is handed out directly instead of being rebuilt from the
heads' outputs. ``tests/test_models.py`` checks it against autograd.

Shapes: P positions, D model width, H heads of width dh, S encoder frames, C tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class _Norm:
    xhat: torch.Tensor  # (P, D) normalised input
    rstd: torch.Tensor  # (P, 1) 1 / standard deviation


@dataclass
class _Layer:
    norm_self: _Norm
    q: torch.Tensor  # (H, P, dh) scaled queries of self-attention
    k: torch.Tensor  # (H, P, dh)
    v: torch.Tensor  # (H, P, dh)
    p_self: torch.Tensor  # (H, P, P) causal self-attention
    norm_cross: _Norm
    k_cross: torch.Tensor  # (H, S, dh)
    v_cross: torch.Tensor  # (H, S, dh)
    q_cross: torch.Tensor  # (H, P, dh) scaled queries of the cross-attention
    p_cross: torch.Tensor | None  # (H, P, S) cross-attention, kept only while memory allows
    norm_mlp: _Norm
    pre_act: torch.Tensor  # (P, 4D) input of the GELU

    def cross_attention(self) -> torch.Tensor:
        """(H, P, S), recomputed from the queries when it was not kept."""
        if self.p_cross is not None:
            return self.p_cross
        return torch.softmax(self.q_cross @ self.k_cross.transpose(-1, -2), dim=-1)


def _layer_norm(x, ln) -> tuple[torch.Tensor, _Norm]:
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    rstd = torch.rsqrt(var + ln.eps)
    xhat = (x - mean) * rstd
    return xhat * ln.weight + ln.bias, _Norm(xhat, rstd)


def _layer_norm_backward(dy, norm: _Norm, ln) -> torch.Tensor:
    g = dy * ln.weight
    return norm.rstd * (g - g.mean(-1, keepdim=True) - norm.xhat * (g * norm.xhat).mean(-1, keepdim=True))


def _heads(x, n_heads):  # (..., P, H * dh) -> (..., H, P, dh)
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)


def _merge(x):  # (..., H, P, dh) -> (..., P, H * dh)
    return x.transpose(-3, -2).flatten(-2)


def _softmax_backward(dp, p):
    return p * (dp - (dp * p).sum(-1, keepdim=True))


KEEP_ATTENTION_MB = 256.0  # keep every layer's cross-attention up to this size, else recompute it


@torch.no_grad()
def trace(decoder, tokens: torch.Tensor, encoded: torch.Tensor,
          keep_attention_mb: float | None = None) -> tuple[list[_Layer], _Norm, torch.Tensor]:
    """The decoder's forward pass over ``tokens`` (P,), keeping what the backward pass needs.

    Written out like transformers' ``WhisperDecoder`` (no cache, no dropout); the tests
    hold it to the model's own outputs. Returns the layers' traces, the final layer
    norm's and the final output (P, D). The cross-attention of all layers (layers x heads
    x positions x frames) is kept only if it fits in ``keep_attention_mb``; otherwise each
    layer's is recomputed from its queries when needed (large models).
    """
    activation = getattr(decoder.config, "activation_function", "gelu")
    if activation != "gelu":  # the backward pass below differentiates the exact (erf) GELU
        raise ValueError(f"per-token gradients support Whisper's exact GELU, not {activation!r}")
    n_layers, n_heads = len(decoder.layers), decoder.layers[0].encoder_attn.num_heads
    attention_mb = n_layers * n_heads * len(tokens) * encoded.shape[0] * encoded.element_size() / 2**20
    keep = attention_mb <= (KEEP_ATTENTION_MB if keep_attention_mb is None else keep_attention_mb)
    x = decoder.embed_tokens(tokens) + decoder.embed_positions.weight[: len(tokens)]
    layers = []
    for layer in decoder.layers:
        sa, ca, n_heads = layer.self_attn, layer.encoder_attn, layer.self_attn.num_heads
        h, norm_self = _layer_norm(x, layer.self_attn_layer_norm)
        q = _heads(sa.q_proj(h) * sa.scaling, n_heads)
        k, v = _heads(sa.k_proj(h), n_heads), _heads(sa.v_proj(h), n_heads)
        scores = q @ k.transpose(-1, -2)
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).triu(1)
        p_self = torch.softmax(scores.masked_fill(causal, -math.inf), dim=-1)
        x = x + sa.out_proj(_merge(p_self @ v))
        h, norm_cross = _layer_norm(x, layer.encoder_attn_layer_norm)
        qc = _heads(ca.q_proj(h) * ca.scaling, n_heads)
        kc, vc = _heads(ca.k_proj(encoded), n_heads), _heads(ca.v_proj(encoded), n_heads)
        p_cross = torch.softmax(qc @ kc.transpose(-1, -2), dim=-1)
        x = x + ca.out_proj(_merge(p_cross @ vc))
        h, norm_mlp = _layer_norm(x, layer.final_layer_norm)
        pre_act = layer.fc1(h)
        x = x + layer.fc2(layer.activation_fn(pre_act))
        layers.append(_Layer(norm_self, q, k, v, p_self, norm_cross, kc, vc, qc, p_cross if keep else None,
                             norm_mlp, pre_act))
    out, final = _layer_norm(x, decoder.layer_norm)
    return layers, final, out


def _prefix(norm: _Norm, n: int) -> _Norm:
    return _Norm(norm.xhat[:n], norm.rstd[:n])


@torch.no_grad()
def attention_grads(decoder, layers: list[_Layer], final: _Norm, seeds: torch.Tensor, lowest: int,
                    self_attention: bool = False):
    """Backward from ``seeds`` (C, n, D), the gradients at the decoder's final output of C tokens
    over the first n positions, down to layer ``lowest``. Yields (layer, "cross", dA (H, C, n, S)),
    from the top layer down: the gradient with respect to that layer's cross-attention
    probabilities; with ``self_attention`` also (layer, "self", dA (H, C, n, n)) for the
    decoder's self-attention probabilities.

    Attention gradients are kept head-major, (H, C * n, ...), so that every product with the
    per-head keys and values is one batched matrix product without broadcasting copies.
    """
    n_tokens, n = seeds.shape[:2]
    grad = _layer_norm_backward(seeds, _prefix(final, n), decoder.layer_norm)  # (C, n, D)

    def to_heads(x, n_heads):  # (C, n, H * dh) -> (H, C * n, dh)
        return x.unflatten(-1, (n_heads, -1)).permute(2, 0, 1, 3).reshape(n_heads, n_tokens * n, -1)

    def from_heads(x):  # (H, C * n, dh) -> (C, n, H * dh)
        return x.unflatten(1, (n_tokens, n)).permute(1, 2, 0, 3).flatten(-2)

    for l in range(len(layers) - 1, lowest - 1, -1):
        module, t = decoder.layers[l], layers[l]
        # MLP block: x3 = x2 + fc2(gelu(fc1(norm(x2))))
        pre = t.pre_act[:n]
        cdf = 0.5 * (1.0 + torch.erf(pre * 0.7071067811865476))
        gelu_grad = cdf + pre * torch.exp(-0.5 * pre * pre) * 0.3989422804014327
        d_h = ((grad @ module.fc2.weight) * gelu_grad) @ module.fc1.weight
        grad = grad + _layer_norm_backward(d_h, _prefix(t.norm_mlp, n), module.final_layer_norm)
        # cross-attention block: x2 = x1 + out_proj(A V)
        ca = module.encoder_attn
        d_out = to_heads(grad @ ca.out_proj.weight, ca.num_heads)  # (H, C n, dh)
        d_attn = torch.bmm(d_out, t.v_cross.transpose(-1, -2))  # (H, C n, S)
        yield l, "cross", d_attn.unflatten(1, (n_tokens, n))
        if l == lowest and not self_attention:
            return
        d_scores = _softmax_backward(d_attn.unflatten(1, (n_tokens, n)), t.cross_attention()[:, None, :n])
        del d_attn
        d_q = torch.bmm(d_scores.flatten(1, 2), t.k_cross) * ca.scaling  # (H, C n, dh)
        del d_scores
        d_h = from_heads(d_q) @ ca.q_proj.weight
        grad = grad + _layer_norm_backward(d_h, _prefix(t.norm_cross, n), module.encoder_attn_layer_norm)
        # self-attention block: x1 = x + out_proj(softmax(q k^T) v)
        sa = module.self_attn
        q, k, v, p = t.q[:, :n], t.k[:, :n], t.v[:, :n], t.p_self[:, :n, :n]
        d_out = to_heads(grad @ sa.out_proj.weight, sa.num_heads).unflatten(1, (n_tokens, n))  # (H, C, n, dh)
        d_p = d_out @ v[:, None].transpose(-1, -2)  # (H, C, n, n)
        if self_attention:
            yield l, "self", d_p
        if l == lowest:
            return
        d_v = torch.einsum("hqk,hcqd->hckd", p, d_out)
        d_scores = _softmax_backward(d_p, p[:, None])
        d_q = (d_scores @ k[:, None]) * sa.scaling
        d_k = torch.einsum("hcqk,hqd->hckd", d_scores, q)
        d_h = sum(from_heads(x.flatten(1, 2)) @ w.weight for x, w in [(d_q, sa.q_proj), (d_k, sa.k_proj), (d_v, sa.v_proj)])
        grad = grad + _layer_norm_backward(d_h, _prefix(t.norm_self, n), module.self_attn_layer_norm)


class TokenGradients:
    """dlog p_t / dA of the cross-attention, for any set of decoded tokens t of one window."""

    def __init__(self, model, encoded: torch.Tensor, prompt: list[int], ids: list[int]):
        self.decoder, self.rows = model.model.decoder, [len(prompt) - 1 + i for i in range(len(ids))]
        # up to the last query that predicts a token
        tokens = torch.tensor(list(prompt) + list(ids)[:-1], device=encoded.device)
        self.layers, self.final, out = trace(self.decoder, tokens, encoded[0])
        # gradient of log p(ids[i]) at the final output of its query: W^T (onehot - softmax)
        weight = model.proj_out.weight  # (V, D)
        with torch.no_grad():
            # softmax in at least float32 (half-precision models), in float64 for float64 models
            logits = out[self.rows] @ weight.T
            probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
            probs = probs.to(weight.dtype)
            self.seeds = weight[torch.tensor(ids, device=weight.device)] - probs @ weight  # (N, D)

    def attention(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass's (cross (H, P, S), self (H, P, P)) attention of one layer."""
        return self.layers[layer].cross_attention(), self.layers[layer].p_self

    def attention_grads(self, targets: list[int], lowest: int = 0, self_attention: bool = False):
        """Yield (layer, "cross" | "self", dA (H, C, n, S or n)) for the tokens ``targets``
        (n = their last query + 1), from the top layer down to ``lowest``."""
        n = max(self.rows[t] for t in targets) + 1
        seeds = self.seeds.new_zeros(len(targets), n, self.seeds.shape[-1])
        for c, t in enumerate(targets):
            seeds[c, self.rows[t]] = self.seeds[t]
        yield from attention_grads(self.decoder, self.layers, self.final, seeds, lowest, self_attention)
