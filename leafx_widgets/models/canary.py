"""Canary (transformers' ``CanaryForConditionalGeneration``, the nvidia/canary-1b-v2 layout) behind
the ``SpeechAdapter`` seam.

A FastConformer encoder reads per-bin normalised log-Mel features (10 ms hop) and subsamples them
``subsampling_factor`` times (8: one encoder frame per 80 ms); a transformer decoder with
cross-attention writes the text after Canary's task prompt (source and target language,
punctuation, no ITN, no timestamps, no diarisation).

Window. The encoder reads any length; this adapter cuts audio into windows of ``window_s``
seconds: ``chunk_length`` in the checkpoint's preprocessor_config.json when it is set, else 40 s,
the longest input Canary models handle natively (NeMo cuts longer audio into 30-40 s chunks).
A shorter clip is padded with digital silence to the window, as Whisper's is, and the model reads
the whole window (no encoder mask), so every map has the same ``n_window_frames`` frames.

Features. The checkpoint's ``ParakeetFeatureExtractor`` (pre-emphasis, STFT, log-Mel) over the
padded window, normalised per mel bin with the mean and standard deviation of the real audio's
columns, exactly as the extractor does; the padding columns keep their normalised-silence value
where the extractor would write 0 (tests check the real columns against the extractor).
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from . import base, inside
from .base import Decoded, Reduce, SpeechAdapter, TeacherPass

DEFAULT_WINDOW_S = 40.0
EPSILON = 1e-5  # the extractor's: added to the standard deviation of each mel bin
# Canary's two-task prompt (NeMo's "canary2" format): <|startofcontext|> <|startoftranscript|>
# <|emo:undefined|> <|source|> <|target|> <|pnc|> <|noitn|> <|notimestamp|> <|nodiarize|>
START_CONTEXT, START, EMOTION = "<|startofcontext|>", "<|startoftranscript|>", "<|emo:undefined|>"
PUNCTUATION, NO_PUNCTUATION = "<|pnc|>", "<|nopnc|>"
FLAGS = ("<|noitn|>", "<|notimestamp|>", "<|nodiarize|>")
END = "<|endoftext|>"


class CanaryAdapter(SpeechAdapter):
    """Decode, capture cross-attention and bypass layers on a transformers Canary model."""

    token_scheme = "sentencepiece"

    def __init__(self, model, tokenizer: Tokenizer, extractor, *, name: str, window_s: float | None = None,
                 language: str | None = None, punctuation: bool = True, max_new_tokens: int | None = None):
        self.model = model.eval()
        self.tokenizer, self.extractor, self.name = tokenizer, extractor, name
        enc, dec = model.config.encoder_config, model.config.decoder_config
        self._encoder_uses_sdpa()
        if extractor.feature_size != enc.num_mel_bins:
            raise ValueError(f"{name}: the feature extractor makes {extractor.feature_size} mel bins, "
                             f"the encoder reads {enc.num_mel_bins}")
        self.subsampling = int(enc.subsampling_factor)
        self.hop = int(extractor.hop_length)
        self._sample_rate = int(extractor.sampling_rate)
        window_s = float(window_s or getattr(extractor, "chunk_length", None) or DEFAULT_WINDOW_S)
        self._n_window_frames = int(round(window_s * self._sample_rate / (self.hop * self.subsampling)))
        if self._n_window_frames < 1:
            raise ValueError(f"{name}: a window of {window_s:g} s holds no encoder frame")
        tok = tokenizer.token_to_id
        names = (START_CONTEXT, START, EMOTION, PUNCTUATION, NO_PUNCTUATION, *FLAGS, END)
        missing = [t for t in names if tok(t) is None]
        if missing:
            raise ValueError(f"{name}: the tokenizer lacks Canary's prompt tokens {', '.join(missing)}")
        self.eot = tok(END)
        self.languages = {code: tok(f"<|{code}|>") for code in _language_codes() if tok(f"<|{code}|>") is not None}
        if "en" not in self.languages:
            raise ValueError(f"{name}: the tokenizer has no <|en|> language token")
        self.language, self.punctuation = language, punctuation
        if language is not None:
            self.check_language(language)
        # control tokens (<|...|>, <pad>, <unk>...) never come out as text
        specials = {i for t, i in tokenizer.get_vocab(with_added_tokens=True).items()
                    if t.startswith("<|") and t.endswith("|>") or t in ("<pad>", "<unk>")}
        self.suppress = sorted((specials - {self.eot}) & set(range(dec.vocab_size)))
        self.max_new_tokens = max_new_tokens or self.max_text_positions // 2

    def _encoder_uses_sdpa(self) -> None:
        """Only the decoder's attention is captured: the encoder (its own config object) runs fused SDPA."""
        self.model.model.encoder.config._attn_implementation = "sdpa"

    # -- geometry ----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_s(self) -> float:
        return self.hop * self.subsampling / self._sample_rate

    @property
    def input_frames_per_frame(self) -> int:
        return self.subsampling

    @property
    def n_window_frames(self) -> int:
        return self._n_window_frames

    @property
    def window_samples(self) -> int:
        return self._n_window_frames * self.subsampling * self.hop

    @property
    def n_mels(self) -> int:
        return int(self.extractor.feature_size)

    @property
    def n_layers(self) -> int:
        return self.model.config.decoder_config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.decoder_config.num_attention_heads

    @property
    def max_text_positions(self) -> int:
        return self.model.config.decoder_config.max_position_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def supports(self) -> frozenset[str]:
        return frozenset({base.CROSS_ATTENTION, base.SELF_ATTENTION, base.BYPASS, base.TOKEN_GRADIENTS,
                          base.VALUE_NORMS, base.INPUT_GRADIENTS, base.PREFIX_MASKING, base.LOGIT_LENS,
                          base.ENCODER_LENS, base.PATCHING, base.CROSS_HEADS})

    def __repr__(self):
        return (f"CanaryAdapter({self.name!r}, layers={self.n_layers}, heads={self.n_heads}, "
                f"window={self.window_samples / self.sample_rate:g} s, device={self.device}, dtype={self.dtype})")

    # -- audio -> frames ---------------------------------------------------------------
    def features(self, audio: np.ndarray) -> torch.Tensor:
        """Normalised log-Mel of one window: (1, n_mels, subsampling * n_window_frames), see the module doc."""
        n = len(audio)
        if n > self.window_samples:
            raise ValueError(f"a window holds at most {self.window_samples / self.sample_rate:g} s; "
                             f"got {n / self.sample_rate:.1f} s")
        x = torch.zeros(1, self.window_samples)
        x[0, :n] = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        fe = self.extractor
        if fe.preemphasis:  # on the real samples only; the padding stays digital silence
            x = torch.cat([x[:, :1], x[:, 1:] - fe.preemphasis * x[:, :-1]], dim=1)
            x[:, n:] = 0.0
        mel = fe._torch_extract_fbank_features(x)[0, : self.subsampling * self.n_window_frames]  # (T, n_mels)
        # the extractor's statistics: its first (n + 2 (n_fft // 2) - n_fft) // hop columns are the audio
        real = max(2, min(len(mel), (n + fe.n_fft // 2 * 2 - fe.n_fft) // self.hop))
        mean = mel[:real].mean(0)
        std = ((mel[:real] - mean) ** 2).sum(0).div(real - 1).sqrt()
        return ((mel - mean) / (std + EPSILON)).T[None].to(self.device, self.dtype)

    def valid_frames(self, n_samples: int) -> int:
        return min(self.n_window_frames, math.ceil(n_samples / (self.hop * self.subsampling)))

    def mask_frames(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Masked frames take the window's lowest feature value: the scalar floor that the perturbation
        methods also use as their baseline (features.amin())."""
        floor = features.amin(dim=(-2, -1), keepdim=True)
        return torch.where(self.frames_to_input(frames).unsqueeze(-2), floor, features)

    # -- model passes ------------------------------------------------------------------
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) -> (B, n_window_frames, d); the encoder reads time-major features."""
        features = features.to(self.device, self.dtype).transpose(1, 2)
        return self.model.model.encoder(input_features=features).last_hidden_state

    def check_language(self, language: str | None, task: str = "transcribe") -> None:
        """A ValueError in one sentence unless Canary can ``task`` speech in ``language`` (None: English).
        ``"translate"`` is into English, as Whisper's."""
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if language is not None and language not in self.languages:
            raise ValueError(f"unknown language {language!r} for {self.name}; known: {', '.join(sorted(self.languages))}")
        if task == "translate" and language in (None, "en"):
            raise ValueError(f"{self.name} translates into English: pass the language of the speech, e.g. "
                             "language='de', with task='translate'")

    def prompt(self, encoded: torch.Tensor = None, previous=(), timestamps: bool = False, *,
               language: str | None = None, task: str = "transcribe") -> list[int]:
        """Canary's task prompt: source language (``language``, else the model's, else English), target
        language (the source to transcribe, English to translate), punctuation, no ITN, no timestamps,
        no diarisation."""
        if timestamps or list(previous):
            raise ValueError(f"{self.name} decodes without timestamps and without conditioning on earlier text")
        source = language or self.language or "en"
        self.check_language(source, task)
        target = "en" if task == "translate" else source
        tok = self.tokenizer.token_to_id
        return [tok(START_CONTEXT), tok(START), tok(EMOTION), self.languages[source], self.languages[target],
                tok(PUNCTUATION if self.punctuation else NO_PUNCTUATION), *(tok(f) for f in FLAGS)]

    def encode_text(self, text: str) -> list[int]:
        """The text tokens of ``text`` as Canary's SentencePiece tokenizer writes them."""
        return self.tokenizer.encode(text.strip(), add_special_tokens=False).ids

    def _logits(self, input_ids, encoded, cache=None):
        out = self.model.model.decoder(input_ids=input_ids, encoder_hidden_states=encoded,
                                       cache=cache, use_cache=cache is not None)
        return self.model.proj_out(out.last_hidden_state[:, -1]).float(), out.cache

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor, *, previous=(), timestamps: bool = False, temperature: float = 0.0,
               generator: torch.Generator | None = None, language: str | None = None,
               task: str = "transcribe") -> Decoded:
        """Greedy decoding of one window (sampled at ``temperature`` > 0), control tokens suppressed."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        prompt = self.prompt(encoded, previous, timestamps, language=language, task=task)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step_input = torch.tensor([prompt], device=self.device)
        suppress = torch.tensor(self.suppress, device=self.device, dtype=torch.long)
        ids, logprobs = [], []
        for _ in range(min(self.max_new_tokens, self.max_text_positions - len(prompt))):
            logits, cache = self._logits(step_input, encoded[:1], cache)
            logits = logits[0]
            logits[suppress] = -math.inf
            logp = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            else:
                token = int(logp.argmax())
            if token == self.eot:
                break
            ids.append(token)
            logprobs.append(float(logp[token]))
            step_input = torch.tensor([[token]], device=self.device)
        return Decoded(prompt=prompt, ids=ids, logprobs=logprobs, temperature=float(temperature))

    @contextlib.contextmanager
    def _hooks(self, bypass_layer, reduce_cross, reduce_self, cross_out, self_out):
        """Capture each decoder layer's (1, H, P, X) attention; ``bypass_layer``'s cross-attention adds nothing."""
        handles = []
        for l, layer in enumerate(self.model.model.decoder.layers):
            def on_cross(module, args, output, l=l):
                attn_out, weights = output
                cross_out.append(weights[0] if reduce_cross is None else reduce_cross(l, weights))
                if l == bypass_layer:
                    return torch.zeros_like(attn_out), weights

            def on_self(module, args, output, l=l):
                self_out.append(output[1][0] if reduce_self is None else reduce_self(l, output[1]))

            handles.append(layer.encoder_attn.register_forward_hook(on_cross))
            handles.append(layer.self_attn.register_forward_hook(on_self))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def teacher_forced(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       bypass_layer: int | None = None, reduce_cross: Reduce | None = None,
                       reduce_self: Reduce | None = None) -> TeacherPass:
        """One decoder pass over ``prompt + ids``; gradients flow if grad mode is on."""
        if bypass_layer is not None and not 0 <= bypass_layer < self.n_layers:
            raise ValueError(f"bypass_layer must be in [0, {self.n_layers}), got {bypass_layer}")
        self._check_length(prompt, ids)
        tokens = self.forced_tokens(prompt, ids)
        cross, selfs = [], []
        with self._hooks(bypass_layer, reduce_cross, reduce_self, cross, selfs):
            hidden = self.model.model.decoder(input_ids=tokens, encoder_hidden_states=encoded).last_hidden_state
        grad_mode = torch.is_grad_enabled()

        def logprobs():
            with torch.set_grad_enabled(grad_mode):
                return self.token_logprobs(hidden, prompt, ids)[0]

        return TeacherPass(cross=cross, self_attn=selfs, logprobs_fn=logprobs)

    def _check_length(self, prompt, ids) -> None:
        if len(prompt) + len(ids) > self.max_text_positions:
            raise ValueError(f"{len(prompt)} prompt and {len(ids)} text tokens exceed the {self.max_text_positions} "
                             f"positions {self.name}'s decoder reads")

    def token_logprobs(self, hidden: torch.Tensor, prompt: list[int], ids: list[int]) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) from the decoder's final states (B, >= P - 1, d) -> (B, n_ids)."""
        logits = self.model.proj_out(hidden[:, len(prompt) - 1: len(prompt) - 1 + len(ids)])
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        target = torch.tensor(ids, device=hidden.device)[None, :, None].expand(len(hidden), -1, 1)
        return logp.gather(-1, target)[..., 0]

    def token_gradients(self, encoded: torch.Tensor, prompt: list[int], ids: list[int]) -> "TokenGradients":
        return TokenGradients(self, encoded, prompt, ids)

    @torch.no_grad()
    def value_norms(self, encoded: torch.Tensor) -> torch.Tensor:
        """||v_s W_o^h|| for every decoder layer, head and frame: (L, H, S) (key/value heads shared
        by several query heads are repeated, as the attention does)."""
        norms = []
        for layer in self.model.model.decoder.layers:
            attn = layer.encoder_attn
            values = attn.v_proj(encoded[0]).unflatten(-1, (-1, attn.head_dim))  # (S, KV, dh)
            values = values.repeat_interleave(attn.num_key_value_groups, dim=1)  # (S, H, dh)
            out_w = attn.o_proj.weight.unflatten(-1, (self.n_heads, attn.head_dim))  # (d, H, dh)
            norms.append(torch.einsum("shk,dhk->hsd", values, out_w).norm(dim=-1))
        return torch.stack(norms).float()

    def score(self, features: torch.Tensor, prompt: list[int], ids: list[int],
              keep_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) for a batch of inputs (B, n_mels, T) -> (B, n_ids).

        ``keep_tokens`` (K, n_ids) bool: text tokens whose input embedding is zeroed where False
        (the prompt and the positions are always kept); one input with K masks is encoded once."""
        self._check_length(prompt, ids)
        encoded = self.encode(features)
        if keep_tokens is not None and len(features) == 1 and len(keep_tokens) > 1:
            encoded = encoded.expand(len(keep_tokens), -1, -1)
        tokens = self.forced_tokens(prompt, ids, len(encoded))
        embeds = self.model.model.decoder.embed_tokens(tokens)
        if keep_tokens is not None:
            keep = base.text_keep_mask(len(tokens), len(prompt), keep_tokens, self.device)
            embeds = embeds * keep[..., None].to(embeds.dtype)
        hidden = self.model.model.decoder(inputs_embeds=embeds, encoder_hidden_states=encoded).last_hidden_state
        return self.token_logprobs(hidden, prompt, ids)

    # -- inside the model: lenses and patching (forward hooks, ``inside``) ---------------
    @property
    def n_encoder_layers(self) -> int:
        return self.model.config.encoder_config.num_hidden_layers

    @torch.no_grad()
    def decoder_states(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       replace: base.Replacements | None = None) -> base.DecoderStates:
        """Teacher-forced pass over ``prompt + ids`` for each row of ``encoded``: each layer's residual and each
        cross-attention's per-head output (the input of its ``o_proj``), swapping in ``replace``."""
        self._check_length(prompt, ids)
        tokens = self.forced_tokens(prompt, ids, len(encoded))
        decoder = self.model.model.decoder
        return inside.cross_decoder_states(decoder, tokens, encoded, replace,
                                           head_dim=decoder.layers[0].encoder_attn.head_dim,
                                           projections=[layer.encoder_attn.o_proj for layer in decoder.layers])

    def lens_logits(self, residual: torch.Tensor) -> torch.Tensor:
        """The decoder's final LayerNorm and output projection."""
        return inside.lens_float(self.model.proj_out(self.model.model.decoder.norm(residual)))

    @torch.no_grad()
    def encoder_states(self, features: torch.Tensor, *, n_frames: int | None = None,
                       replace: base.Replacements | None = None) -> list[torch.Tensor]:
        """Every FastConformer block's output (B, n_window_frames, d); ``n_frames`` is ignored (it reads the window)."""
        outputs = []
        with inside.layer_outputs(self.model.model.encoder.layers, outputs, replace):
            self.encode(features)
        return outputs

    def encoder_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        # identity: the FastConformer encoder has no final norm, the decoder attends to its last block's output
        return hidden

    # -- text --------------------------------------------------------------------------
    def token_piece(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(int(token_id)) or ""

    def save_pretrained(self, folder) -> None:
        """A transformers checkpoint with its tokenizer and feature extractor (and the window length)."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save(str(Path(folder) / "tokenizer.json"))
        self.extractor.chunk_length = self.window_samples / self.sample_rate
        self.extractor.save_pretrained(str(folder))


class TokenGradients:
    """d log p_t / dA of every decoder layer's attention for any set of tokens t, by torch.autograd.

    One forward pass builds the graph (from the token embeddings and the encoder output as leaves,
    so it exists even with frozen weights); each batch of C targets is one vectorised backward
    (``is_grads_batched``) from their log-probs to the attention probabilities of the layers asked for.
    """

    def __init__(self, adapter: CanaryAdapter, encoded: torch.Tensor, prompt: list[int], ids: list[int]):
        self.rows = adapter.query_rows(prompt, range(len(ids)))
        tokens = torch.tensor([list(prompt) + list(ids)[:-1]], device=adapter.device)  # up to the last query
        decoder = adapter.model.model.decoder
        self._cross, self._self = [], []
        with torch.enable_grad():
            embeds = decoder.embed_tokens(tokens).detach().requires_grad_()
            leaf = encoded[:1].detach().requires_grad_()
            keep = lambda layer, attention: attention  # (1, H, P, X): the tensors the graph itself uses
            with adapter._hooks(None, keep, keep, self._cross, self._self):
                hidden = decoder(inputs_embeds=embeds, encoder_hidden_states=leaf).last_hidden_state
            self.logprobs = adapter.token_logprobs(hidden, prompt, ids)[0]  # (N,)

    def attention(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward pass's (cross (H, P, S), self (H, P, P)) attention of one layer."""
        return self._cross[layer][0].detach(), self._self[layer][0].detach()

    def attention_grads(self, targets: list[int], lowest: int = 0, self_attention: bool = False):
        """Yield (layer, "cross" | "self", dA (H, C, n, S or n)) for the tokens ``targets``
        (n = their last query + 1), from the top layer down to ``lowest``."""
        n = max(self.rows[t] for t in targets) + 1
        layers = list(range(len(self._cross) - 1, lowest - 1, -1))
        inputs = [self._cross[l] for l in layers] + ([self._self[l] for l in layers] if self_attention else [])
        seeds = torch.eye(len(targets), dtype=self.logprobs.dtype, device=self.logprobs.device)
        with torch.enable_grad():
            grads = torch.autograd.grad(self.logprobs[list(targets)], inputs, grad_outputs=seeds,
                                        is_grads_batched=True, retain_graph=True, allow_unused=True)
        for k, l in enumerate(layers):
            yield l, "cross", _per_head(grads[k], inputs[k], len(targets))[..., :n, :]
            if self_attention:
                j = len(layers) + k
                yield l, "self", _per_head(grads[j], inputs[j], len(targets))[..., :n, :n]


def _per_head(grad, attention, n_targets):
    """(C, 1, H, P, X) batched gradient (None: no path from the targets, zeros) -> (H, C, P, X)."""
    if grad is None:
        return attention.new_zeros(attention.shape[1], n_targets, *attention.shape[2:])
    return grad[:, 0].transpose(0, 1)


def _language_codes() -> list[str]:
    from transformers.models.canary.processing_canary import LANGUAGE_CODE_TO_NAME

    return list(LANGUAGE_CODE_TO_NAME)


def load_canary(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype,
                language: str | None) -> CanaryAdapter:
    """A transformers Canary checkpoint in ``folder``: config.json, model.safetensors, tokenizer.json and
    the feature extractor's preprocessor_config.json (its defaults, those of canary-1b-v2 but the mel
    bins, when absent)."""
    from transformers import CanaryForConditionalGeneration, ParakeetFeatureExtractor

    folder = Path(folder)
    if not (folder / "tokenizer.json").exists():  # tokenizers' own error is a bare Exception
        raise ValueError(f"could not load Canary model {name!r} from {folder}: it has no tokenizer.json")
    try:
        model = CanaryForConditionalGeneration.from_pretrained(
            str(folder), attn_implementation="eager", dtype=dtype, use_safetensors=True, local_files_only=True)
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        if (folder / "preprocessor_config.json").exists() or (folder / "processor_config.json").exists():
            extractor = ParakeetFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        else:
            extractor = ParakeetFeatureExtractor(feature_size=model.config.encoder_config.num_mel_bins)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load Canary model {name!r} from {folder}: {str(err).splitlines()[0]}") from None
    return CanaryAdapter(model.to(device), tokenizer, extractor, name=name, language=language)
