"""Decoder-only speech LLMs behind the ``SpeechAdapter`` seam: shared by ``qwen2_audio`` and ``voxtral``.

Such a model encodes a window's log-Mel with a Whisper-like encoder, projects (pools or stacks)
the frames into audio embeddings and splices them into its language model's input at the
audio placeholder tokens of the prompt. There is no cross-attention: the language model's
self-attention from a position to the audio-embedding positions plays its part.

- A pass's sequence is ``prompt + ids``; the prompt holds one placeholder per audio embedding
  (``audio_positions``), so P counts the audio positions too.
- ``TeacherPass.cross[l]`` (H, P, S): layer l's attention probabilities onto the audio keys,
  padded with zero columns to the window's S frames; ``self_attn[l]`` (H, P, P): the same
  attention with the audio columns zeroed. The layer's output is formed from exactly these two
  tensors (``cross @ V_audio + self @ V``), so autograd can take gradients with respect to them
  (``autograd_gradients``) and each audio frame's contribution is its column of ``cross``.
- ``bypass_layer=l``: queries after the audio may not attend to it in layer l (the audio keys are
  masked before the softmax, so that layer reads the text only); the audio positions keep theirs.
- No timestamps, no alignment heads, no value norms: Whisper's DTW timing and the "-vn" variants
  are not offered.
- Inside the model: the logit lens reads the language model's layers through its final norm and
  ``lm_head``; the encoder lens and probes read the audio tower's layers (``encoder_frames_per_frame``
  of them per audio embedding), read out through the rest of the tower and the projector as the model
  applies them; patching restores the language model's residual ("dec.L"), the audio embeddings
  ("encoder", time spans of whole embeddings) and the tower's layers ("enc.L"). There is no
  cross-attention, so no "dec.L.cross" sites.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import base, inside
from .autograd_gradients import TokenGradients
from .base import Decoded, Reduce, SpeechAdapter, TeacherPass

SAMPLE_RATE = 16000
HOP_LENGTH = 160  # the Whisper log-Mel both families read: 10 ms columns
ATTENTION = "leafx_capture"  # the language model's attention implementation (eager maths + capture)


@dataclass
class _Capture:
    """What one layer's attention hands out during a teacher-forced pass."""

    layer: int
    audio: slice  # key positions of the audio embeddings
    n_frames: int  # S: the audio keys are padded with zero columns to this many frames
    bypass: bool
    reduce_cross: Reduce | None
    reduce_self: Reduce | None
    cross: list = field(default_factory=list)
    selfs: list = field(default_factory=list)


