"""Speed and memory of the LEAF-X ladder on random-initialised models at realistic sizes.

    python -m leafx_widgets.bench.random_model_speed --family whisper --size realistic --device cuda
    python -m leafx_widgets.bench.random_model_speed --family qwen2_audio --size realistic --device cuda
    python -m leafx_widgets.bench.random_model_speed --family voxtral --size tiny   # CPU, seconds

``--size realistic`` builds Whisper-large-v3's (1.55 B parameters), Qwen2-Audio-7B's or
Voxtral-Mini-3B's dimensions in float16 and needs a CUDA device (about 3 / 16 / 9 GB of weights);
``tiny`` is a checkpoint of a few thousand parameters for a CPU. The weights are random, so a forced
transcript (``--tokens`` words) stands in for decoding. Prints a markdown table: seconds for the
forced pass and for every token's map per method, their ratio to the forced pass, and (CUDA) the
peak memory of each. Whisper uses the tokenizer of the bundled tiny.en (or of base, when installed,
whose multilingual vocabulary large-v3 shares but for one language token).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

SIZES = {
    "whisper": {
        "tiny": (dict(num_mel_bins=80, encoder_layers=2, decoder_layers=2, d_model=64, encoder_attention_heads=4,
                      decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128), {}),
        "realistic": (dict(num_mel_bins=128, encoder_layers=32, decoder_layers=32, d_model=1280,
                           encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120,
                           decoder_ffn_dim=5120), {}),
    },
    "qwen2_audio": {
        "tiny": (dict(num_mel_bins=80, max_source_positions=100, encoder_layers=1, encoder_attention_heads=2,
                      encoder_ffn_dim=32, d_model=16),
                 dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, max_position_embeddings=2048)),
        "realistic": (dict(num_mel_bins=128, max_source_positions=1500, encoder_layers=32, encoder_attention_heads=20,
                           encoder_ffn_dim=5120, d_model=1280),
                      dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                           intermediate_size=11008, max_position_embeddings=8192, vocab_size=156032)),
    },
    "voxtral": {
        "tiny": (dict(num_mel_bins=80, max_source_positions=100, num_hidden_layers=1, num_attention_heads=2,
                      hidden_size=16, intermediate_size=64),
                 dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, max_position_embeddings=2048, head_dim=8)),
        "realistic": (dict(num_mel_bins=128, max_source_positions=1500, num_hidden_layers=32, num_attention_heads=20,
                           hidden_size=1280, intermediate_size=5120),
                      dict(hidden_size=3072, num_hidden_layers=30, num_attention_heads=32, num_key_value_heads=8,
                           intermediate_size=8192, max_position_embeddings=8192, head_dim=128, vocab_size=131072)),
    },
}
SPECIAL = {"qwen2_audio": (["<|endoftext|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "<|en|>"], "<|endoftext|>"),
           "voxtral": (["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]", "[TRANSCRIBE]"], "</s>")}
WORDS = "the quick brown fox jumps over the lazy dog while she sells sea shells by the sea shore".split()
METHODS = ("leafx_sf", "raa_last", "base", "grad", "causal")


def tokenizer(family: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special, eos = SPECIAL[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([" ".join(WORDS)], trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos)


def whisper_tokenizer():
    """Base's multilingual tokenizer when the [base] extra is installed, else tiny.en's (bundled)."""
    from tokenizers import Tokenizer

    from ..models import bundled_model_path

    try:
        from ..models.whisper_base import _part_files

        folder = _part_files()[0].parent  # part 1 holds the tokenizer; no need to join the weights
    except ImportError:
        folder = bundled_model_path("tiny.en")
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def build_whisper(size: str, device: torch.device, dtype: torch.dtype):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from ..models.whisper import WhisperAdapter

    tok = whisper_tokenizer()
    config = WhisperConfig(vocab_size=tok.get_vocab_size(), max_source_positions=1500, max_target_positions=448,
                           decoder_start_token_id=tok.token_to_id("<|startoftranscript|>"),
                           eos_token_id=tok.token_to_id("<|endoftext|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
                           **SIZES["whisper"][size][0])
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = WhisperForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return WhisperAdapter(model, tok, name=f"random whisper {size}", language="en")


def build(family: str, size: str, device: torch.device, dtype: torch.dtype):
    """A random model of ``family`` at ``size`` as its adapter, built on ``device`` in ``dtype``."""
    if family == "whisper":
        return build_whisper(size, device, dtype)
    from transformers import (Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, VoxtralConfig,
                              VoxtralForConditionalGeneration)

    from ..models.qwen2_audio import Qwen2AudioAdapter
    from ..models.voxtral import VoxtralAdapter

    tok = tokenizer(family)
    audio, text = SIZES[family][size]
    text = {"vocab_size": len(tok), **text}
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            if family == "qwen2_audio":
                config = Qwen2AudioConfig(audio_config={"model_type": "qwen2_audio_encoder", **audio},
                                          text_config={"model_type": "qwen2", **text},
                                          audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
                config._attn_implementation = "eager"
                return Qwen2AudioAdapter(Qwen2AudioForConditionalGeneration(config).eval(), tok, name=f"random {size}")
            config = VoxtralConfig(audio_config={"model_type": "voxtral_encoder", **audio},
                                   text_config={"model_type": "llama", **text},
                                   audio_token_id=tok.convert_tokens_to_ids("[AUDIO]"))
            config._attn_implementation = "eager"
            return VoxtralAdapter(VoxtralForConditionalGeneration(config).eval(), tok, name=f"random {size}")
    finally:
        torch.set_default_dtype(previous)


def measure(adapter, seconds: float, n_tokens: int) -> list[tuple[str, float, float | None]]:
    import leafx_widgets as lw

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    text = " ".join(WORDS[i % len(WORDS)] for i in range(n_tokens))
    cuda = adapter.device.type == "cuda"
    rows = []

    def timed(label, fn):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        rows.append((label, time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30 if cuda else None))
        return out

    lw.explain(adapter, audio, sample_rate=16000, text=text, precompute=())  # warm-up
    ex = timed("forced pass", lambda: lw.explain(adapter, audio, sample_rate=16000, text=text, precompute=()))
    for method in METHODS:
        timed(method, lambda: [ex.map(t.index, method) for t in ex.tokens])
    rows.append(("tokens", float(len(ex.tokens)), None))
    return rows


def parameters(adapter) -> int:
    return sum(p.numel() for p in adapter.model.parameters())


EXAMPLES = """examples:
  python -m leafx_widgets.bench.random_model_speed --family canary
  python -m leafx_widgets.bench.random_model_speed --family voxtral --size realistic --device cuda"""


def main(argv=None) -> int:
    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.random_model_speed", description=__doc__,
                                     formatter_class=HelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--family", choices=sorted(SIZES), default="qwen2_audio", help="model family")
    parser.add_argument("--size", choices=("tiny", "realistic"), default="tiny",
                        help="tiny (seconds on a CPU) or the released model's sizes (a GPU)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps ...")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"),
                        help="weights' dtype (default: float16 at realistic size, float32 at tiny)")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default: one window)")
    parser.add_argument("--tokens", type=int, default=40, help="words of the forced transcript")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    if device.type == "cuda" and not cuda:
        print("--device cuda: no CUDA device here, so nothing was measured", file=sys.stderr)
        return 2
    if args.size == "realistic" and not cuda and args.dtype != "float32":
        print("--size realistic is meant for a CUDA device in float16 (3-16 GB of weights): no CUDA device was "
              "asked for, so nothing was measured; pass --device cuda on a GPU machine, or --dtype float32 to run "
              "it on the CPU (minutes, twice the memory)", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("float16" if args.size == "realistic" else "float32"))
    adapter = build(args.family, args.size, device, dtype)
    seconds = args.seconds or adapter.window_samples / adapter.sample_rate
    rows = measure(adapter, seconds, args.tokens)
    base = rows[0][1]
    print(f"{args.family} ({args.size}, {parameters(adapter) / 1e6:,.1f} M parameters, {dtype}, {device}), "
          f"{seconds:g} s of audio, {int(rows[-1][1])} forced tokens\n")
    print("| stage | seconds | x forced pass | peak GB |\n|---|---:|---:|---:|")
    for label, secs, peak in rows[:-1]:
        print(f"| {label} | {secs:.3f} | {secs / base:.1f} | {'' if peak is None else f'{peak:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
