"""Decoder-only speech LLMs (Qwen2-Audio, Voxtral) on tiny random checkpoints built here, offline,
and the generic autograd per-token gradients (checked against Whisper's hand-written backward)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import leafx_widgets as lw
from leafx_widgets import patching
from leafx_widgets.methods.registry import available_methods
from leafx_widgets.models import save_pretrained
from leafx_widgets.models.autograd_gradients import TokenGradients
from leafx_widgets.models.qwen2_audio import Qwen2AudioAdapter
from leafx_widgets.models.voxtral import VoxtralAdapter

import inside_checks

SENTENCES = ["the quick brown fox jumps over the lazy dog", "hello world this is a test of speech",
             "she sells sea shells by the sea shore", "a small random model reads audio"]
QWEN_SPECIAL = ["<|endoftext|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "<|en|>", "<|de|>"]
VOXTRAL_SPECIAL = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]", "[TRANSCRIBE]"]
RATE = 16000
TEXT = "hello world the quick fox"


def byte_bpe(special: list[str], eos: str):
    """A byte-level BPE trained on a few sentences (no hub access here), as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos)


# a 2 s window (100 encoder frames), 2 language-model layers of 4 query heads sharing 2 key/value heads
AUDIO = dict(num_mel_bins=80, max_source_positions=100)
TEXT_LM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=64, max_position_embeddings=512)