def _attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager attention (GQA, additive mask, float32 softmax), which also hands the
    audio and text parts of the probabilities to the capture set on ``module`` during a pass."""
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask[..., : key.shape[-2]]
    cap: _Capture | None = getattr(module, "_leafx_capture", None)
    if cap is not None and cap.bypass:  # later queries may not read the audio in this layer
        blocked = torch.zeros(scores.shape[-2:], dtype=torch.bool, device=scores.device)
        blocked[cap.audio.stop:, cap.audio] = True
        scores = scores.masked_fill(blocked, -math.inf)
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if cap is None:
        return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs
    a, pad = cap.audio, cap.n_frames - (cap.audio.stop - cap.audio.start)
    cross = F.pad(probs[..., a], (0, pad))  # (B, H, P, S)
    audio_keys = torch.zeros(probs.shape[-1], dtype=torch.bool, device=probs.device)
    audio_keys[a] = True
    selfs = probs.masked_fill(audio_keys, 0.0)  # (B, H, P, P)
    cap.cross.append(cross[0] if cap.reduce_cross is None else cap.reduce_cross(cap.layer, cross))
    cap.selfs.append(selfs[0] if cap.reduce_self is None else cap.reduce_self(cap.layer, selfs))
    out = torch.matmul(cross, F.pad(value[..., a, :], (0, 0, 0, pad))) + torch.matmul(selfs, value)
    return out.transpose(1, 2).contiguous(), probs


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["eager"])  # additive float mask


class SpeechLLMAdapter(SpeechAdapter):
    """A decoder-only speech LLM (transformers ``...ForConditionalGeneration`` with ``model.audio_tower``,
    ``model.multi_modal_projector``, ``model.language_model`` and ``lm_head``). A family sets the
    prompt ``template`` ("{audio}" marks the placeholders, "{language}" the language code) and
    implements the geometry and ``_encode``."""

    sample_rate = SAMPLE_RATE
    token_scheme = "byte_bpe"
    default_language = "en"

    def __init__(self, model, tokenizer, *, name: str, template: str, audio_token_id: int,
                 language: str | None = None, max_new_tokens: int = 224, extractor=None):
        self.model = model.eval()
        self.lm = model.model.language_model
        _register_attention()
        self.lm.config._attn_implementation = ATTENTION
        self.tokenizer = tokenizer
        self.name = name
        self.template = template
        self.audio_token = int(audio_token_id)
        self.max_new_tokens = max_new_tokens
        self.stop = self._stop_tokens()
        if not self.stop:
            raise ValueError(f"{name}: the tokenizer and generation config name no end-of-text token")
        self.language = language
        if language is not None:
            self.check_language(language)
        from transformers import WhisperFeatureExtractor

        window_s, rest = divmod(self.window_samples, SAMPLE_RATE)
        if rest:
            raise ValueError(f"{name}: a window of {self.n_window_frames} frames is not a whole number of seconds")
        self._extractor = extractor or WhisperFeatureExtractor(
            feature_size=self.n_mels, sampling_rate=SAMPLE_RATE, hop_length=HOP_LENGTH, chunk_length=window_s)
        if self._extractor.nb_max_frames != self.n_window_frames * self.input_frames_per_frame:
            raise ValueError(f"{name}: the feature extractor makes {self._extractor.nb_max_frames} columns per window; "
                             f"the encoder reads {self.n_window_frames * self.input_frames_per_frame}")

    def _stop_tokens(self) -> list[int]:
        gen = getattr(self.model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        for piece in ("<|im_end|>", "<|endoftext|>", "</s>"):
            i = self.tokenizer.convert_tokens_to_ids(piece)
            if isinstance(i, int) and i != self.tokenizer.unk_token_id and i is not None:
                ids.add(i)
        return sorted(i for i in ids if i is not None)

    # -- geometry (families) -----------------------------------------------------------
    @property
    def window_samples(self) -> int:
        return self.n_window_frames * self.input_frames_per_frame * HOP_LENGTH

    @property
    def frame_s(self) -> float:
        return self.input_frames_per_frame * HOP_LENGTH / SAMPLE_RATE

    @property
    def n_layers(self) -> int:
        return self.lm.config.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.lm.config.num_attention_heads

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def supports(self) -> frozenset[str]:
        # TeacherPass.cross is the self-attention's audio slice; no DTW_TIMING: no heads known to track time
        # no CROSS_HEADS: nothing but self-attention, so no cross-attention heads to patch
        return frozenset({base.CROSS_ATTENTION, base.SELF_ATTENTION, base.BYPASS, base.TOKEN_GRADIENTS,
                          base.INPUT_GRADIENTS, base.PREFIX_MASKING, base.LOGIT_LENS, base.ENCODER_LENS,
                          base.PATCHING})

    @property
    def max_text_positions(self) -> int:
        return int(getattr(self.lm.config, "max_position_embeddings", 4096))

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, layers={self.n_layers}, heads={self.n_heads}, "
                f"frames={self.n_window_frames} x {self.frame_s * 1000:g} ms, device={self.device}, dtype={self.dtype})")

    # -- audio -> frames ---------------------------------------------------------------
    def features(self, audio: np.ndarray) -> torch.Tensor:
        """Whisper log-Mel of one window: (1, n_mels, n_window_frames * input_frames_per_frame), padded."""
        if len(audio) > self.window_samples:
            raise ValueError(f"a window holds at most {self.window_samples / SAMPLE_RATE:g} s; "
                             f"got {len(audio) / SAMPLE_RATE:.1f} s")
        feats = self._extractor(np.asarray(audio, np.float32), sampling_rate=SAMPLE_RATE, return_tensors="np",
                                padding="max_length").input_features
        return torch.from_numpy(feats).to(self.device, self.dtype)

    def valid_frames(self, n_samples: int) -> int:
        per_frame = self.input_frames_per_frame * HOP_LENGTH
        return min(self.n_window_frames, math.ceil(n_samples / per_frame))

    def mask_frames(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """The given frames' log-Mel columns set to the window's silence floor (as Whisper's)."""
        floor = features.amin(dim=(-2, -1), keepdim=True)
        return torch.where(self.frames_to_input(frames).unsqueeze(-2), floor, features)

    def n_audio_tokens(self, features: torch.Tensor) -> int:
        """Audio embeddings the language model reads for this window (default: every frame)."""
        return self.n_window_frames

    @abc.abstractmethod
    def _encode(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """(B, n_mels, T) -> (B, n_tokens, d_lm): the first ``n_tokens`` projected audio embeddings."""

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        features = features.to(self.device, self.dtype)
        return self._encode(features, self.n_audio_tokens(features[:1]))

    def encode_frames(self, features: torch.Tensor, n_frames: int) -> torch.Tensor:
        return self._encode(features.to(self.device, self.dtype), int(n_frames))

    @abc.abstractmethod
    def _tower(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """The audio tower's output for (B, n_mels, T), run as ``_encode`` runs it for ``n_tokens`` embeddings."""

    @property
    def n_encoder_layers(self) -> int:
        return len(self.model.model.audio_tower.layers)

    @torch.no_grad()
    def encoder_states(self, features: torch.Tensor, *, n_frames: int | None = None,
                       replace: base.Replacements | None = None) -> list[torch.Tensor]:
        """Every audio-tower layer's output over the frames of ``n_frames`` embeddings (None: as ``encode``):
        (B, n_frames * encoder_frames_per_frame, d_audio) each."""
        features = features.to(self.device, self.dtype)
        n = self.n_audio_tokens(features[:1]) if n_frames is None else int(n_frames)
        outputs = []
        with inside.layer_outputs(self.model.model.audio_tower.layers, outputs, replace):
            self._tower(features, n)
        return [o[:, : n * self.encoder_frames_per_frame] for o in outputs]

    # -- prompt and positions ----------------------------------------------------------
    def check_language(self, language: str | None, task: str = "transcribe") -> None:
        if task != "transcribe":
            raise ValueError(f"{self.name} can only transcribe, not {task!r}")
        if language is not None and "{language}" not in self.template and language != self.default_language:
            raise ValueError(f"{self.name}'s prompt names no language; it transcribes {self.default_language!r} only")

    def prompt(self, encoded: torch.Tensor, previous=(), timestamps: bool = False, *, language: str | None = None,
               task: str = "transcribe") -> list[int]:
        """The template's tokens with one audio placeholder per audio embedding of ``encoded``."""
        if timestamps:
            raise ValueError(f"{self.name} cannot decode with timestamps")
        lang = language or self.language or self.default_language
        self.check_language(lang, task)
        before, after = self.template.replace("{language}", lang).split("{audio}")
        tok = self.tokenizer
        return (tok.encode(before, add_special_tokens=False) + [self.audio_token] * int(encoded.shape[1])
                + tok.encode(after, add_special_tokens=False))

    def audio_positions(self, prompt, ids=()) -> slice:
        """Where the audio embeddings sit in ``prompt + ids``: the run of placeholder tokens."""
        at = [i for i, t in enumerate(prompt) if t == self.audio_token]
        if not at or at[-1] - at[0] + 1 != len(at):
            raise ValueError("the prompt holds no single run of audio placeholder tokens")
        return slice(at[0], at[-1] + 1)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text.strip(), add_special_tokens=False)

    # -- passes ------------------------------------------------------------------------
    def _embeds(self, tokens: torch.Tensor, audio: torch.Tensor, where: slice,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """(B, P) tokens -> (B, P, d) language-model input with ``audio`` (B, k, d) at ``where``."""
        embeds = self.lm.get_input_embeddings()(tokens)
        if keep is not None:
            embeds = embeds * keep[..., None].to(embeds.dtype)
        return torch.cat([embeds[:, : where.start], audio.to(embeds.dtype), embeds[:, where.stop:]], dim=1)

    def token_logprobs(self, hidden: torch.Tensor, prompt: list[int], ids: list[int]) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) from the final states (B, >= P - 1, d) -> (B, n_ids)."""
        rows = hidden[:, len(prompt) - 1: len(prompt) - 1 + len(ids)]
        logits = self.model.lm_head(rows)
        logp = torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        target = torch.tensor(ids, device=hidden.device)[None, :, None].expand(len(hidden), -1, 1)
        return logp.gather(-1, target)[..., 0]

    def _check_audio(self, encoded: torch.Tensor, where: slice) -> None:
        if encoded.shape[1] != where.stop - where.start:
            raise ValueError(f"the prompt holds {where.stop - where.start} audio placeholders but the window has "
                             f"{encoded.shape[1]} audio embeddings")

    def teacher_forced(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       bypass_layer: int | None = None, reduce_cross: Reduce | None = None,
                       reduce_self: Reduce | None = None) -> TeacherPass:
        """One language-model pass over ``prompt + ids`` (audio spliced in) that captures every layer's
        attention; gradients flow if grad mode is on."""
        if bypass_layer is not None and not 0 <= bypass_layer < self.n_layers:
            raise ValueError(f"bypass_layer must be in [0, {self.n_layers}), got {bypass_layer}")
        where = self.audio_positions(prompt, ids)
        self._check_audio(encoded, where)
        tokens = self.forced_tokens(prompt, ids)
        captures = [_Capture(l, where, self.n_window_frames, l == bypass_layer, reduce_cross, reduce_self)
                    for l in range(self.n_layers)]
        layers = self.lm.layers
        try:
            for layer, cap in zip(layers, captures):
                layer.self_attn._leafx_capture = cap
            hidden = self.lm(inputs_embeds=self._embeds(tokens, encoded[:1], where), use_cache=False).last_hidden_state
        finally:
            for layer in layers:
                layer.self_attn._leafx_capture = None
        grad_mode = torch.is_grad_enabled()

        def logprobs():
            with torch.set_grad_enabled(grad_mode):
                return self.token_logprobs(hidden, prompt, ids)[0]

        return TeacherPass(cross=[c.cross[0] for c in captures], self_attn=[c.selfs[0] for c in captures],
                           logprobs_fn=logprobs)

    def token_gradients(self, encoded: torch.Tensor, prompt: list[int], ids: list[int]) -> TokenGradients:
        """Per-token gradients with respect to the captured attention, by autograd."""
        return TokenGradients(self, encoded, prompt, ids)

    @torch.no_grad()
    def decoder_states(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       replace: base.Replacements | None = None) -> base.DecoderStates:
        """One language-model pass over ``prompt + ids`` per row of ``encoded`` (its audio spliced in), capturing
        every layer's residual at every position (the audio's too) with ``replace[("dec", l)]`` swapped in;
        ``cross`` stays empty: there is no cross-attention."""
        if any(kind != "dec" for kind, _ in (replace or {})):
            raise ValueError(f"{self.name} has no cross-attention: only the residual ('dec', l) can be replaced")
        where = self.audio_positions(prompt, ids)
        self._check_audio(encoded, where)
        tokens = self.forced_tokens(prompt, ids, len(encoded))
        with inside.decoder_capture(self.lm.layers, replace) as states:
            self.lm(inputs_embeds=self._embeds(tokens, encoded, where), use_cache=False)
        return states

    def lens_logits(self, residual: torch.Tensor) -> torch.Tensor:
        """The language model's final norm and ``lm_head``."""
        return inside.lens_float(self.model.lm_head(self.lm.norm(residual)))

    def value_norms(self, encoded: torch.Tensor) -> torch.Tensor:
        raise ValueError(f"{self.name} has no value norms (the '-vn' variants are not offered for it)")

    def score(self, features: torch.Tensor, prompt: list[int], ids: list[int],
              keep_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) for a batch of inputs: (B, n_mels, T) -> (B, n_ids). The prompt
        fixes how many audio embeddings enter; ``keep_tokens`` (K, n_ids) zeroes text-token embeddings."""
        where = self.audio_positions(prompt, ids)
        encoded = self._encode(features.to(self.device, self.dtype), where.stop - where.start)
        keep = None
        if keep_tokens is not None:
            if len(features) == 1 and len(keep_tokens) > 1:
                encoded = encoded.expand(len(keep_tokens), -1, -1)
            keep = base.text_keep_mask(len(encoded), len(prompt), keep_tokens, self.device)
        tokens = self.forced_tokens(prompt, ids, len(encoded))
        hidden = self.lm(inputs_embeds=self._embeds(tokens, encoded, where, keep), use_cache=False).last_hidden_state
        return self.token_logprobs(hidden, prompt, ids)

    @torch.no_grad()
    def decode(self, encoded: torch.Tensor, *, previous=(), timestamps: bool = False, temperature: float = 0.0,
               generator: torch.Generator | None = None, language: str | None = None,
               task: str = "transcribe") -> Decoded:
        """Greedy decoding (sampled at ``temperature`` > 0) until an end-of-text token."""
        from transformers.cache_utils import DynamicCache

        prompt = self.prompt(encoded, previous, timestamps, language=language, task=task)
        where = self.audio_positions(prompt)
        cache = DynamicCache()
        embeds = self._embeds(torch.tensor([prompt], device=self.device), encoded[:1], where)
        ids, logprobs = [], []
        for _ in range(min(self.max_new_tokens, self.max_text_positions - len(prompt))):
            out = self.lm(inputs_embeds=embeds, cache=cache, use_cache=True)
            cache = out.cache
            logits = self.model.lm_head(out.last_hidden_state[0, -1]).float()
            logp = torch.log_softmax(logits, -1)
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
            else:
                token = int(logp.argmax())
            if token in self.stop:
                break
            ids.append(token)
            logprobs.append(float(logp[token]))
            embeds = self.lm.get_input_embeddings()(torch.tensor([[token]], device=self.device))
        return Decoded(prompt=prompt, ids=ids, logprobs=logprobs, temperature=float(temperature))

    # -- text --------------------------------------------------------------------------
    def token_piece(self, token_id: int) -> str:
        return self.tokenizer.convert_ids_to_tokens(int(token_id)) or ""

    def save_pretrained(self, folder) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)


def _tokenizer(folder: Path, auto):
    """The folder's transformers tokenizer. Mistral's checkpoints (Voxtral) ship only ``tekken.json``:
    converted here to a byte-level BPE, always, since AutoTokenizer would hand back mistral_common's
    backend (another API) whenever that package happens to be installed."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").exists() and (folder / "tekken.json").exists():
        from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

        return convert_tekken_tokenizer(str(folder / "tekken.json"))
    return auto.from_pretrained(str(folder), local_files_only=True)


def load_speech_llm(cls: type[SpeechLLMAdapter], model_class: Callable, folder: Path, *, name: str,
                    device: torch.device, dtype: torch.dtype, **kwargs) -> SpeechLLMAdapter:
    """A transformers checkpoint in ``folder`` as ``cls``; the tokenizer from the same folder."""
    from transformers import AutoTokenizer

    try:
        model = model_class.from_pretrained(str(folder), attn_implementation="eager", dtype=dtype,
                                            use_safetensors=True, local_files_only=True)
        tokenizer = _tokenizer(folder, AutoTokenizer)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load {cls.__name__.removesuffix('Adapter')} model {name!r} from {folder}: "
                         f"{str(err).splitlines()[0]}") from None
    return cls(model.to(device), tokenizer, name=name, **kwargs)
