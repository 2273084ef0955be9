"""Read a CTranslate2 Whisper export (``model.bin``) into a transformers model.

The format (binary version 6, little-endian) is a flat list of named arrays;
``_to_hf_name`` maps each name onto ``WhisperForConditionalGeneration``.
Nothing here unpickles anything: the file is parsed with ``struct`` and numpy.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_SUPPORTED_VERSIONS = (5, 6)
_HEAD_DIM = 64  # every Whisper size uses 64-dimensional attention heads


@dataclass
class CT2Model:
    """The raw content of one ``model.bin``."""

    spec: str
    variables: dict[str, np.ndarray]  # name -> array, int8 weights already dequantised
    aliases: dict[str, str]


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError("model.bin ends early: the file is truncated or not a CTranslate2 model")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def string(self) -> str:
        length = self.take("H")  # includes the trailing NUL
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        return raw.rstrip(b"\0").decode("utf-8")

    def array(self, dtype, count: int) -> np.ndarray:
        if self.pos + count * np.dtype(dtype).itemsize > len(self.data):
            raise ValueError("model.bin ends early: the file is truncated or not a CTranslate2 model")
        arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr


def read_model_bin(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (float32, float16 or int8 weights)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CTranslate2 model.bin at {path}")
    r = _Reader(path.read_bytes())
    version = r.take("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported ({_SUPPORTED_VERSIONS})")
    spec = r.string()
    r.take("I")  # spec revision
    raw: dict[str, np.ndarray] = {}
    for _ in range(r.take("I")):
        name = r.string()
        rank = r.take("B")
        dims = [r.take("I") for _ in range(rank)]
        code = r.take("B")
        n_bytes = r.take("I")
        if code not in _DTYPES:
            raise ValueError(f"{path}: variable {name} has unknown dtype code {code}")
        dtype = np.dtype(_DTYPES[code])
        raw[name] = r.array(dtype, n_bytes // dtype.itemsize).reshape(dims)
    aliases = {}
    for _ in range(r.take("I")):
        alias = r.string()
        aliases[alias] = r.string()
    return CT2Model(spec=spec, variables=_dequantise(raw), aliases=aliases)


def _dequantise(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """int8 exports store ``w_int8`` and a per-row ``weight_scale``: w = w_int8 / scale."""
    out = {}
    for name, arr in raw.items():
        if name.endswith("/weight_scale"):
            continue
        scale = raw.get(name + "_scale") if name.endswith("/weight") else None
        if arr.dtype == np.int8 and scale is not None:
            arr = arr.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (arr.ndim - 1)))
        out[name] = arr
    return out


_LAYER_PARTS = {
    # CTranslate2 sub-name -> (transformers sub-module, how to split a fused matrix)
    "self_attention/linear_0": ("self_attn", ("q_proj", "k_proj", "v_proj")),
    "self_attention/linear_1": ("self_attn", ("out_proj",)),
    "self_attention/layer_norm": ("self_attn_layer_norm", None),
    "attention/linear_0": ("encoder_attn", ("q_proj",)),
    "attention/linear_1": ("encoder_attn", ("k_proj", "v_proj")),
    "attention/linear_2": ("encoder_attn", ("out_proj",)),
    "attention/layer_norm": ("encoder_attn_layer_norm", None),
    "ffn/linear_0": ("fc1", None),
    "ffn/linear_1": ("fc2", None),
    "ffn/layer_norm": ("final_layer_norm", None),
}
# scalar settings stored beside the weights (activation code, head count, ...), not weights
_SPEC_SETTINGS = {"activation", "alibi", "alignment_heads", "alignment_layer", "num_heads",
                  "pre_norm", "scale_embeddings", "start_from_zero_embedding"}
_PARAM = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}


def to_hf_state_dict(ct2: CT2Model) -> dict[str, torch.Tensor]:
    """Map CTranslate2 variable names onto ``WhisperForConditionalGeneration``'s."""
    v = ct2.variables
    sd: dict[str, np.ndarray] = {}
    for name, arr in v.items():
        if name.split("/")[-1] in _SPEC_SETTINGS:
            continue
        if name.startswith("encoder/conv"):
            conv, param = name.split("/")[1:]
            sd[f"model.encoder.{conv}.{_PARAM[param]}"] = arr
        elif name.endswith("position_encodings/encodings"):
            side = name.split("/")[0]
            sd[f"model.{side}.embed_positions.weight"] = arr
        elif re.fullmatch(r"(encoder|decoder)/layer_norm/(gamma|beta)", name):
            side, _, param = name.split("/")
            sd[f"model.{side}.layer_norm.{_PARAM[param]}"] = arr
        elif name == "decoder/embeddings/weight":
            sd["model.decoder.embed_tokens.weight"] = arr
        elif m := re.fullmatch(r"(encoder|decoder)/layer_(\d+)/(.+)/(weight|bias|gamma|beta)", name):
            side, idx, part, param = m.groups()
            if part not in _LAYER_PARTS:
                raise ValueError(f"unexpected CTranslate2 variable {name}")
            module, split = _LAYER_PARTS[part]
            prefix = f"model.{side}.layers.{idx}"
            if split is None:
                sd[f"{prefix}.{module}.{_PARAM[param]}"] = arr
            else:
                for sub, chunk in zip(split, np.split(arr, len(split), axis=0)):
                    if sub == "k_proj" and param == "bias":
                        continue  # Whisper's k_proj has no bias (the fused slice is zero)
                    sd[f"{prefix}.{module}.{sub}.{_PARAM[param]}"] = chunk
        elif name == "decoder/projection/weight":
            continue  # tied to the token embeddings
        else:
            raise ValueError(f"unexpected CTranslate2 variable {name}")
    # the output projection shares the embedding matrix (alias decoder/projection/weight)
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    return {k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in sd.items()}


