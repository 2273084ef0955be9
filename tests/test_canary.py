"""Canary behind the model seam, on a tiny random-initialised checkpoint built offline here
(FastConformer encoder, 3-layer decoder, a SentencePiece-style BPE tokenizer with Canary's prompt tokens)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import leafx_widgets as lw
from leafx_widgets.methods import available_methods
from leafx_widgets.models.canary import CanaryAdapter

import inside_checks

RATE = 16000
WINDOW_S = 2.0  # the checkpoint's chunk_length: 25 encoder frames of 80 ms
SPECIALS = ["<unk>", "<|nospeech|>", "<pad>", "<|endoftext|>", "<|startoftranscript|>", "<|pnc|>", "<|nopnc|>",
            "<|startofcontext|>", "<|itn|>", "<|noitn|>", "<|timestamp|>", "<|notimestamp|>", "<|diarize|>",
            "<|nodiarize|>", "<|emo:undefined|>", "<|en|>", "<|de|>", "<|fr|>", "<|es|>"]  # canary-1b-v2's ids 0..13
TEXT = "hello world the quick fox"
INIT = 0.3  # weights this large make a tiny random decoder attend sharply (at 0.02: uniform to 1e-4)


def _tokenizer():
    """A byte-fallback BPE over "▁"-prefixed words (Canary's SentencePiece layout), special tokens first."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    trained = Tokenizer(models.BPE(unk_token="<unk>"))
    trained.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=list("abcdefghijklmnopqrstuvwxyz▁"))
    trained.train_from_iterator(["hello world this is a small test of canary",
                                 "the quick brown fox jumps over the lazy dog"] * 5, trainer)
    model = json.loads(trained.to_str())["model"]
    vocab = dict(model["vocab"]) | {f"<0x{b:02X}>": len(model["vocab"]) + b for b in range(256)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    return tok


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from transformers import (CanaryConfig, CanaryForConditionalGeneration, CanaryProcessor,
                              ParakeetFeatureExtractor, TokenizersBackend)

    tok = _tokenizer()
    vocab = tok.get_vocab_size()
    config = CanaryConfig(
        vocab_size=vocab,
        encoder_config=dict(model_type="parakeet_encoder", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_mel_bins=16, subsampling_factor=8, subsampling_conv_channels=8,
                            conv_kernel_size=3, scale_input=False, dropout=0.0, layerdrop=0.0, attention_dropout=0.0,
                            activation_dropout=0.0, initializer_range=INIT),
        decoder_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=4, head_dim=8, max_position_embeddings=40, initializer_range=INIT))
    torch.manual_seed(0)
    model = CanaryForConditionalGeneration(config)
    path = tmp_path_factory.mktemp("canary")
    model.save_pretrained(path)
    # as a converted checkpoint holds them: processor_config.json (the extractor inside), tokenizer.json
    tokenizer = TokenizersBackend(tokenizer_object=tok, bos_token="<|startoftranscript|>", eos_token="<|endoftext|>",
                                  pad_token="<pad>", unk_token="<unk>")
    extractor = ParakeetFeatureExtractor(feature_size=16, chunk_length=WINDOW_S)
    CanaryProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def reference(folder):
    """transformers' own model, loaded apart from the adapter's (which switches the encoder to SDPA)."""
    from transformers import CanaryForConditionalGeneration

    return CanaryForConditionalGeneration.from_pretrained(folder).eval()


@pytest.fixture(scope="module")
def canary(folder):
    return lw.load_model(folder)


@pytest.fixture(scope="module")
def audio():
    """1.3 s: a tone in the first half, noise in the second (17 frames of 80 ms)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * RATE)) / RATE
    return np.where(t < 0.6, 0.3 * np.sin(2 * np.pi * 440 * t), 0.1 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def forced(canary, audio):
    return lw.explain(canary, audio, sample_rate=RATE, text=TEXT, precompute=())


def _forward_logprobs(model, features, prompt, ids):
    """log p of each id straight from transformers' CanaryForConditionalGeneration forward."""
    with torch.no_grad():
        logits = model(input_features=features.transpose(1, 2), decoder_input_ids=torch.tensor([prompt + ids])).logits
    logp = torch.log_softmax(logits[0].float(), -1)
    return np.array([float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(ids)])


