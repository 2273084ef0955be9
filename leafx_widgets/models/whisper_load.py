"""Whisper checkpoints -> ``WhisperAdapter``: transformers folders and CTranslate2 exports."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .whisper import WhisperAdapter


def load_whisper_ct2(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype,
                     language: str | None) -> WhisperAdapter:
    """A CTranslate2 Whisper export (``model.bin``, e.g. from faster-whisper), converted to transformers."""
    from .ctranslate2 import load_ct2_whisper

    model, settings = load_ct2_whisper(folder, device=device, dtype=dtype)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return WhisperAdapter(model, tokenizer, name=name, alignment_heads=settings.get("alignment_heads", []),
                          suppress=settings.get("suppress_ids", []),
                          suppress_begin=settings.get("suppress_ids_begin", []), language=language)


def load_whisper_hf(folder: Path, *, name: str, device: torch.device, dtype: torch.dtype,
                    language: str | None) -> WhisperAdapter:
    """A transformers Whisper checkpoint in ``folder`` (hub ids arrive as their snapshot)."""
    from transformers import WhisperForConditionalGeneration

    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            str(folder), attn_implementation="eager", dtype=dtype, use_safetensors=True, local_files_only=True)
        tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    except (OSError, ValueError) as err:
        from . import DEFAULT_MODEL

        raise ValueError(f"could not load Whisper model {name!r} from {folder}: {str(err).splitlines()[0]}. "
                         f"The bundled model is {DEFAULT_MODEL!r}.") from None
    gen = _generation_settings(folder)
    return WhisperAdapter(model.to(device), tokenizer, name=name,
                          alignment_heads=gen.get("alignment_heads") or [],
                          suppress=gen.get("suppress_tokens") or [],
                          suppress_begin=gen.get("begin_suppress_tokens") or [], language=language)


def _generation_settings(folder: Path) -> dict:
    """generation_config.json as plain JSON (transformers' GenerationConfig drops Whisper's extra keys)."""
    try:
        return json.loads((Path(folder) / "generation_config.json").read_text())
    except (OSError, ValueError):
        return {}
