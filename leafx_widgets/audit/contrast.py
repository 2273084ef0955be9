"""``ex.contrast(token, foil="clubs")``: why the model wrote this word and not that one.

The token's word (the target) and the foil are teacher-forced after the same prefix (the
window's prompt and the tokens before the word), as the forced-transcript path
(``explain(..., text=...)``) scores a transcript, and

    delta(x) = log p(target | prefix, x) - log p(foil | prefix, x)

(summed over each word's tokens) is attributed to the window's frames by Integrated Gradients
over the encoder's output, from the encoding of silence (the log-Mel floor every masking method
uses) to the clip's encoding, ``steps`` midpoint steps. Frame s's value is the path-averaged
gradient times the change of the encoder's frame s, summed over its channels, so the values add up
to about ``delta(audio) - delta(silence)``. Working on the encoder's output keeps it cheap (the
encoder runs once, for the silence; each step is two decoder passes) at the price of attributing to
the encoder's frames, which have seen their neighbours (as every cross-attention map here does). A positive frame is sound that
favours the target over the foil; a negative one favours the foil. Punctuation attached to the
word ("clubs." -> "clubs") is left out of both, so the pair differs only in the word.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_STEPS = 16  # each step: two decoder passes forward and backward


@dataclass
class Contrast:
    token: int  # the token whose word is the target
    target: str
    foil: str
    delta: float  # log p(target) - log p(foil) on the clip
    delta_silence: float  # the same on the silence baseline
    map: np.ndarray  # (n_frames,) signed, over the token's window's real frames
    start_frame: int  # first frame of the map in the whole audio
    frame_s: float

    @property
    def total(self) -> float:
        """The map's sum: about ``delta - delta_silence`` (IG's completeness, up to the step count)."""
        return float(self.map.sum())

    def frame_times(self) -> np.ndarray:
        return (self.start_frame + np.arange(len(self.map))) * self.frame_s

    @property
    def peak_s(self) -> float:
        """Time of the frame that most favours the target."""
        return round((self.start_frame + int(np.argmax(self.map)) + 0.5) * self.frame_s, 4)

    def mass_in(self, start_s: float, end_s: float) -> float:
        """The map's sum over the frames of [start_s, end_s) (seconds in the whole audio)."""
        t = self.frame_times()
        return float(self.map[(t + self.frame_s > start_s) & (t < end_s)].sum())


def bare_word(word: str) -> str:
    """``word`` without surrounding spaces, punctuation and curly quotes (``" clubs." -> "clubs"``): the
    form in which a target and a foil are forced and compared (the widget keys its contrasts by it)."""
    return word.strip().strip(string.punctuation + "\u201c\u201d\u2018\u2019 ")


def contrast(ex, token: int, foil: str, *, target: str | None = None, steps: int = DEFAULT_STEPS) -> Contrast:
    """The contrast map of ``token``'s word (or ``target``) against ``foil``; see the module docstring."""
    from ..models.base import INPUT_GRADIENTS

    tok = ex._check_token(token)
    if not isinstance(foil, str) or not bare_word(foil):
        raise ValueError(f"foil must be a word (a non-empty string), got {foil!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    adapter = ex.model
    if adapter is None:
        raise ValueError("contrast needs the model (this Explanation was read from JSON); explain the audio again")
    if INPUT_GRADIENTS not in adapter.supports:
        raise ValueError(f"contrast needs gradients through the input, which {ex.model_name!r} does not offer")
    word = ex.words[tok.word]
    target = bare_word(target if target is not None else word.text)
    if not target:
        raise ValueError(f"token {token} belongs to {word.text!r}, which has no letters to contrast; "
                         "pick a token of a word, or pass target=")
    foil = bare_word(foil)
    if foil == target:  # delta would be 0 everywhere: a map with nothing to say
        raise ValueError(f"the foil {foil!r} is the word itself; contrast {target!r} with another word")
    window = ex.windows[tok.window]
    prefix = list(window.ids[: window.position(word.tokens[0])])
    target_ids, foil_ids = adapter.encode_text(target), adapter.encode_text(foil)
    feats = window.features
    with torch.no_grad():
        clip = window.encoded.detach()
        silence = adapter.encode(torch.full_like(feats, float(feats.amin()))).detach()

    def delta(encoded):  # both words teacher-forced on one encoding
        lt = adapter.teacher_forced(encoded, window.prompt, prefix + target_ids).logprobs[len(prefix):].sum()
        lf = adapter.teacher_forced(encoded, window.prompt, prefix + foil_ids).logprobs[len(prefix):].sum()
        return lt - lf

    grad = torch.zeros_like(clip, dtype=torch.float32)
    with torch.enable_grad():
        for k in range(steps):  # decoder passes only: the encodings are computed once
            e = (silence + (k + 0.5) / steps * (clip - silence)).requires_grad_(True)
            grad += torch.autograd.grad(delta(e), e)[0].float()
    attr = (grad / steps * (clip - silence).float()).sum(-1)[0]  # (frames,)
    frames = attr[: window.n_valid].detach().cpu().numpy()
    with torch.no_grad():
        clean, silent = float(delta(clip)), float(delta(silence))
    return Contrast(token=tok.index, target=target, foil=foil, delta=clean,
                    delta_silence=silent, map=frames.astype(np.float32), start_frame=tok.start_frame, frame_s=ex.frame_s)
