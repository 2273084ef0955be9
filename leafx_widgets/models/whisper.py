"""Whisper (transformers' ``WhisperForConditionalGeneration``) behind the ``SpeechAdapter`` seam.

Everything Whisper-specific lives here: 16 kHz audio, log-Mel columns of 10 ms, encoder
frames of 20 ms in windows of ``max_source_positions`` frames (1500: 30 s in every released
checkpoint), the special tokens, suppressed tokens and alignment heads.
"""
from __future__ import annotations

import contextlib
import copy
import math
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from . import base, inside
from .base import Decoded, Reduce, SpeechAdapter, TeacherPass
from .whisper_backward import TokenGradients

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # log-Mel hop: 10 ms
CONV_STRIDE = 2  # the encoder's second convolution halves the frame rate
# openai-whisper's rule: multilingual checkpoints have this many or more vocabulary entries
MULTILINGUAL_MIN_VOCAB = 51865
MAX_INITIAL_TIMESTAMP_INDEX = 50  # Whisper's first timestamp is at most 1 s into the window


def cfg_has_timestamps(adapter) -> bool:
    """The vocabulary holds a timestamp token for every 20 ms of a window (all released checkpoints)."""
    return adapter.model.config.vocab_size > adapter.timestamp_begin + adapter.n_window_frames


def _encoder_uses_sdpa(model) -> None:
    """Run the encoder's self-attention with fused SDPA (about 2x faster on CPU).

    Only the decoder's attention is ever captured, so only it needs the eager
    implementation that returns attention probabilities.
    """
    encoder_config = copy.deepcopy(model.config)
    encoder_config._attn_implementation = "sdpa"
    for layer in model.model.encoder.layers:
        layer.self_attn.config = encoder_config