def build_qwen2_audio(folder):
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    tok = byte_bpe(QWEN_SPECIAL, "<|endoftext|>")
    torch.manual_seed(0)
    config = Qwen2AudioConfig(
        audio_config=dict(model_type="qwen2_audio_encoder", encoder_layers=1, encoder_attention_heads=2,
                          encoder_ffn_dim=32, d_model=16, **AUDIO),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), **TEXT_LM),
        audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    Qwen2AudioForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_voxtral(folder):
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    tok = byte_bpe(VOXTRAL_SPECIAL, "</s>")
    torch.manual_seed(0)
    config = VoxtralConfig(
        audio_config=dict(model_type="voxtral_encoder", num_hidden_layers=1, num_attention_heads=2,
                          hidden_size=16, intermediate_size=64, **AUDIO),  # projector stacks 64 / 16 = 4 frames
        text_config=dict(model_type="llama", vocab_size=len(tok), head_dim=8, **TEXT_LM),
        audio_token_id=tok.convert_tokens_to_ids("[AUDIO]"))
    VoxtralForConditionalGeneration(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


BUILDERS = {"qwen2_audio": build_qwen2_audio, "voxtral": build_voxtral}
# family -> (adapter class, frame seconds, input columns per frame, frames per 2 s window)
GEOMETRY = {"qwen2_audio": (Qwen2AudioAdapter, 0.04, 4, 50), "voxtral": (VoxtralAdapter, 0.08, 8, 25)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech-llm")
    return {family: build(root / family) for family, build in BUILDERS.items()}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def family(request):
    return request.param


@pytest.fixture(scope="module")
def llm(folders, family):
    return lw.load_model(folders[family], dtype=torch.float64)


def speech_like(seconds: float = 1.3, silence_s: float = 0.0) -> np.ndarray:
    """Noise bursts with a rising tone (1.3 s: not a whole number of frames), then digital silence."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = 0.05 * rng.standard_normal(len(t)) + 0.2 * np.sin(2 * np.pi * (200 + 300 * t) * t) * (np.sin(7 * t) > 0)
    return np.concatenate([audio, np.zeros(int(silence_s * RATE))]).astype(np.float32)


@pytest.fixture(scope="module")
def forced(llm):
    return lw.explain(llm, speech_like(), sample_rate=RATE, text=TEXT, precompute=())


def test_load_model_picks_the_adapter_and_geometry_from_the_config(llm, family):
    cls, frame_s, per_frame, n_frames = GEOMETRY[family]
    assert type(llm) is cls
    assert (llm.frame_s, llm.input_frames_per_frame, llm.n_window_frames) == (frame_s, per_frame, n_frames)
    assert llm.window_samples == 2 * RATE and llm.valid_frames(RATE) == int(np.ceil(1 / frame_s))
    assert (llm.n_layers, llm.n_heads, llm.n_mels) == (2, 4, 80)
    assert llm.features(speech_like()).shape == (1, 80, n_frames * per_frame)


def model_logprobs(folder, family, window, features):
    """log p of the window's tokens under transformers' own forward of a freshly loaded model, fed what
    its processor feeds it: input_ids with the expanded placeholders and the log-Mel (Qwen2-Audio: with the
    feature attention mask over the columns of the real audio's embeddings)."""
    from transformers import Qwen2AudioForConditionalGeneration, VoxtralForConditionalGeneration

    cls = {"qwen2_audio": Qwen2AudioForConditionalGeneration, "voxtral": VoxtralForConditionalGeneration}[family]
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float64).eval()
    tokens = torch.tensor([window.prompt + window.ids])
    kwargs = {}
    if family == "qwen2_audio":
        n_audio = sum(t == model.config.audio_token_id for t in window.prompt)
        mask = torch.zeros(1, features.shape[-1], dtype=torch.long)
        mask[:, : 4 * n_audio] = 1
        kwargs["feature_attention_mask"] = mask
    with torch.no_grad():
        logits = model(input_ids=tokens, input_features=features, **kwargs).logits[0]
    rows = torch.arange(len(window.prompt) - 1, len(window.prompt) - 1 + len(window.ids))
    return torch.log_softmax(logits[rows], -1)[torch.arange(len(window.ids)), torch.tensor(window.ids)]


def test_forced_text_logprobs_equal_the_models_own_forward(folders, family, llm, forced):
    w = forced.windows[0]
    assert llm.text(w.ids) == TEXT and forced.text == TEXT
    ours = torch.tensor([t.logprob for t in forced.tokens], dtype=torch.float64)
    theirs = model_logprobs(folders[family], family, w, w.features)
    assert torch.allclose(ours, theirs, atol=1e-9)
    # the perturbation methods' scorer reads the same numbers, and masking every frame changes them
    clean = llm.score(w.features, w.prompt, w.ids)[0]
    assert torch.allclose(clean, theirs, atol=1e-9)
    silenced = llm.mask_frames(w.features, torch.ones(1, llm.n_window_frames, dtype=torch.bool))
    assert not torch.allclose(llm.score(silenced, w.prompt, w.ids)[0], clean, atol=1e-6)


def test_audio_positions_and_real_frames(family, llm):
    """The prompt holds one placeholder per audio embedding; cross has one column per frame of the
    window, zero past the embeddings that entered (Qwen2-Audio: the real audio's only)."""
    audio = speech_like(1.3, silence_s=0.5)  # 0.5 s of digital silence: the processor would count it
    features = llm.features(audio)
    encoded = llm.encode(features)
    frames = -(-int(1.3 * RATE) // (llm.input_frames_per_frame * 160))
    expected = {"qwen2_audio": (frames, frames + 1), "voxtral": (llm.n_window_frames,)}[llm.model.config.model_type]
    assert encoded.shape[1] in expected
    prompt = llm.prompt(encoded)
    where = llm.audio_positions(prompt, [])
    assert where.stop - where.start == encoded.shape[1] and set(prompt[where]) == {llm.audio_token}
    with torch.no_grad():
        tp = llm.teacher_forced(encoded, prompt, llm.encode_text(TEXT))
    for l in range(llm.n_layers):
        assert tp.cross[l].shape == (llm.n_heads, len(prompt) + len(llm.encode_text(TEXT)), llm.n_window_frames)
        assert not tp.cross[l][..., encoded.shape[1]:].any()
        # audio and text parts together are the layer's attention: rows sum to one
        total = tp.cross[l].sum(-1) + tp.self_attn[l].sum(-1)
        assert torch.allclose(total, torch.ones_like(total))
        assert not tp.self_attn[l][..., where].any()


METHODS = ["leafx_sf", "base", "grad", "causal", "raa_last", "raa_mean", "occlusion"]


def test_maps_are_distributions_over_the_real_frames_in_audio_time(llm, forced):
    n_valid = llm.valid_frames(int(1.3 * RATE))
    assert forced.n_frames == n_valid and forced.frame_s == llm.frame_s
    for method in METHODS:
        for token in (0, len(forced.tokens) - 1):
            r = forced.map(token, method)
            assert r.shape == (n_valid,) and (r >= 0).all() and abs(r.sum() - 1) < 1e-5, method
            assert np.allclose(forced.frame_times(token), np.arange(n_valid) * llm.frame_s)
    # frame j is the log-Mel columns of [j * frame_s, (j + 1) * frame_s): masking it silences exactly those
    w = forced.windows[0]
    frames = torch.zeros(1, llm.n_window_frames, dtype=torch.bool)
    frames[0, 3] = True
    changed = (llm.mask_frames(w.features, frames) != w.features).any(dim=1)[0].nonzero()[:, 0]
    per = llm.input_frames_per_frame
    assert set(changed.tolist()) <= set(range(3 * per, 4 * per)) and len(changed) > 0
    assert 3 * per * 0.01 == pytest.approx(forced.frame_times(0)[3])  # 10 ms log-Mel columns


def test_bypass_changes_only_that_layer(llm, forced):
    w = forced.windows[0]
    where = llm.audio_positions(w.prompt, w.ids)
    with torch.no_grad():
        full = llm.teacher_forced(w.encoded, w.prompt, w.ids)
        bypassed = llm.teacher_forced(w.encoded, w.prompt, w.ids, bypass_layer=1)
        with pytest.raises(ValueError, match="bypass_layer"):
            llm.teacher_forced(w.encoded, w.prompt, w.ids, bypass_layer=2)
    # the layer below is untouched; in the bypassed layer the audio positions keep their attention and the
    # later queries read no audio at all, their attention renormalised over the text
    assert torch.equal(bypassed.cross[0], full.cross[0]) and torch.equal(bypassed.self_attn[0], full.self_attn[0])
    assert torch.allclose(bypassed.cross[1][:, : where.stop], full.cross[1][:, : where.stop])
    assert not bypassed.cross[1][:, where.stop:].any() and full.cross[1][:, where.stop:].any()
    rows = bypassed.self_attn[1][:, where.stop:].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows))
    assert not torch.allclose(bypassed.logprobs, full.logprobs)


def test_generic_gradients_equal_autograd(llm, forced):
    """TokenGradients against torch.autograd.grad of each token's log-prob, taken directly with respect
    to the captured attention of every layer (float64)."""
    w = forced.windows[0]
    targets = [0, 2, len(w.ids) - 1]
    grads = llm.token_gradients(w.encoded, w.prompt, w.ids)
    with torch.enable_grad():
        kept = {"cross": [], "self": []}
        tp = llm.teacher_forced(w.encoded, w.prompt, w.ids,
                                reduce_cross=lambda l, a: kept["cross"].append(a) or a[0],
                                reduce_self=lambda l, a: kept["self"].append(a) or a[0])
        direct = [torch.autograd.grad(tp.logprobs[t], kept["cross"] + kept["self"], retain_graph=True)
                  for t in targets]
    got = list(grads.attention_grads(targets, self_attention=True))
    assert [(l, k) for l, k, _ in got] == [(1, "cross"), (1, "self"), (0, "cross"), (0, "self")]
    n_audio = w.encoded.shape[1]
    for layer, kind, d_attn in got:
        n = d_attn.shape[2]
        assert n == len(w.prompt) + len(w.ids) - 1 and d_attn.shape[:2] == (llm.n_heads, len(targets))
        for i, t in enumerate(targets):
            ref = direct[i][layer + (llm.n_layers if kind == "self" else 0)][0][:, :n, : d_attn.shape[3]]
            assert ref.abs().max() > 0
            assert torch.allclose(d_attn[:, i], ref, atol=1e-12)
            row = len(w.prompt) - 1 + t
            assert not d_attn[:, i, row + 1:].any()  # causal: nothing after the predicting query
        if kind == "cross":
            assert not d_attn[..., n_audio:].any()  # frames past the audio embeddings carry nothing
    cross, selfs = grads.attention(1)
    assert torch.equal(cross, tp.cross[1][:, :n].detach()) and torch.equal(selfs, tp.self_attn[1][:, :n, :n].detach())


def test_generic_gradients_equal_whispers_hand_written_backward(model, sample_explanation):
    w = sample_explanation.windows[0]
    targets = [0, 5, len(w.ids) - 1]
    hand = model.token_gradients(w.encoded, w.prompt, w.ids)
    generic = TokenGradients(model, w.encoded, w.prompt, w.ids)
    for layer in range(model.n_layers):
        for a, b in zip(hand.attention(layer), generic.attention(layer)):
            assert torch.allclose(a, b, atol=1e-5)
    pairs = list(zip(hand.attention_grads(targets, self_attention=True),
                     generic.attention_grads(targets, self_attention=True)))
    assert len(pairs) == 2 * model.n_layers
    for (l1, k1, d1), (l2, k2, d2) in pairs:
        assert (l1, k1) == (l2, k2) and d1.shape == d2.shape
        assert torch.allclose(d1, d2, atol=1e-4 * d1.abs().max())  # float32: summation order differs
    lowest = [(l, k) for l, k, _ in generic.attention_grads(targets, lowest=2)]
    assert lowest == [(3, "cross"), (2, "cross")]


def test_methods_offered(llm):
    offered = set(available_methods(llm))
    assert {"leafx_sf", "base", "grad", "causal", "raa_last", "saco", "ta", "occlusion", "ig"} <= offered
    assert not {"whisper_dtw", "base-vn", "grad-vn", "causal-vn"} & offered
    assert "whisper_dtw" in available_methods(lw.load_model("tiny.en"))


def test_greedy_decoding_and_what_it_refuses(llm, family):
    encoded = llm.encode(llm.features(speech_like()))
    llm.max_new_tokens = 6
    try:
        decoded = llm.decode(encoded)
    finally:
        llm.max_new_tokens = 224
    assert 0 < len(decoded.ids) <= 6 and not set(decoded.ids) & set(llm.stop)
    with torch.no_grad():  # the cached greedy steps and one teacher-forced pass agree
        forced = llm.teacher_forced(encoded, decoded.prompt, decoded.ids).logprobs
    assert np.allclose(decoded.logprobs, forced.numpy(), atol=1e-9)
    with pytest.raises(ValueError, match="timestamps"):
        llm.decode(encoded, timestamps=True)
    with pytest.raises(ValueError, match="transcribe"):
        llm.decode(encoded, task="translate")
    if family == "qwen2_audio":
        assert llm.prompt(encoded, language="de")[-1] == llm.tokenizer.convert_tokens_to_ids("<|de|>")
        with pytest.raises(ValueError, match="unknown language 'xx'"):
            llm.check_language("xx")


def test_saved_adapter_loads_back(tmp_path, llm, forced):
    save_pretrained(llm, tmp_path / "copy")
    again = lw.load_model(tmp_path / "copy", dtype=torch.float64)
    w = forced.windows[0]
    with torch.no_grad():
        assert torch.allclose(again.teacher_forced(w.encoded, w.prompt, w.ids).logprobs,
                              llm.teacher_forced(w.encoded, w.prompt, w.ids).logprobs)


def write_tekken(path, special: list[str]):
    """A tekken.json (Mistral's tokenizer file, as Voxtral checkpoints ship it) of a byte-level BPE
    trained on SENTENCES: ranks are the 256 bytes, then each merge's bytes in the order learned."""
    import base64
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    merges = json.loads(bpe.to_str())["model"]["merges"]
    ranks = [bytes([b]) for b in range(256)]
    for merge in merges:
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        ranks.append(bytes(to_byte[c] for c in left + right))
    doc = {"config": {"pattern": r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+", "version": "v7",
                      "num_vocab_tokens": len(ranks), "default_vocab_size": len(ranks) + len(special),
                      "default_num_special_tokens": len(special)},
           "vocab": [{"rank": i, "token_bytes": base64.b64encode(b).decode(), "token_str": None}
                     for i, b in enumerate(ranks)],
           "special_tokens": [{"rank": i, "token_str": s, "is_control": True} for i, s in enumerate(special)]}
    path.write_text(json.dumps(doc))


def test_voxtral_loads_with_only_mistrals_tekken_json(tmp_path):
    """Voxtral checkpoints ship tekken.json, no tokenizer.json: transformers converts it, and the
    adapter decodes and explains with it as with any tokenizer."""
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration
    from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

    folder = tmp_path / "voxtral"
    folder.mkdir()
    write_tekken(folder / "tekken.json", VOXTRAL_SPECIAL)
    tok = convert_tekken_tokenizer(str(folder / "tekken.json"))
    torch.manual_seed(0)
    config = VoxtralConfig(
        audio_config=dict(model_type="voxtral_encoder", num_hidden_layers=1, num_attention_heads=2,
                          hidden_size=16, intermediate_size=64, **AUDIO),
        text_config=dict(model_type="llama", vocab_size=len(tok), head_dim=8, **TEXT_LM),
        audio_token_id=tok.convert_tokens_to_ids("[AUDIO]"))
    VoxtralForConditionalGeneration(config).save_pretrained(folder)
    assert not (folder / "tokenizer.json").exists()
    adapter = lw.load_model(folder)
    assert isinstance(adapter, VoxtralAdapter)
    assert adapter.tokenizer.encode(TEXT, add_special_tokens=False) == tok.encode(TEXT, add_special_tokens=False)
    assert tok.convert_tokens_to_ids("</s>") in adapter.stop and adapter.audio_token == config.audio_token_id
    ex = lw.explain(adapter, speech_like(), sample_rate=RATE, text=TEXT)
    assert ex.text.strip() == TEXT and [w.text.strip() for w in ex.words] == TEXT.split()
    assert abs(ex.map(0, "leafx_sf").sum() - 1) < 1e-4


# -- inside the model: logit lens, encoder lens, patching, probes (tests/inside_checks.py) -------------
def test_logit_lens_reads_the_language_models_layers(llm, forced):
    assert {"logit_lens", "encoder_lens", "patching"} <= llm.supports and "cross_heads" not in llm.supports
    inside_checks.check_last_lens_layer_is_the_models_output(llm, forced, atol=1e-9)
    w = forced.windows[0]
    states = llm.decoder_states(w.encoded, w.prompt, w.ids)
    assert states.cross == [] and states.residual[0].shape == (1, len(w.prompt) + len(w.ids), 32)


def test_patching_the_embeddings_the_tower_and_the_residual(llm, forced):
    token = len(forced.tokens) - 1
    inside_checks.check_restoring_nothing_or_everything(llm, forced, token, atol=1e-9)
    inside_checks.check_over_layers(llm, forced, token)
    inside_checks.check_no_cross_attention_sites(llm, forced)
    # time spans are whole audio embeddings: 40 ms (Qwen2-Audio) or 80 ms (Voxtral)
    site = patching.parse_site(("time", 0.1, 0.3), forced.windows[0])
    assert site.frames == (int(0.1 / llm.frame_s + 1e-6), int(np.ceil(0.3 / llm.frame_s - 1e-6)))
    over = forced.patching(token, "silence", over="time", n_spans=5)
    assert len(over.sites) == 5 and over.end_s[-1] == pytest.approx(forced.n_frames * llm.frame_s)
    span = forced.patch(token, "silence", restore=(("enc.0", 0.0, 0.5),))
    ends = forced.patch(token, "silence"), forced.patch(token, "silence", ("encoder",))
    assert np.isfinite(span) and min(abs(span - e) for e in ends) > 1e-9  # part of the tower: neither end


def test_encoder_lens_and_probes_read_the_audio_tower(family, llm, forced, tmp_path):
    per = {"qwen2_audio": 2, "voxtral": 4}[family]  # tower frames (20 ms) pooled or stacked into one embedding
    assert llm.encoder_frames_per_frame == per and llm.n_encoder_layers == 1
    inside_checks.check_encoder_lens_top_is_the_transcript(llm, forced)
    inside_checks.check_encoder_replacement_frames(llm, forced)
    inside_checks.check_probe_frames(llm, speech_like(1.3, silence_s=0.3), RATE, tmp_path)