@dataclass
class WhisperDims:
    n_mels: int
    d_model: int
    n_heads: int
    n_encoder_layers: int
    n_decoder_layers: int
    n_vocab: int
    n_audio_ctx: int
    n_text_ctx: int


def dims_from_variables(v: dict[str, np.ndarray]) -> WhisperDims:
    d_model, n_mels = v["encoder/conv1/weight"].shape[:2]

    def count(side):
        return 1 + max(int(m.group(1)) for n in v if (m := re.match(rf"{side}/layer_(\d+)/", n)))

    return WhisperDims(
        n_mels=int(n_mels), d_model=int(d_model),
        n_heads=int(v["encoder/num_heads"]) if "encoder/num_heads" in v else int(d_model) // _HEAD_DIM,
        n_encoder_layers=count("encoder"), n_decoder_layers=count("decoder"),
        n_vocab=int(v["decoder/embeddings/weight"].shape[0]),
        n_audio_ctx=int(v["encoder/position_encodings/encodings"].shape[0]),
        n_text_ctx=int(v["decoder/position_encodings/encodings"].shape[0]),
    )


def load_ct2_whisper(folder: str | Path, *, device="cpu", dtype=torch.float32):
    """Build ``WhisperForConditionalGeneration`` (eager attention) from a CTranslate2 folder.

    Returns ``(model, config_json)`` where ``config_json`` is the folder's decoding
    settings (alignment heads, suppressed tokens, language ids).
    """
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = Path(folder)
    ct2 = read_model_bin(folder / "model.bin")
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"{folder}/model.bin holds a {ct2.spec}, not a Whisper model")
    dims = dims_from_variables(ct2.variables)
    settings = json.loads((folder / "config.json").read_text()) if (folder / "config.json").exists() else {}
    config = WhisperConfig(
        vocab_size=dims.n_vocab, num_mel_bins=dims.n_mels, d_model=dims.d_model,
        encoder_layers=dims.n_encoder_layers, decoder_layers=dims.n_decoder_layers,
        encoder_attention_heads=dims.n_heads, decoder_attention_heads=dims.n_heads,
        encoder_ffn_dim=4 * dims.d_model, decoder_ffn_dim=4 * dims.d_model,
        max_source_positions=dims.n_audio_ctx, max_target_positions=dims.n_text_ctx,
        # special ids are set from the tokenizer by the adapter; these only keep the config valid
        suppress_tokens=settings.get("suppress_ids", []),
        begin_suppress_tokens=settings.get("suppress_ids_begin", []),
        attn_implementation="eager",
    )
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = to_hf_state_dict(ct2)
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    model.config._attn_implementation = "eager"
    return model.to(device=device, dtype=dtype).eval(), settings
