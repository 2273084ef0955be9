"""Checks of the "inside the model" seam (logit lens, encoder lens, patching, probes) that hold for every
family: each takes an adapter and an explanation of it, and asserts what the numbers must equal."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from leafx_widgets import patching, probes
from leafx_widgets.models import base


def own_logprobs(model, window) -> np.ndarray:
    with torch.no_grad():
        return model.teacher_forced(window.encoded, window.prompt, window.ids).logprobs.double().cpu().numpy()


def corrupted_logprobs(model, window, samples: np.ndarray) -> np.ndarray:
    """The teacher-forced log-probs on a corrupted recording, computed without the patching engine."""
    with torch.no_grad():
        return model.score(model.features(samples), window.prompt, window.ids)[0].double().cpu().numpy()


def check_last_lens_layer_is_the_models_output(model, ex, atol: float = 1e-4) -> None:
    w = ex.windows[0]
    own = own_logprobs(model, w)
    for tok in ex.tokens:
        lensed = ex.logit_lens(tok.index)
        assert lensed.layers == [f"dec.{l}" for l in range(model.n_layers)]
        assert abs(lensed.logprob[-1] - own[w.position(tok.index)]) < atol, tok.text
        assert lensed.rank.shape == (model.n_layers,) and np.isfinite(lensed.logprob).all()


def check_restoring_nothing_or_everything(model, ex, token: int, corrupts=("noise", "silence"),
                                          atol: float = 1e-4) -> None:
    """restore=() is the corrupted run, ("encoder",) and every decoder residual the clean one."""
    w = ex.windows[0]
    at = w.position(token)
    clean = own_logprobs(model, w)[at]
    for corrupt in corrupts:
        samples = patching.corruption(corrupt, ex.audio, snr_db=patching.DEFAULT_SNR_DB, seed=0).samples
        assert abs(ex.patch(token, corrupt, restore=()) - corrupted_logprobs(model, w, samples)[at]) < atol
        assert abs(ex.patch(token, corrupt, restore=("encoder",)) - clean) < atol
        every = tuple(f"dec.{l}" for l in range(model.n_layers))
        assert abs(ex.patch(token, corrupt, restore=every) - clean) < atol
        # an encoder layer restored in full: every layer above it reads clean input again
        assert abs(ex.patch(token, corrupt, restore=(f"enc.{model.n_encoder_layers - 1}",)) - clean) < atol
    assert abs(ex.patch(token, "silence") - clean) > 1e-3  # the corruption matters


def check_heads_make_the_cross_site(model, ex, token: int, corrupt="silence", atol: float = 1e-4) -> None:
    for layer in range(model.n_layers):
        heads = tuple(f"dec.{layer}.cross.{h}" for h in range(model.n_heads))
        whole = ex.patch(token, corrupt, restore=(f"dec.{layer}.cross",))
        assert abs(ex.patch(token, corrupt, restore=heads) - whole) < atol


def check_over_layers(model, ex, token: int) -> None:
    result = ex.patching(token, "silence", over="layers")
    cross = base.CROSS_HEADS in model.supports
    per_layer = (lambda l: [f"dec.{l}.cross", f"dec.{l}"]) if cross else (lambda l: [f"dec.{l}"])
    assert result.sites == [s for l in range(model.n_layers) for s in per_layer(l)]
    assert result.effect[-1] == pytest.approx(1.0)  # the last residual is the output


def check_no_cross_attention_sites(model, ex) -> None:
    """A model without cross-attention refuses its sites and over="heads" in one sentence naming it."""
    for site in ("dec.0.cross", "dec.1.cross.0"):
        with pytest.raises(ValueError, match=f"{model.name} has no cross-attention") as info:
            ex.patch(0, "silence", restore=(site,))
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=f"over='heads'.*{model.name} has no cross-attention"):
        ex.patching(0, "silence", over="heads")


def check_encoder_lens_top_is_the_transcript(model, ex) -> None:
    """The last encoder layer read out is the encoder's output, so the lens decodes what the model does."""
    w = ex.windows[0]
    states = model.encoder_states(w.features)
    assert len(states) == model.n_encoder_layers
    assert states[-1].shape[1] == w.encoded.shape[1] * model.encoder_frames_per_frame
    with torch.no_grad():
        torch.testing.assert_close(model.encoder_readout(states[-1]), w.encoded, atol=1e-5, rtol=1e-5)
    top = ex.encoder_lens(-1)
    assert top.layer == model.n_encoder_layers - 1
    assert top.ids == model.decode(w.encoded).ids and top.text == model.text(top.ids).strip()


def check_encoder_replacement_frames(model, ex) -> None:
    """An encoder-layer replacement of the first attended frame swaps exactly its encoder_frames_per_frame
    frames of that layer's output, at the layer's own frame rate."""
    w = ex.windows[0]
    per = model.encoder_frames_per_frame
    clean = model.encoder_states(w.features)
    values = torch.zeros_like(clean[0])
    mask = torch.zeros(1, clean[0].shape[1], dtype=torch.bool)
    mask[0, :per] = True
    patched = model.encoder_states(w.features, n_frames=w.encoded.shape[1], replace={0: (mask, values)})[0]
    assert not patched[0, :per].any()
    torch.testing.assert_close(patched[0, per:], clean[0][0, per:])


def check_probe_frames(model, audio: np.ndarray, sample_rate: int, folder) -> None:
    """Probes read every encoder layer at its own frame rate: encoder_frames_per_frame per attended frame."""
    import soundfile

    path = folder / "probe.wav"
    soundfile.write(path, audio, sample_rate)
    states, n = probes.encoder_frames(model, SimpleNamespace(path=path))
    expected = model.valid_frames(len(audio)) * model.encoder_frames_per_frame
    assert n == expected and len(states) == model.n_encoder_layers
    assert all(s.shape[0] == expected and np.isfinite(s).all() for s in states)
