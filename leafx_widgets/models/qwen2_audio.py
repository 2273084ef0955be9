"""Qwen2-Audio (transformers' ``Qwen2AudioForConditionalGeneration``) behind the seam.

Geometry, all from the checkpoint: the encoder reads ``max_source_positions`` x the convolutions'
stride log-Mel columns of 10 ms (3000: 30 s), its convolutions halve the rate and its average
pooler halves it again, so one audio embedding is a 40 ms frame (750 per window). As
Qwen2AudioProcessor does, only the embeddings of the real audio enter the language model (its
``feature_attention_mask``), and the encoder attends to their frames only: the real audio ends
after the last log-Mel column above the window's silence floor, the value the padding takes.
The prompt is Qwen2-Audio's transcription prompt (the base model's
``<|audio_bos|><|AUDIO|><|audio_eos|>Detect the language and recognize the speech: <|en|>``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .speech_llm import SpeechLLMAdapter, load_speech_llm

TEMPLATE = "<|audio_bos|>{audio}<|audio_eos|>Detect the language and recognize the speech: <|{language}|>"


class Qwen2AudioAdapter(SpeechLLMAdapter):
    """Qwen2-Audio: Whisper-style encoder, average pooling by 2, a linear projector, a Qwen2 LM."""

    def __init__(self, model, tokenizer, *, name: str, template: str = TEMPLATE, language: str | None = None,
                 **kwargs):
        tower = model.model.audio_tower
        self._conv_stride = tower.conv1.stride[0] * tower.conv2.stride[0]
        self._pool = tower.avg_pooler.stride[0] if isinstance(tower.avg_pooler.stride, tuple) else tower.avg_pooler.stride
        tower.config._attn_implementation = "sdpa"  # the encoder's attention is never captured
        super().__init__(model, tokenizer, name=name, template=template, audio_token_id=model.config.audio_token_id,
                         language=language, **kwargs)

    @property
    def n_mels(self) -> int:
        return self.model.config.audio_config.num_mel_bins

    @property
    def n_window_frames(self) -> int:
        return self.model.config.audio_config.max_source_positions // self._pool

    @property
    def input_frames_per_frame(self) -> int:
        return self._conv_stride * self._pool

    def check_language(self, language: str | None, task: str = "transcribe") -> None:
        super().check_language(language, task)
        if language is not None and self.tokenizer.convert_tokens_to_ids(f"<|{language}|>") in (
                None, self.tokenizer.unk_token_id):
            raise ValueError(f"unknown language {language!r} for {self.name}: the tokenizer has no <|{language}|>")

    def n_audio_tokens(self, features: torch.Tensor) -> int:
        """Frames up to the last log-Mel column above the silence floor (the processor's
        attention mask ends where the samples end; the padding sits exactly at the floor)."""
        loud = (features[0] > features[0].amin()).any(dim=0)  # (T,)
        columns = int(loud.nonzero().max()) + 1 if loud.any() else 1
        return min(self.n_window_frames, -(-columns // self.input_frames_per_frame))

    @property
    def encoder_frames_per_frame(self) -> int:
        return self._pool

    def _tower(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Qwen2AudioModel's audio tower with an attention mask over the frames of ``n_tokens`` embeddings."""
        from transformers.masking_utils import create_bidirectional_mask

        tower = self.model.model.audio_tower
        n_conv = tower.config.max_source_positions
        mask_2d = (torch.arange(n_conv, device=features.device) < n_tokens * self._pool).long()
        mask_2d = mask_2d[None].expand(len(features), -1)
        dummy = torch.zeros(len(features), n_conv, 1, dtype=features.dtype, device=features.device)
        mask = create_bidirectional_mask(config=tower.config, inputs_embeds=dummy, attention_mask=mask_2d)
        return tower(features, attention_mask=mask).last_hidden_state

    def _encode(self, features: torch.Tensor, n_tokens: int) -> torch.Tensor:
        """Qwen2AudioModel's audio path: the tower (pooled, normed), then the projector."""
        return self.model.model.multi_modal_projector(self._tower(features, n_tokens))[:, :n_tokens]

    def encoder_readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """A tower layer's frames (B, 2k, d) -> k audio embeddings: the tower's average pooling and final
        norm, then the projector, as the model applies them after its last layer."""
        tower = self.model.model.audio_tower
        pooled = tower.avg_pooler(hidden.transpose(1, 2)).transpose(1, 2)
        return self.model.model.multi_modal_projector(tower.layer_norm(pooled))


def load_qwen2_audio(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype,
                     language: str | None) -> Qwen2AudioAdapter:
    from transformers import Qwen2AudioForConditionalGeneration

    return load_speech_llm(Qwen2AudioAdapter, Qwen2AudioForConditionalGeneration, folder, name=name,
                           device=device, dtype=dtype, language=language)