class WhisperAdapter(SpeechAdapter):
    """Decode, capture cross-attention and bypass layers on a transformers Whisper model."""

    sample_rate = SAMPLE_RATE
    frame_s = HOP_LENGTH * CONV_STRIDE / SAMPLE_RATE  # 0.02 s
    input_frames_per_frame = CONV_STRIDE  # log-Mel columns (10 ms) per encoder frame (20 ms)
    token_scheme = "byte_bpe"  # GPT-2's byte-level BPE

    def __init__(self, model, tokenizer: Tokenizer, *, name: str, alignment_heads=(), suppress=(),
                 suppress_begin=(), language: str | None = None, max_new_tokens: int | None = None):
        self.model = model.eval()
        _encoder_uses_sdpa(model)
        self.tokenizer = tokenizer
        self.name = name
        cfg = model.config
        self._alignment_heads = [tuple(int(x) for x in h) for h in alignment_heads]
        self.multilingual = cfg.vocab_size >= MULTILINGUAL_MIN_VOCAB
        self.language = language
        tok = tokenizer.token_to_id
        self.sot, self.eot = tok("<|startoftranscript|>"), tok("<|endoftext|>")
        self.no_timestamps, self.transcribe = tok("<|notimestamps|>"), tok("<|transcribe|>")
        if None in (self.sot, self.eot, self.no_timestamps):
            raise ValueError(f"{name}: the tokenizer lacks Whisper's special tokens")
        self.start_of_prev = tok("<|startofprev|>")
        self.translate = tok("<|translate|>")
        # language tokens sit between <|startoftranscript|> and the task tokens: <|en|>, <|de|>, ...
        first_task = min(i for i in (self.translate, self.transcribe, self.no_timestamps) if i is not None)
        self.language_ids = {tokenizer.id_to_token(i).strip("<|>"): i for i in range(self.sot + 1, first_task)
                             if (tokenizer.id_to_token(i) or "").startswith("<|")} if self.multilingual else {}
        if language is not None:
            self.check_language(language)
        self.no_speech = tok("<|nospeech|>") or tok("<|nocaptions|>")
        self.timestamp_begin = self.no_timestamps + 1  # <|0.00|>, then one token per 20 ms
        # every special token after <|endoftext|> (languages, tasks, timestamps) is never text
        self.suppress = sorted(set(int(i) for i in suppress) | set(range(self.eot + 1, cfg.vocab_size)))
        # with timestamps, the timestamp tokens are allowed (WhisperTimeStampLogitsProcessor rules them)
        self.suppress_with_timestamps = [i for i in self.suppress if i < self.timestamp_begin]
        self.suppress_begin = sorted(set(int(i) for i in suppress_begin) | {self.eot})
        self.max_new_tokens = max_new_tokens or cfg.max_target_positions // 2
        window_s, rest = divmod(self.window_samples, SAMPLE_RATE)
        if rest:
            raise ValueError(f"{name}: a window of {self.n_window_frames} encoder frames is not a whole number of "
                             "seconds, which Whisper's feature extractor needs")
        from transformers import WhisperFeatureExtractor

        self._extractor = WhisperFeatureExtractor(feature_size=self.n_mels, sampling_rate=SAMPLE_RATE,
                                                  hop_length=HOP_LENGTH, chunk_length=window_s)

    # -- dimensions, device and dtype --------------------------------------------------
    @property
    def n_layers(self) -> int:
        return self.model.config.decoder_layers

    @property
    def n_heads(self) -> int:
        return self.model.config.decoder_attention_heads

    @property
    def n_mels(self) -> int:
        return self.model.config.num_mel_bins

    @property
    def n_window_frames(self) -> int:
        return self.model.config.max_source_positions

    @property
    def window_samples(self) -> int:
        return self.n_window_frames * CONV_STRIDE * HOP_LENGTH

    @property
    def alignment_heads(self) -> list[tuple[int, int]]:
        return self._alignment_heads

    @property
    def supports(self) -> frozenset[str]:
        caps = {base.CROSS_ATTENTION, base.SELF_ATTENTION, base.BYPASS, base.TOKEN_GRADIENTS, base.VALUE_NORMS,
                base.INPUT_GRADIENTS, base.PREFIX_MASKING, base.DTW_TIMING, base.LOGIT_LENS, base.ENCODER_LENS,
                base.PATCHING, base.CROSS_HEADS}
        caps |= {base.TIMESTAMPS} if self.start_of_prev is not None and cfg_has_timestamps(self) else set()
        return frozenset(caps | ({base.ALIGNMENT_HEADS} if self._alignment_heads else set()))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def __repr__(self):
        return f"WhisperAdapter({self.name!r}, layers={self.n_layers}, heads={self.n_heads}, device={self.device}, dtype={self.dtype})"

    # -- audio -> frames --------------------------------------------------------------
    def features(self, audio: np.ndarray) -> torch.Tensor:
        """Log-Mel features of one window (30 s): (1, n_mels, 2 * n_window_frames), padded with silence."""
        if len(audio) > self.window_samples:
            raise ValueError(f"a window holds at most {self.window_samples / SAMPLE_RATE:g} s; "
                             f"got {len(audio) / SAMPLE_RATE:.1f} s")
        feats = self._extractor(audio.astype(np.float32), sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        return torch.from_numpy(feats).to(self.device, self.dtype)

    def valid_frames(self, n_samples: int) -> int:
        """Encoder frames that hold real audio (the rest of the window is padding)."""
        return min(self.n_window_frames, math.ceil(n_samples / (HOP_LENGTH * CONV_STRIDE)))

    def mask_frames(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """Replace the log-Mel of the given encoder frames with the clip's silence level.

        ``frames``: (..., S) boolean, True = mask. Silence is the feature floor that
        Whisper's log-Mel clamps digital silence to (the padding value of the window).
        """
        floor = features.amin(dim=(-2, -1), keepdim=True)
        mel_mask = self.frames_to_input(frames).unsqueeze(-2)  # (..., 1, 2S)
        return torch.where(mel_mask, floor, features)

    # -- model passes -----------------------------------------------------------------
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.model.encoder(features.to(self.device, self.dtype)).last_hidden_state

    def check_language(self, language: str, task: str = "transcribe") -> None:
        """A ValueError in one sentence unless this model can transcribe ``language`` (or translate it)."""
        if task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {task!r}")
        if not self.multilingual:
            if task == "translate" or language not in (None, "en"):
                what = "translate" if task == "translate" else f"transcribe {language!r}"
                raise ValueError(f"{self.name} is English-only and cannot {what}; load a multilingual model "
                                 "such as 'base'")
            return
        if language is not None and language not in self.language_ids:
            raise ValueError(f"unknown language {language!r} for {self.name}; known: "
                             f"{', '.join(sorted(self.language_ids))}")

    def prompt(self, encoded: torch.Tensor, previous=(), timestamps: bool = False, *, language: str | None = None,
               task: str = "transcribe") -> list[int]:
        """The decoder's start: ``<|startofprev|>`` and the previous window's text when ``previous`` is
        given (Whisper's conditioning, at most half the text context), then the start-of-transcript
        sequence (a multilingual model: the language, detected when neither ``language`` nor the model's
        own is set, and the task) and ``<|notimestamps|>`` unless ``timestamps``."""
        start = [self.sot]
        if self.multilingual:
            lang = language or self.language or self.detect_language(encoded)
            self.check_language(lang, task)
            start += [self.language_ids[lang], self.translate if task == "translate" else self.transcribe]
        elif task != "transcribe" or language not in (None, "en"):
            self.check_language(language, task)
        if not timestamps:
            start.append(self.no_timestamps)
        previous = list(previous)[-(self.model.config.max_target_positions // 2 - 1):]
        return ([self.start_of_prev, *previous] if previous and self.start_of_prev is not None else []) + start

    def is_timestamp(self, token_id: int) -> bool:
        return int(token_id) >= self.timestamp_begin

    def encode_text(self, text: str) -> list[int]:
        """The text tokens Whisper writes for ``text`` (a leading space starts the first word)."""
        return self.tokenizer.encode(" " + text.strip(), add_special_tokens=False).ids

    @property
    def max_text_positions(self) -> int:
        return self.model.config.max_target_positions

    @torch.no_grad()
    def language_probs(self, encoded: torch.Tensor) -> dict[str, float] | None:
        """p(language) from the token after <|startoftranscript|>, over the language tokens only
        (openai-whisper's detect_language); None for an English-only model."""
        if not self.multilingual:
            return None
        logits = self._logits(torch.tensor([[self.sot]], device=self.device), encoded[:1])[0][0, -1]
        ids = torch.tensor(list(self.language_ids.values()), device=logits.device)
        probs = torch.softmax(logits[ids], -1).tolist()
        return dict(sorted(zip(self.language_ids, probs), key=lambda kv: -kv[1]))

    def detect_language(self, encoded: torch.Tensor) -> str:
        probs = self.language_probs(encoded)
        return next(iter(probs)) if probs else "en"

    def _logits(self, input_ids, encoded, cache=None, rows=None):
        """Next-token logits at the decoder positions ``rows`` (default: all); the vocabulary projection
        costs more than the decoder itself on a small model, so decoding projects only what it reads."""
        out = self.model.model.decoder(input_ids=input_ids, encoder_hidden_states=encoded,
                                       cache=cache, use_cache=cache is not None)
        hidden = out.last_hidden_state if rows is None else out.last_hidden_state[:, rows]
        return self.model.proj_out(hidden).float(), out.cache

    def _timestamp_rules(self, begin_index: int):
        """transformers' implementation of Whisper's timestamp rules (pairs, never decreasing, the
        first within 1 s, a timestamp whenever their summed probability beats every text token)."""
        from types import SimpleNamespace

        from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

        config = SimpleNamespace(no_timestamps_token_id=self.no_timestamps, eos_token_id=self.eot,
                                 bos_token_id=self.eot, max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX)
        return WhisperTimeStampLogitsProcessor(config, begin_index=begin_index)

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor, *, previous=(), timestamps: bool = False, temperature: float = 0.0,
               generator: torch.Generator | None = None, language: str | None = None,
               task: str = "transcribe") -> Decoded:
        """Decoding of one window with Whisper's token suppression: greedy at ``temperature`` 0, else
        sampled at that temperature (``generator`` makes it repeatable). ``timestamps``: the output
        interleaves timestamp tokens (Whisper's long-form mode); ``previous``: text tokens of the
        previous window, fed after ``<|startofprev|>``; ``language`` / ``task``: see ``prompt``."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        prompt = self.prompt(encoded, previous, timestamps, language=language, task=task)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step_input = torch.tensor([prompt], device=self.device)
        ids, logprobs = [], []
        suppress = torch.tensor(self.suppress_with_timestamps if timestamps else self.suppress, device=self.device)
        suppress_begin = torch.tensor(self.suppress_begin, device=self.device)
        rules = self._timestamp_rules(len(prompt)) if timestamps else None
        no_speech_prob = None
        budget = min(self.max_new_tokens, self.model.config.max_target_positions - len(prompt))
        at_sot = len(prompt) - 1 - prompt[::-1].index(self.sot)
        for step in range(budget):
            # the first step reads the start of transcript (p(no speech)) and the last prompt position only
            logits, cache = self._logits(step_input, encoded, cache, rows=[at_sot, -1] if step == 0 else None)
            if step == 0 and self.no_speech is not None:
                no_speech_prob = float(torch.softmax(logits[0, 0], -1)[self.no_speech])
            logits = logits[0, -1]
            logits[suppress] = -math.inf
            if step == 0:
                logits[suppress_begin] = -math.inf
            if rules is not None:
                logits = rules(torch.tensor([prompt + ids], device=self.device), logits[None])[0]
            logp = torch.log_softmax(logits, dim=-1)
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            else:
                token = int(logp.argmax())
            if token == self.eot:
                end_logprob = float(logp[token])
                break
            ids.append(token)
            logprobs.append(float(logp[token]))
            step_input = torch.tensor([[token]], device=self.device)
        else:
            end_logprob = None
        return Decoded(prompt=prompt, ids=ids, logprobs=logprobs, no_speech_prob=no_speech_prob,
                       temperature=float(temperature), end_logprob=end_logprob)

    @torch.no_grad()
    def decode_batch(self, encoded: torch.Tensor, prompts: list[list[int]], *, timestamps: bool = False) -> list[Decoded]:
        """Greedy decoding of several windows at once (``explain_many`` on a GPU): ``encoded`` (B, S, d), one
        prompt per row, all of one length. Rows are never padded, so each gets the tokens ``decode`` gives it
        alone (``decode(encoded[i:i+1], previous=..., timestamps=...)`` with ``prompts[i]`` as its prompt); a row
        leaves the batch at its end of text."""
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        if len(encoded) != len(prompts) or len({len(p) for p in prompts}) > 1:
            raise ValueError(f"decode_batch needs one prompt per row, all of one length; got {len(prompts)} prompts "
                             f"of lengths {sorted({len(p) for p in prompts})} for {len(encoded)} rows")
        n, length = len(prompts), len(prompts[0])
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step_input = torch.tensor(prompts, device=self.device)
        ids, logprobs, no_speech = [[] for _ in range(n)], [[] for _ in range(n)], [None] * n
        suppress = torch.tensor(self.suppress_with_timestamps if timestamps else self.suppress, device=self.device)
        suppress_begin = torch.tensor(self.suppress_begin, device=self.device)
        rules = self._timestamp_rules(length) if timestamps else None
        at_sot = [length - 1 - p[::-1].index(self.sot) for p in prompts]
        live = list(range(n))  # rows still decoding, in batch order
        for step in range(min(self.max_new_tokens, self.model.config.max_target_positions - length)):
            out = self.model.model.decoder(input_ids=step_input, encoder_hidden_states=encoded, cache=cache,
                                           use_cache=True)
            cache, hidden = out.cache, out.last_hidden_state
            if step == 0:
                rows = torch.arange(n, device=self.device)
                first = self.model.proj_out(torch.stack([hidden[rows, at_sot], hidden[:, -1]], 1)).float()
                if self.no_speech is not None:
                    no_speech = torch.softmax(first[:, 0], -1)[:, self.no_speech].tolist()
                logits = first[:, -1]
            else:
                logits = self.model.proj_out(hidden[:, -1]).float()
            logits[:, suppress] = -math.inf
            if step == 0:
                logits[:, suppress_begin] = -math.inf
            if rules is not None:
                prefixes = torch.tensor([prompts[r] + ids[r] for r in live], device=self.device)
                logits = rules(prefixes, logits)
            logp = torch.log_softmax(logits, dim=-1)
            tokens = logp.argmax(-1)
            token_logp = logp.gather(1, tokens[:, None])[:, 0].tolist()
            keep = []
            for i, (row, token) in enumerate(zip(live, tokens.tolist())):
                if token != self.eot:
                    ids[row].append(token)
                    logprobs[row].append(token_logp[i])
                    keep.append(i)
            if not keep:
                break
            if len(keep) < len(live):  # finished rows leave the batch and its cache
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                encoded, tokens = encoded[index], tokens[index]
                live = [live[i] for i in keep]
            step_input = tokens[:, None]
        return [Decoded(prompt=list(p), ids=i, logprobs=lp, no_speech_prob=ns, temperature=0.0)
                for p, i, lp, ns in zip(prompts, ids, logprobs, no_speech)]

    @contextlib.contextmanager
    def _hooks(self, bypass_layer, reduce_cross, reduce_self, cross_out, self_out):
        handles = []
        layers = self.model.model.decoder.layers
        for l, layer in enumerate(layers):
            def on_cross(module, args, output, l=l):
                attn_out, weights = output  # weights: (1, H, P, S), the tensor the graph uses
                cross_out.append(weights[0] if reduce_cross is None else reduce_cross(l, weights))
                if l == bypass_layer:  # the block adds nothing to the residual stream
                    return torch.zeros_like(attn_out), weights

            def on_self(module, args, output, l=l):
                weights = output[1]
                self_out.append(weights[0] if reduce_self is None else reduce_self(l, weights))

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
        tokens = self.forced_tokens(prompt, ids)
        cross, selfs = [], []
        with self._hooks(bypass_layer, reduce_cross, reduce_self, cross, selfs):
            hidden = self.model.model.decoder(input_ids=tokens, encoder_hidden_states=encoded).last_hidden_state
        grad_mode = torch.is_grad_enabled()  # the log-probs are formed later, in the pass's own grad mode

        def logprobs():
            with torch.set_grad_enabled(grad_mode):
                return self.token_logprobs(hidden, prompt, ids)[0]

        return TeacherPass(cross=cross, self_attn=selfs, logprobs_fn=logprobs)

    def token_logprobs(self, hidden: torch.Tensor, prompt: list[int], ids: list[int]) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) from the decoder's final states (B, >= P - 1, d) -> (B, n_ids)."""
        rows = hidden[:, len(prompt) - 1 : len(prompt) - 1 + len(ids)]
        logits = self.model.proj_out(rows)  # log-softmax in at least float32, in float64 for float64 models
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        target = torch.tensor(ids, device=hidden.device)[None, :, None].expand(len(hidden), -1, 1)
        return logp.gather(-1, target)[..., 0]

    def token_gradients(self, encoded: torch.Tensor, prompt: list[int], ids: list[int]) -> TokenGradients:
        """Per-token gradients with respect to the cross-attention (``whisper_backward``)."""
        return TokenGradients(self.model, encoded, prompt, ids)

    @torch.no_grad()
    def value_norms(self, encoded: torch.Tensor) -> torch.Tensor:
        """||v_s W_o^h|| for every decoder layer, head and frame: (L, H, S).

        The size of what head h of layer l's cross-attention writes from frame s.
        """
        norms = []
        for layer in self.model.model.decoder.layers:
            attn = layer.encoder_attn
            values = attn.v_proj(encoded[0]).view(-1, self.n_heads, attn.head_dim)  # (S, H, dh)
            out_w = attn.out_proj.weight.view(-1, self.n_heads, attn.head_dim)  # (d, H, dh)
            norms.append(torch.einsum("shk,dhk->hsd", values, out_w).norm(dim=-1))  # (H, S)
        return torch.stack(norms).float()

    def score(self, features: torch.Tensor, prompt: list[int], ids: list[int],
              keep_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) for a batch of feature tensors: (B, n_mels, 3000) -> (B, n_ids).

        ``keep_tokens`` (K, n_ids) bool: text tokens whose input embedding is zeroed where False
        (the prefix perturbation of SPES); the prompt and the positions are always kept. One
        feature tensor with K token masks encodes the audio once for all K.
        """
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

    # -- inside the model: lenses and patching (forward hooks) --------------------------
    @property
    def n_encoder_layers(self) -> int:
        return self.model.config.encoder_layers

    @torch.no_grad()
    def decoder_states(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       replace: base.Replacements | None = None) -> base.DecoderStates:
        """Teacher-forced pass over ``prompt + ids`` for each row of ``encoded``, capturing each layer's
        residual and each cross-attention's per-head output (``inside.decoder_capture``), swapping in ``replace``."""
        tokens = self.forced_tokens(prompt, ids, len(encoded))
        decoder = self.model.model.decoder
        return inside.cross_decoder_states(decoder, tokens, encoded, replace,
                                           head_dim=self.model.config.d_model // self.n_heads,
                                           projections=[layer.encoder_attn.out_proj for layer in decoder.layers])

    def lens_logits(self, residual: torch.Tensor) -> torch.Tensor:
        return inside.lens_float(self.model.proj_out(self.model.model.decoder.layer_norm(residual)))

    @torch.no_grad()
    def encoder_states(self, features: torch.Tensor, *, n_frames: int | None = None,
                       replace: base.Replacements | None = None) -> list[torch.Tensor]:
        """Every encoder layer's output (B, n_window_frames, d); ``n_frames`` is ignored (the window is read whole)."""
        outputs = []
        with inside.layer_outputs(self.model.model.encoder.layers, outputs, replace):
            self.model.model.encoder(features.to(self.device, self.dtype))
        return outputs

    def encoder_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.model.encoder.layer_norm(hidden)

    # -- text -------------------------------------------------------------------------
    def token_piece(self, token_id: int) -> str:
        return self.tokenizer.id_to_token(int(token_id)) or ""

    def save_pretrained(self, folder) -> None:
        """A transformers checkpoint (safetensors) with the alignment heads and suppressed tokens."""
        gen = self.model.generation_config
        gen.alignment_heads = [list(h) for h in self.alignment_heads]
        gen.suppress_tokens = [i for i in self.suppress if i <= self.eot]
        gen.begin_suppress_tokens = list(self.suppress_begin)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save(str(Path(folder) / "tokenizer.json"))
