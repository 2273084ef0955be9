"""Voxtral (transformers' ``VoxtralForConditionalGeneration``) behind the seam.

Geometry, all from the checkpoint: a Whisper encoder over ``max_source_positions`` x 2 log-Mel
columns (3000: 30 s), then the projector stacks ``intermediate_size / d_model`` consecutive
encoder frames (4: one audio embedding per 80 ms, 375 per window). VoxtralProcessor pads the
audio to whole 30 s windows and every window's embeddings enter the language model, as here.
The prompt is mistral_common's transcription request
(``<s>[INST][BEGIN_AUDIO][AUDIO]...[/INST]lang:en[TRANSCRIBE]``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .speech_llm import SpeechLLMAdapter, load_speech_llm

TEMPLATE = "<s>[INST][BEGIN_AUDIO]{audio}[/INST]lang:{language}[TRANSCRIBE]"


class VoxtralAdapter(SpeechLLMAdapter):
    """Voxtral: Whisper encoder, frames stacked by 4, a two-layer projector, a Llama LM."""

    def __init__(self, model, tokenizer, *, name: str, template: str = TEMPLATE, language: str | None = None,
                 **kwargs):
        tower = model.model.audio_tower
        cfg = model.config.audio_config
        self._conv_stride = tower.conv1.stride[0] * tower.conv2.stride[0]
        self._stack, rest = divmod(cfg.intermediate_size, cfg.d_model)
        if rest or cfg.max_source_positions % self._stack:
            raise ValueError(f"{name}: the projector's input ({cfg.intermediate_size}) is not a whole number of "
                             f"encoder frames of {cfg.d_model} dividing the window")
        tower.config._attn_implementation = "sdpa"  # the encoder's attention is never captured
        super().__init__(model, tokenizer, name=name, template=template, audio_token_id=model.config.audio_token_id,
                         language=language, **kwargs)

    @property
    def n_mels(self) -> int:
        return self.model.config.audio_config.num_mel_bins

    @property
    def n_window_frames(self) -> int:
        return self.model.config.audio_config.max_source_positions // self._stack

    @property
    def input_frames_per_frame(self) -> int:
        return self._conv_stride * self._stack

    @property
    def encoder_frames_per_frame(self) -> int:
        return self._stack

    def _tower(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """The Whisper encoder over the whole window (Voxtral reads every window's frames)."""
        return self.model.model.audio_tower(features).last_hidden_state  # (B, 1500, d)

    def _encode(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """VoxtralModel.get_audio_features, one window per batch row."""
        return self._stack_and_project(self._tower(features, n_tokens))[:, :n_tokens]

    def _stack_and_project(self, hidden: torch.Tensor) -> torch.Tensor:
        """The tower's normed frames (B, 4k, d) -> k audio embeddings: 4 consecutive frames side by side, projected."""
        stacked = hidden.reshape(len(hidden), -1, self.model.config.audio_config.intermediate_size)
        return self.model.model.multi_modal_projector(stacked)

    def encoder_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """A tower layer's frames (B, 4k, d) -> k audio embeddings: the encoder's final norm, the stacking of
        consecutive frames and the projector, as the model applies them after its last layer."""
        return self._stack_and_project(self.model.model.audio_tower.layer_norm(hidden))


def load_voxtral(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype,
                 language: str | None) -> VoxtralAdapter:
    from transformers import VoxtralForConditionalGeneration

    return load_speech_llm(VoxtralAdapter, VoxtralForConditionalGeneration, folder, name=name,
                           device=device, dtype=dtype, language=language)
