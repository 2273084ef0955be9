"""The seam between the package and a speech model: everything outside ``models/`` calls only this.

``SpeechAdapter`` names what ``explain``, the methods, the widget and the bench use:
frame geometry, token pieces to text and words, frame masking, the model passes and
the capabilities a model has (``supports``). Whisper implements it in ``whisper.py``;
another family (a CTC encoder, a speech LLM reading audio pseudo-tokens) is one more
adapter registered in ``models.ADAPTERS``, without touching ``leafx.py`` or ``explanation.py``.
"""
from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

import numpy as np
import torch

from .. import words as _words


@dataclass
class Decoded:
    """Greedy decoding of one window."""

    prompt: list[int]  # special tokens fed before the text (start of transcript, language, task, ...)
    ids: list[int]  # text tokens only, end-of-text excluded
    logprobs: list[float]  # log p(ids[i] | prefix, audio)
    no_speech_prob: float | None = None  # p(<|nospeech|>) at the start of transcript, when the model has it
    temperature: float = 0.0  # 0: greedy; else sampled at this temperature (a fallback)
    end_logprob: float | None = None  # log p(end of text) where decoding stopped (None: the length budget)


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


def text_keep_mask(n_rows: int, n_prompt: int, keep_tokens: torch.Tensor, device) -> torch.Tensor:
    """(n_rows, n_prompt + n_ids) bool for ``score(keep_tokens=...)``: the prompt always kept, the text
    tokens as ``keep_tokens`` (K, n_ids) says (the prefix perturbation of SPES)."""
    keep = torch.ones(n_rows, n_prompt + keep_tokens.shape[-1], dtype=torch.bool, device=device)
    keep[:, n_prompt:] = keep_tokens.to(device)
    return keep


# capability names an adapter lists in ``supports`` and a method can require
CROSS_ATTENTION = "cross_attention"  # TeacherPass.cross: decoder attention over the audio frames
SELF_ATTENTION = "self_attention"  # TeacherPass.self_attn: causal attention over the text positions
BYPASS = "bypass"  # teacher_forced(bypass_layer=l) removes layer l's audio attention
TOKEN_GRADIENTS = "token_gradients"  # token_gradients(): d log p / d attention for many tokens at once
VALUE_NORMS = "value_norms"  # value_norms(): size of what each head writes from each frame
ALIGNMENT_HEADS = "alignment_heads"  # the checkpoint names heads that track timing
INPUT_GRADIENTS = "input_gradients"  # score() is differentiable in the input features
PREFIX_MASKING = "prefix_masking"  # score(keep_tokens=...) zeroes text-token embeddings
TIMESTAMPS = "timestamps"  # decode(timestamps=True, previous=...): Whisper's long-form decoding
DTW_TIMING = "dtw_timing"  # cross-attention heads that track time monotonically: Whisper's DTW word timing
LOGIT_LENS = "logit_lens"  # decoder_states() + lens_logits(): every decoder layer read through the output head
ENCODER_LENS = "encoder_lens"  # encoder_states() + encoder_readout(): every encoder layer's output, decodable
PATCHING = "patching"  # decoder_states(replace=...) and encoder_states(replace=...): activation patching
# DecoderStates.cross: each cross-attention head's output, patchable ("dec.L.cross.H"); a decoder-only
# speech LLM has no cross-attention (TeacherPass.cross is its self-attention onto the audio)
CROSS_HEADS = "cross_heads"
CAPABILITIES = frozenset({CROSS_ATTENTION, SELF_ATTENTION, BYPASS, TOKEN_GRADIENTS, VALUE_NORMS,
                          ALIGNMENT_HEADS, INPUT_GRADIENTS, PREFIX_MASKING, TIMESTAMPS, DTW_TIMING,
                          LOGIT_LENS, ENCODER_LENS, PATCHING, CROSS_HEADS})


@dataclass
class DecoderStates:
    """What one teacher-forced decoder pass over ``prompt + ids`` wrote, for each of B rows.

    ``residual[l]``: (B, P, d) the residual stream after decoder layer l (before the final norm).
    ``cross[l]``: (B, P, H * dh) what layer l's cross-attention heads computed, before the output
    projection (head h is the slice ``h * dh : (h + 1) * dh``), so that restoring every head's slice
    restores the whole block exactly. Empty for a model without cross-attention (no ``"cross_heads"``).
    """

    residual: list[torch.Tensor]
    cross: list[torch.Tensor]