def test_load_model_picks_the_canary_adapter_and_its_geometry(canary):
    assert isinstance(canary, CanaryAdapter)
    assert canary.frame_s == pytest.approx(0.08) and canary.input_frames_per_frame == 8  # 10 ms hop x 8
    assert canary.n_window_frames == 25 and canary.window_samples == 2 * RATE
    assert canary.n_layers == 3 and canary.n_heads == 4 and canary.n_mels == 16
    features = canary.features(np.zeros(RATE // 2, np.float32) + 0.01)
    assert features.shape == (1, 16, 200)
    assert canary.encode(features).shape == (1, 25, 32)
    assert canary.valid_frames(RATE // 2) == 7  # ceil(0.5 s / 80 ms)


def test_features_are_the_extractors_over_the_real_audio(canary, audio):
    from transformers import ParakeetFeatureExtractor

    reference = ParakeetFeatureExtractor(feature_size=16)(audio, sampling_rate=RATE, return_tensors="pt")
    n = int(reference.attention_mask.sum())
    ours = canary.features(audio)[0].T
    torch.testing.assert_close(ours[:n], reference.input_features[0, :n], atol=1e-4, rtol=1e-4)
    # the padding is digital silence (one value per mel bin), not the extractor's 0
    assert torch.allclose(ours[-1], ours[-5]) and ours[-1].abs().min() > 0.1


def test_prompt_is_canarys_task_prompt(canary):
    tok = canary.tokenizer.token_to_id
    names = ["<|startofcontext|>", "<|startoftranscript|>", "<|emo:undefined|>", "<|de|>", "<|en|>", "<|pnc|>",
             "<|noitn|>", "<|notimestamp|>", "<|nodiarize|>"]
    assert canary.prompt(language="de", task="translate") == [tok(n) for n in names]
    assert canary.prompt()[3:5] == [tok("<|en|>"), tok("<|en|>")]
    with pytest.raises(ValueError, match="unknown language 'xx'.*known: de, en, es, fr"):
        canary.prompt(language="xx")
    with pytest.raises(ValueError, match="translates into English: pass the language of the speech"):
        canary.check_language(None, "translate")


def test_forced_text_logprobs_equal_the_models_own_forward(canary, forced, reference):
    window = forced.windows[0]
    assert forced.text == TEXT and window.ids == canary.encode_text(TEXT)
    expected = _forward_logprobs(reference, window.features, window.prompt, window.ids)
    np.testing.assert_allclose([t.logprob for t in forced.tokens], expected, atol=1e-5)
    # perturbation methods score through score(): the same numbers, for a batch of inputs
    scored = canary.score(window.features.expand(2, -1, -1), window.prompt, window.ids)
    np.testing.assert_allclose(scored.detach().numpy(), np.stack([expected] * 2), atol=1e-5)


def test_greedy_decode_matches_the_forward_argmax(canary, audio, reference):
    encoded = canary.encode(canary.features(audio))
    decoded = canary.decode(encoded)
    assert decoded.prompt == canary.prompt() and len(decoded.ids) == len(decoded.logprobs) > 0
    assert not set(decoded.ids) & set(canary.suppress)
    # each token is the most likely non-control token under teacher forcing (transformers' forward)
    with torch.no_grad():
        logits = reference(input_features=canary.features(audio).transpose(1, 2),
                              decoder_input_ids=torch.tensor([decoded.prompt + decoded.ids])).logits[0].float()
    logits[:, canary.suppress] = -np.inf
    rows = canary.query_rows(decoded.prompt, range(len(decoded.ids)))
    assert logits[rows].argmax(-1).tolist() == decoded.ids
    logp = torch.log_softmax(logits[rows], -1)  # as Whisper's decode: over the tokens it may write
    np.testing.assert_allclose(decoded.logprobs, logp[range(len(rows)), decoded.ids].numpy(), atol=1e-5)

@pytest.mark.parametrize("method", ["leafx_sf", "base", "grad", "causal", "raa_last", "occlusion"])
def test_maps_are_distributions_over_the_real_frames(forced, audio, method):
    assert forced.n_frames == 17 == int(np.ceil(len(audio) / 1280))
    maps = forced.maps(method)
    assert maps.shape == (len(forced.tokens), 17) and np.isfinite(maps).all() and (maps >= 0).all()
    np.testing.assert_allclose(maps.sum(1), 1, atol=1e-4)
    assert np.ptp(maps, axis=1).max() > 1e-2  # not uniform: the maps tell frames apart
    times = forced.frame_times(0)
    assert len(times) == 17 and times[1] - times[0] == pytest.approx(0.08)
    assert times[-1] < len(audio) / RATE <= times[-1] + 0.08  # the last frame holds the end of the audio


def test_bypass_changes_only_the_layers_above_and_the_output(canary, forced):
    window = forced.windows[0]
    full = canary.teacher_forced(window.encoded, window.prompt, window.ids)
    bypassed = canary.teacher_forced(window.encoded, window.prompt, window.ids, bypass_layer=1)
    for layer in (0, 1):  # below, and the bypassed layer's own attention (its output is what is removed)
        torch.testing.assert_close(bypassed.cross[layer], full.cross[layer])
        torch.testing.assert_close(bypassed.self_attn[layer], full.self_attn[layer])
    assert not torch.allclose(bypassed.cross[2], full.cross[2])
    assert (bypassed.logprobs - full.logprobs).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"bypass_layer must be in \[0, 3\)"):
        canary.teacher_forced(window.encoded, window.prompt, window.ids, bypass_layer=3)


def test_token_gradients_equal_autograd_per_token(canary, forced):
    window = forced.windows[0]
    gradients = canary.token_gradients(window.encoded, window.prompt, window.ids)
    targets = [1, len(window.ids) - 1]
    got = {(l, kind): g for l, kind, g in gradients.attention_grads(targets, lowest=0, self_attention=True)}
    assert [k for k in got] == [(l, kind) for l in (2, 1, 0) for kind in ("cross", "self")]
    n = canary.query_rows(window.prompt, targets)[-1] + 1
    for c, t in enumerate(targets):  # one plain backward per token through an independent forward
        with torch.enable_grad():
            tp = canary.teacher_forced(window.encoded, window.prompt, window.ids,
                                       reduce_cross=lambda l, a: a, reduce_self=lambda l, a: a)
            attention = tp.cross + tp.self_attn
            expected = torch.autograd.grad(tp.logprobs[t], attention, allow_unused=True)
        for l in range(3):
            torch.testing.assert_close(got[(l, "cross")][:, c], expected[l][0, :, :n], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(got[(l, "self")][:, c], expected[3 + l][0, :, :n, :n], atol=1e-6, rtol=1e-5)
    assert got[(0, "cross")].abs().max() > 1e-4 and got[(0, "self")].abs().max() > 1e-4
    # the forward pass's own attention, over the positions up to the last query (the last token is no input)
    short = canary.teacher_forced(window.encoded, window.prompt, window.ids[:-1])
    for l in range(3):
        torch.testing.assert_close(gradients.attention(l)[0], short.cross[l])
        torch.testing.assert_close(gradients.attention(l)[1], short.self_attn[l])


def test_value_norms_and_capabilities(canary, forced):
    window = forced.windows[0]
    norms = canary.value_norms(window.encoded)
    assert norms.shape == (3, 4, 25) and (norms > 0).all()
    names = available_methods(canary)
    assert {"leafx_sf", "leafx_sf_grad", "base", "grad", "causal", "base-vn", "raa_last", "saco", "ta",
            "occlusion", "ig"} <= set(names)
    assert not {"timestamps", "alignment_heads", "dtw_timing"} & canary.supports
    assert "whisper_dtw" not in names  # Whisper's DTW timing reads heads only Whisper is known to have


def test_resampled_audio_and_clear_errors(canary, audio):
    import librosa

    at_22k = librosa.resample(audio, orig_sr=RATE, target_sr=22050)
    ex = lw.explain(canary, at_22k, sample_rate=22050, text=TEXT, precompute=())
    assert ex.n_frames == 17 and ex.text == TEXT  # load_audio resampled it to the model's 16 kHz
    with pytest.raises(ValueError, match="the forced transcript has .* tokens; .* reads at most 31"):
        lw.explain(canary, audio, sample_rate=RATE, text="hello world " * 20, precompute=())
    with pytest.raises(ValueError, match="cannot decode with timestamps"):
        lw.explain(canary, audio, sample_rate=RATE, timestamps=True, precompute=())
    with pytest.raises(ValueError, match="a window holds at most 2 s"):
        canary.features(np.zeros(3 * RATE, np.float32))


def test_checkpoint_errors_name_the_problem(canary, folder, tmp_path):
    from tokenizers import Tokenizer, models

    plain = Tokenizer(models.BPE(vocab={"<unk>": 0, "<|endoftext|>": 1}, merges=[], unk_token="<unk>"))
    with pytest.raises(ValueError, match=r"lacks Canary's prompt tokens <\|startofcontext\|>, "):
        CanaryAdapter(canary.model, plain, canary.extractor, name="v1")
    for name in ("config.json", "model.safetensors", "processor_config.json"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ValueError, match="could not load Canary model .*tokenizer.json"):
        lw.load_model(tmp_path)


def test_long_audio_is_explained_window_by_window(canary, audio):
    long = np.concatenate([audio, audio, audio])  # 3.9 s: two windows of 2 s
    ex = lw.explain(canary, long, sample_rate=RATE, precompute=())
    assert ex.n_frames == int(np.ceil(len(long) / 1280)) and len(ex.windows) == 2
    assert {t.window for t in ex.tokens} == {0, 1}
    maps = ex.maps("leafx_sf")  # each token's map lies in its own window
    np.testing.assert_allclose(maps.sum(1), 1, atol=1e-4)
    second = [t.index for t in ex.tokens if t.window == 1]
    assert maps[second, :25].sum() == 0 and ex.tokens[second[0]].start_frame == 25


# -- inside the model: logit lens, encoder lens, patching, probes (tests/inside_checks.py) -------------
def test_logit_lens_last_layer_is_canarys_output(canary, forced):
    assert {"logit_lens", "encoder_lens", "patching", "cross_heads"} <= canary.supports
    inside_checks.check_last_lens_layer_is_the_models_output(canary, forced)


def test_patching_restores_what_it_names(canary, forced):
    token = len(forced.tokens) - 1
    inside_checks.check_restoring_nothing_or_everything(canary, forced, token)
    inside_checks.check_heads_make_the_cross_site(canary, forced, token)
    inside_checks.check_over_layers(canary, forced, token)
    one = forced.patch(token, "silence", restore=("dec.2.cross.0",))
    assert abs(one - forced.patch(token, "silence", restore=("dec.2.cross",))) > 1e-4  # one head is not the block


def test_encoder_lens_and_probes_read_the_fastconformer_blocks(canary, forced, audio, tmp_path):
    assert canary.n_encoder_layers == 2 and canary.encoder_frames_per_frame == 1
    inside_checks.check_encoder_lens_top_is_the_transcript(canary, forced)
    inside_checks.check_encoder_replacement_frames(canary, forced)
    inside_checks.check_probe_frames(canary, audio, RATE, tmp_path)
    assert forced.encoder_lens(0).layer == 0
