"""Loading Whisper: the bundled CTranslate2 tiny.en, other CTranslate2 dtypes, transformers folders."""
import struct

import numpy as np
import pytest
import torch

import leafx_widgets as lw
from leafx_widgets.models import bundled_model_path, save_pretrained
from leafx_widgets.models.ctranslate2 import read_model_bin

DASHWOOD = "And Mr. John Dashwood had then leisure to consider how much there might be prudently in his power to do for them."
# LibriVox reference transcripts (pocketsphinx-testdata), as Whisper tiny.en writes them
LIBRIVOX_TEXT = {
    "0870": DASHWOOD,
    "0890": "Unless to be rather cold-hearted and rather selfish is to be ill-disposed.",
    "0920": "Had he married a more amiable woman, he might have been made still more respectable than he was.",
    "0930": "He might even have been made amiable himself.",
}


def transcribe(model, path):
    audio = lw.load_audio(path).samples
    encoded = model.encode(model.features(audio))
    return model.text(model.decode(encoded).ids)


def test_bundled_model_dimensions(model):
    assert model.n_layers == 4 and model.n_heads == 6 and model.n_window_frames == 1500
    assert model.frame_s == pytest.approx(0.02) and model.sample_rate == 16000
    assert not model.multilingual and model.alignment_heads[0] == (1, 0)
    assert model.model.config._attn_implementation == "eager"


def test_real_speech_decodes_exactly(model, librivox_paths):
    for path in librivox_paths:
        key = path.rsplit("-", 1)[-1][:4]
        if key in LIBRIVOX_TEXT:
            assert transcribe(model, path) == LIBRIVOX_TEXT[key]


def test_teacher_forcing_reproduces_greedy_choices(model):
    audio = lw.load_audio(lw.sample_path()).samples
    encoded = model.encode(model.features(audio))
    decoded = model.decode(encoded)
    with torch.no_grad():
        tp = model.teacher_forced(encoded, decoded.prompt, decoded.ids)
    assert tp.logprobs.shape == (len(decoded.ids),)
    positions = len(decoded.prompt) + len(decoded.ids)
    assert len(tp.cross) == model.n_layers and tp.cross[0].shape == (model.n_heads, positions, 1500)
    assert torch.allclose(tp.cross[2].sum(-1), torch.ones(model.n_heads, positions), atol=1e-4)
    # decoding renormalises after suppressing special tokens, so its log-probs are slightly higher
    assert np.all(np.asarray(decoded.logprobs) >= tp.logprobs.numpy() - 1e-4)
    with torch.no_grad():
        bypassed = model.teacher_forced(encoded, decoded.prompt, decoded.ids, bypass_layer=3)
    assert bypassed.logprobs.sum() < tp.logprobs.sum() - 1.0  # without its audio attention the model is lost
    with pytest.raises(ValueError, match="bypass_layer"):
        model.teacher_forced(encoded, decoded.prompt, decoded.ids, bypass_layer=4)


def _write_model_bin(path, variables, aliases, dtype_code):
    """Serialise variables in CTranslate2's binary format (version 6), as the converter does."""
    def string(s):
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", 6), string("WhisperSpec"), struct.pack("<I", 3)]
    body = []
    for name, arr in variables.items():
        arr = np.asarray(arr)
        code = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3, np.dtype(np.float16): 4}[arr.dtype]
        if dtype_code == 1 and arr.ndim == 2 and name.endswith("/weight") and "embeddings" not in name:
            scale = 127.0 / np.maximum(np.abs(arr).max(axis=1), 1e-8)
            body.append((name, np.round(arr * scale[:, None]).astype(np.int8), 1))
            body.append((name + "_scale", scale.astype(np.float32), 0))
            continue
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32 if dtype_code in (0, 1) else np.float16)
            code = 0 if arr.dtype == np.float32 else 4
        body.append((name, arr, code))
    out.append(struct.pack("<I", len(body)))
    for name, arr, code in body:
        out += [string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<B", code), struct.pack("<I", arr.nbytes), arr.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    path.write_bytes(b"".join(out))


@pytest.mark.parametrize("dtype_code, label", [(0, "float32"), (1, "int8")])
def test_other_ctranslate2_exports_load(tmp_path, dtype_code, label):
    src = bundled_model_path()
    ct2 = read_model_bin(src / "model.bin")
    folder = tmp_path / label
    folder.mkdir()
    _write_model_bin(folder / "model.bin", ct2.variables, ct2.aliases, dtype_code)
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((src / name).read_bytes())
    reread = read_model_bin(folder / "model.bin")
    w = "decoder/layer_0/ffn/linear_0/weight"
    tol = 1e-6 if label == "float32" else 0.02 * np.abs(ct2.variables[w]).max()
    assert np.abs(reread.variables[w].astype(np.float32) - ct2.variables[w].astype(np.float32)).max() <= tol
    model = lw.load_model(folder)
    assert transcribe(model, lw.sample_path()) == DASHWOOD


def test_truncated_model_bin_is_a_clear_error(tmp_path):
    data = (bundled_model_path() / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:5000])
    with pytest.raises(ValueError, match="truncated"):
        read_model_bin(tmp_path / "model.bin")