# activation replacements for decoder_states(replace=...): {("dec", l) or ("cross", l): (mask, values)}.
# ("dec", l): mask (B,) bool rows whose residual after layer l becomes ``values`` (1 | B, P, d);
# ("cross", l): mask (B, H) bool heads whose cross-attention output becomes theirs in ``values`` (1 | B, P, H*dh).
# encoder_states(replace=...): {l: (mask (B, S) bool frames, values (1 | B, S, d))} after encoder layer l,
# S the layer's frames (``encoder_frames_per_frame`` per attended frame).
Replacements = dict


class SpeechAdapter(abc.ABC):
    """One speech-to-text model behind the calls the package makes.

    Geometry. The model reads audio at ``sample_rate`` in windows of ``window_samples``;
    a window's input features are ``(1, n_mels, n_window_frames * input_frames_per_frame)``
    (Whisper: 80 or 128 log-Mel bins x 3000 columns of 10 ms) and the text decoder attends
    to ``n_window_frames`` frames of ``frame_s`` seconds (Whisper: 1500 of 20 ms). Every map
    is over these frames; ``input_frames_per_frame`` input columns make one frame.

    Text. A token is a subword piece; ``token_bytes`` is what it adds to the text (UTF-8,
    a leading space at a word start), decoded by ``token_scheme`` (``words.PIECE_DECODERS``).
    """

    name: str
    token_scheme: ClassVar[str] = "byte_bpe"  # how pieces spell bytes: "byte_bpe" | "sentencepiece"

    # -- geometry ----------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def sample_rate(self) -> int:
        """Audio samples per second the model expects (``explain`` resamples to it)."""

    @property
    @abc.abstractmethod
    def frame_s(self) -> float:
        """Seconds of audio per attended (encoder) frame: the time step of every map."""

    @property
    @abc.abstractmethod
    def input_frames_per_frame(self) -> int:
        """Input feature columns per attended frame (Whisper: 2 log-Mel columns per encoder frame)."""

    @property
    @abc.abstractmethod
    def n_window_frames(self) -> int:
        """Attended frames per decoding window, padding included."""

    @property
    @abc.abstractmethod
    def window_samples(self) -> int:
        """Audio samples per decoding window; longer audio is explained window by window."""

    @property
    @abc.abstractmethod
    def n_mels(self) -> int:
        """Rows of the input features (mel bins)."""

    @property
    @abc.abstractmethod
    def n_layers(self) -> int:
        """Decoder layers whose attention is captured."""

    @property
    @abc.abstractmethod
    def n_heads(self) -> int:
        """Attention heads per decoder layer."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype: ...

    @property
    def supports(self) -> frozenset[str]:
        """Capability names (``CAPABILITIES``) this model offers; a method checks its needs against them."""
        return frozenset()

    @property
    def alignment_heads(self) -> list[tuple[int, int]]:
        """(layer, head) pairs the checkpoint marks as tracking timing; empty when it has none."""
        return []

    @property
    def timing_heads(self) -> list[tuple[int, int]]:
        """The heads timing methods read: ``alignment_heads``, else every head of the upper half of
        the decoder (openai-whisper's choice for a checkpoint without them)."""
        return list(self.alignment_heads) or [(l, h) for l in range(self.n_layers // 2, self.n_layers)
                                              for h in range(self.n_heads)]

    @abc.abstractmethod
    def valid_frames(self, n_samples: int) -> int:
        """Frames of a window that hold real audio when it has ``n_samples`` samples (the rest is padding)."""

    def frames_to_input(self, frames: torch.Tensor) -> torch.Tensor:
        """(..., S) per attended frame -> (..., S * input_frames_per_frame) per input column."""
        return frames.repeat_interleave(self.input_frames_per_frame, dim=-1)

    def input_to_frames(self, columns: torch.Tensor) -> torch.Tensor:
        """(..., S * input_frames_per_frame) per input column -> (..., S), summed per attended frame."""
        return columns.reshape(*columns.shape[:-1], -1, self.input_frames_per_frame).sum(-1)

    @abc.abstractmethod
    def mask_frames(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """``features`` (B, n_mels, T) with the frames where ``frames`` (..., S) is True replaced by
        silence: the one masking convention of the perturbation methods and the bench."""

    # -- positions in the decoder ------------------------------------------------------
    def query_rows(self, prompt: Sequence[int], positions: Sequence[int]) -> list[int]:
        """Decoder positions whose output predicts text token ``ids[p]`` for each p (next-token)."""
        return [len(prompt) - 1 + int(p) for p in positions]

    def audio_positions(self, prompt: Sequence[int], ids: Sequence[int]) -> slice:
        """Which keys of ``TeacherPass.cross`` are the window's audio frames.

        An encoder-decoder attends to the frames through cross-attention, so every key (this
        default); a decoder-only model reading audio pseudo-tokens returns their slice."""
        return slice(0, self.n_window_frames)

    # -- passes ------------------------------------------------------------------------
    @abc.abstractmethod
    def features(self, audio: np.ndarray) -> torch.Tensor:
        """One window of at most ``window_samples`` samples -> (1, n_mels, T) input, padded."""

    @abc.abstractmethod
    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) -> (B, S, d) what the decoder attends to."""

    @abc.abstractmethod
    def decode(self, encoded: torch.Tensor, *, previous=(), timestamps: bool = False, temperature: float = 0.0,
               generator: torch.Generator | None = None, language: str | None = None,
               task: str = "transcribe") -> Decoded:
        """Decoding of one window: greedy, or sampled at ``temperature``. A model with ``"timestamps"``
        also takes ``timestamps=True`` (timestamp tokens interleaved) and ``previous`` (text to condition on);
        a multilingual one ``language`` (None: detected) and ``task`` ("transcribe" or "translate")."""

    def language_probs(self, encoded: torch.Tensor) -> dict[str, float] | None:
        """p(language) for a multilingual model (most likely first); None for a single-language one."""
        return None

    def check_language(self, language: str | None, task: str = "transcribe") -> None:
        """A ValueError unless the model can ``task`` ("transcribe" / "translate") ``language``."""
        if task != "transcribe":
            raise ValueError(f"{self.name} can only transcribe, not {task!r}")

    @abc.abstractmethod
    def encode_text(self, text: str) -> list[int]:
        """The text tokens of a transcript as the model would write it (for forced transcripts)."""

    @property
    def max_text_positions(self) -> int:
        """Prompt and text tokens the decoder reads at most in one window."""
        return 448

    def is_timestamp(self, token_id: int) -> bool:
        """True for a timestamp token (never a text token; needs ``"timestamps"``)."""
        return False

    def forced_tokens(self, prompt: Sequence[int], ids: Sequence[int], rows: int = 1) -> torch.Tensor:
        """``prompt + ids`` as the (rows, P) token tensor a teacher-forced pass reads, one row per ``encoded`` row."""
        return torch.tensor([list(prompt) + list(ids)], device=self.device).expand(rows, -1)

    @abc.abstractmethod
    def teacher_forced(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       bypass_layer: int | None = None, reduce_cross: Reduce | None = None,
                       reduce_self: Reduce | None = None) -> TeacherPass:
        """One decoder pass over ``prompt + ids`` that captures attention (``TeacherPass``);
        ``bypass_layer``: that layer's audio attention adds nothing (needs ``"bypass"``)."""

    @abc.abstractmethod
    def token_gradients(self, encoded: torch.Tensor, prompt: list[int], ids: list[int]):
        """Per-token d log p / d attention: an object with ``.attention(layer) -> (cross, self)``
        probabilities and ``.attention_grads(targets, lowest, self_attention)`` yielding
        ``(layer, "cross" | "self", (H, C, n, S | n))`` (needs ``"token_gradients"``)."""

    @abc.abstractmethod
    def score(self, features: torch.Tensor, prompt: list[int], ids: list[int],
              keep_tokens: torch.Tensor | None = None) -> torch.Tensor:
        """log p(ids[i] | prefix, audio) for a batch of inputs: (B, n_mels, T) -> (B, n_ids)."""

    @abc.abstractmethod
    def value_norms(self, encoded: torch.Tensor) -> torch.Tensor:
        """(L, H, S) size of what each decoder head writes from each frame (needs ``"value_norms"``)."""

    # -- inside the model (logit lens, encoder lens, activation patching) ----------------
    @property
    def n_encoder_layers(self) -> int:
        """Encoder layers whose outputs ``encoder_states`` returns (needs ``"encoder_lens"``)."""
        raise ValueError(f"{self.name} does not expose its encoder layers")

    @property
    def encoder_frames_per_frame(self) -> int:
        """Encoder-layer frames per attended frame: 1 when the decoder attends to the encoder's own frames
        (Whisper, Canary); a speech LLM pools (Qwen2-Audio: 2) or stacks (Voxtral: 4) them into one embedding."""
        return 1

    def encode_frames(self, features: torch.Tensor, n_frames: int) -> torch.Tensor:
        """``encode`` with ``n_frames`` attended frames: a model that reads only the real audio's frames
        (Qwen2-Audio) is told how many, so a corrupted input lines up with the clean one; one that reads
        the whole window ignores it."""
        return self.encode(features)

    def decoder_states(self, encoded: torch.Tensor, prompt: list[int], ids: list[int], *,
                       replace: Replacements | None = None) -> DecoderStates:
        """One teacher-forced pass over ``prompt + ids`` for each row of ``encoded`` (B, S, d), returning
        every layer's residual and cross-attention output (``DecoderStates``), with the activations named
        in ``replace`` swapped in as the pass runs (needs ``"logit_lens"``; ``replace``: ``"patching"``)."""
        raise ValueError(f"{self.name} does not expose its decoder layers (no logit lens or patching)")

    def lens_logits(self, residual: torch.Tensor) -> torch.Tensor:
        """Residual (..., d) -> next-token logits (..., vocab), in at least float32: the decoder's final norm and output
        projection. On the last layer's residual this is the model's own output."""
        raise ValueError(f"{self.name} does not expose its output head (no logit lens)")

    def encoder_states(self, features: torch.Tensor, *, n_frames: int | None = None,
                       replace: Replacements | None = None) -> list[torch.Tensor]:
        """(B, n_mels, T) -> every encoder layer's output (B, S, d) before the final norm, with ``replace``
        swapped in after the named layers (needs ``"encoder_lens"``). S is ``encoder_frames_per_frame`` x the
        attended frames: ``n_frames`` of them as ``encode_frames`` (None: as ``encode``) for a model that reads
        only the real audio, the whole window for the others."""
        raise ValueError(f"{self.name} does not expose its encoder layers (no encoder lens or probes)")

    def encoder_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """An encoder layer's output (B, S, d) -> what the decoder attends to (Whisper: the encoder's final
        norm; a speech LLM: its pooling, norm and projector); ``encoder_readout(encoder_states(f)[-1])``
        equals ``encode(f)``."""
        raise ValueError(f"{self.name} does not expose its encoder layers (no encoder lens)")

    # -- text --------------------------------------------------------------------------
    @abc.abstractmethod
    def token_piece(self, token_id: int) -> str:
        """The vocabulary's spelling of a token (``"Ġhello"``, ``"▁hello"``); "" when unknown."""

    def token_bytes(self, token_id: int) -> bytes:
        """The UTF-8 bytes the token adds to the text (a word start begins with a space)."""
        return _words.piece_decoder(self.token_scheme)(self.token_piece(token_id))

    def token_text(self, token_id: int) -> str:
        return self.token_bytes(token_id).decode("utf-8", errors="replace")

    def text(self, ids: Sequence[int]) -> str:
        """The text of consecutive tokens (bytes joined first: a character may span tokens)."""
        return _words.join_text([self.token_bytes(i) for i in ids])

    def words(self, ids: Sequence[int]) -> list[list[int]]:
        """One window's text tokens grouped into words: lists of positions in ``ids``."""
        return _words.group_words([self.token_bytes(i) for i in ids])

    def save_pretrained(self, folder) -> None:
        """Write the model so that ``load_model(folder)`` reads it back."""
        raise ValueError(f"{type(self).__name__} cannot be saved as a checkpoint")