def test_transformers_folder_round_trip(model, tmp_path):
    """The from_pretrained path, on a folder saved from the converted tiny.en (safetensors, no pickle)."""
    folder = save_pretrained(model, tmp_path / "tiny-hf")
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    reloaded = lw.load_model(folder)
    assert reloaded.alignment_heads == model.alignment_heads
    assert reloaded.model.config._attn_implementation == "eager"
    assert transcribe(reloaded, lw.sample_path()) == DASHWOOD


def test_device_and_dtype_are_honoured():
    half = lw.load_model("tiny.en", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.device.type == "cpu"
    assert "Dashwood" in transcribe(half, lw.sample_path())
    with pytest.raises(TypeError, match="dtype"):
        lw.load_model("tiny.en", dtype="float16")


@pytest.mark.parametrize("name, error, message", [
    ("no-such-org/not-a-whisper-model", ValueError, "cannot reach the Hugging Face hub .* not in the local cache"),
    ("./missing-folder", FileNotFoundError, "does not exist"),
    ("large-v3", ValueError, "unknown model 'large-v3'"),
    # openai-whisper's names with a dot are names, not folders: the hub id to use is suggested
    ("small.en", ValueError, r"unknown model 'small.en': use a bundled one \(tiny.en, base\).*'openai/whisper-small.en'"),
    ("models/tiny/v2", FileNotFoundError, "model folder 'models/tiny/v2' does not exist"),
])
def test_unknown_model_names(name, error, message, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # a closed port: the hub is unreachable
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # and nothing is cached
    with pytest.raises(error, match=message):
        lw.load_model(name)


def test_folder_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="neither"):
        lw.load_model(tmp_path)



def check_token_gradients(adapter, audio, targets):
    """The hand-written batched backward (whisper_backward) against autograd, token by token,
    for the cross- and the self-attention probabilities of every layer."""
    ex = lw.explain(adapter, audio)
    w = ex.windows[0]
    targets = [t % len(w.ids) for t in targets]
    grads = adapter.token_gradients(w.encoded, w.prompt, w.ids)
    with torch.enable_grad():
        kept = {"cross": [], "self": []}
        tp = adapter.teacher_forced(w.encoded, w.prompt, w.ids,
                                    reduce_cross=lambda l, a: kept["cross"].append(a) or a[0],
                                    reduce_self=lambda l, a: kept["self"].append(a) or a[0])
        inputs = kept["cross"] + kept["self"]
        by_autograd = [torch.autograd.grad(tp.logprobs[t], inputs, retain_graph=True) for t in targets]
    n_pos = len(w.prompt) + len(w.ids) - 1
    # float64 differs only by summation order (~1e-14 measured): a dtype slip anywhere shows up
    exact = tp.cross[0].dtype == torch.float64
    for layer in range(adapter.n_layers):  # the trace's forward pass is the model's own
        cross, selfs = grads.attention(layer)
        assert torch.allclose(cross, tp.cross[layer][:, :n_pos].detach(), atol=1e-10 if exact else 1e-5)
        assert torch.allclose(selfs, tp.self_attn[layer][:, :n_pos, :n_pos].detach(),
                              atol=1e-10 if exact else 1e-5)
    got = {(layer, kind): d for layer, kind, d in grads.attention_grads(targets, self_attention=True)}
    assert sorted(got) == sorted((l, k) for l in range(adapter.n_layers) for k in ("cross", "self"))
    for i, t in enumerate(targets):
        row = len(w.prompt) - 1 + t
        for (layer, kind), d_attn in got.items():
            ref = by_autograd[i][layer + (adapter.n_layers if kind == "self" else 0)][0]  # (H, P, S or P)
            assert d_attn.shape[:2] == (adapter.n_heads, len(targets))
            ref = ref[:, : d_attn.shape[2], : d_attn.shape[3]]
            scale = ref.abs().max()
            assert scale > 0
            tol = (1e-9 if exact else 1e-4) * scale
            assert torch.allclose(d_attn[:, i, : row + 1], ref[:, : row + 1], atol=tol)
            assert not d_attn[:, i, row + 1:].any() and not ref[:, row + 1:].any()  # causal: nothing later


def test_batched_token_gradients_equal_autograd():
    # float64: in float32 the two summation orders differ by ~1.3e-4 of the largest gradient on some
    # CPUs (seen on 2026-11-30), which would hide a real error of that size; in float64 they agree to
    # ~1e-13 of it, as long as no step (e.g. the vocabulary softmax) drops to float32
    check_token_gradients(lw.load_model("tiny.en", dtype=torch.float64), lw.sample_path(), [0, 5, -1])


def random_whisper(folder, model, *, d_model, encoder_layers, decoder_layers, heads, ffn_dim, source_positions,
                   target_positions, n_mels=128):
    """A random-initialised Whisper checkpoint (tiny.en's tokenizer) in ``folder``, for geometry tests."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=model.model.config.vocab_size, num_mel_bins=n_mels, d_model=d_model,
                           encoder_layers=encoder_layers, decoder_layers=decoder_layers,
                           encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn_dim,
                           decoder_ffn_dim=ffn_dim, max_source_positions=source_positions,
                           max_target_positions=target_positions)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    model.tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def test_other_model_sizes_run_end_to_end(tmp_path, model):
    """Nothing assumes tiny.en: a random Whisper with large-v3's 128 mel bins, 3 decoder layers,
    8 heads and a 40-token context goes through load_model(folder) and every LEAF-X variant."""
    other = lw.load_model(random_whisper(tmp_path / "random-whisper", model, d_model=512, encoder_layers=2,
                                         decoder_layers=3, heads=8, ffn_dim=256, source_positions=1500,
                                         target_positions=40))
    assert (other.n_layers, other.n_heads, other.n_mels) == (3, 8, 128)
    ex = lw.explain(other, lw.sample_path())
    assert ex.log_mel().shape == (128, 2 * ex.n_frames)
    assert 0 < len(ex.tokens) <= 20  # max_target_positions // 2
    for variant in ("base", "grad", "causal", "base-vn", "causal-vn"):
        r = ex.map(len(ex.tokens) - 1, variant)
        assert r.shape == (ex.n_frames,) and abs(r.sum() - 1) < 1e-4
    check_token_gradients(other, lw.sample_path(), [0, -1])


def test_whisper_implements_the_whole_seam(model):
    """Every abstract member of SpeechAdapter is implemented, and what the package calls exists on it."""
    import inspect

    from leafx_widgets.models import CAPABILITIES, SpeechAdapter, WhisperAdapter

    assert not WhisperAdapter.__abstractmethods__ and isinstance(model, SpeechAdapter)
    for name, member in inspect.getmembers(SpeechAdapter):
        if not name.startswith("_"):
            assert hasattr(model, name), name
    assert model.supports <= CAPABILITIES
    assert {"cross_attention", "token_gradients", "bypass", "alignment_heads"} <= model.supports
    assert model.timing_heads == model.alignment_heads
    assert (model.input_frames_per_frame, model.window_samples, model.n_mels) == (2, 480000, 80)
    frames = torch.zeros(1, model.n_window_frames, dtype=torch.bool)
    frames[0, 3] = True
    assert model.frames_to_input(frames).nonzero()[:, 1].tolist() == [6, 7]
    assert model.input_to_frames(torch.arange(6.0)).tolist() == [1.0, 5.0, 9.0]
    assert model.query_rows([1, 2], [0, 4]) == [1, 5]


def test_unknown_model_type_names_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ValueError, match=r"model_type 'wav2vec2' is not supported; supported: canary, qwen2_audio, voxtral, whisper"):
        lw.load_model(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a readable JSON object"):
        lw.load_model(tmp_path)


def test_load_model_dispatches_on_model_type(tmp_path, monkeypatch):
    """A new family is one ADAPTERS entry: load_model hands it the folder and the options."""
    from leafx_widgets import models

    (tmp_path / "config.json").write_text('{"model_type": "toy_speech"}')
    seen = {}
    monkeypatch.setitem(models.ADAPTERS, "toy_speech", lambda folder, **kw: seen.update(folder=folder, **kw) or "toy")
    assert lw.load_model(tmp_path, language=None) == "toy"
    assert seen["folder"] == tmp_path and seen["name"] == str(tmp_path) and seen["language"] is None


def test_a_model_with_another_window_geometry(tmp_path, model):
    """Nothing assumes 30 s windows of 1500 frames: a random Whisper with 250-frame (5 s) windows and
    128 mel bins explains the 7.1 s sample in two windows, every method over the right frames."""
    other = lw.load_model(random_whisper(tmp_path / "short-window-whisper", model, d_model=64, encoder_layers=1,
                                         decoder_layers=2, heads=2, ffn_dim=64, source_positions=250,
                                         target_positions=12))
    assert (other.n_window_frames, other.window_samples) == (250, 80000)
    assert "alignment_heads" not in other.supports and len(other.timing_heads) == 2  # upper layer's heads
    ex = lw.explain(other, lw.sample_path())
    assert [w.n_valid for w in ex.windows] == [250, 105] and ex.n_frames == 355
    assert ex.log_mel().shape == ex.blank_log_mel().shape == (128, 710)
    decoded = [w for w in ex.windows if w.ids]
    assert len(decoded) == 2 and all(w.features.shape == (1, 128, 500) for w in decoded)
    assert [t.window for t in ex.tokens] == sorted(t.window for t in ex.tokens)
    for word in ex.words:  # a word never spans windows
        assert len({ex.tokens[t].window for t in word.tokens}) == 1
    fast = [name for name, m in lw.METHODS.items() if m.cost == "fast" and m.available]
    for name in fast:
        for t in (0, len(ex.tokens) - 1):
            tok = ex.tokens[t]
            r = ex.map(t, name)
            assert r.shape == (ex.windows[tok.window].n_valid,) and abs(r.sum() - 1) < 1e-4, name
            g = ex.map_global(t, name)
            assert g.shape == (355,) and not g[: tok.start_frame].any() and tok.start_frame == 250 * tok.window
