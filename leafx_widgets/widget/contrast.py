"""The contrast lane's data: why the model wrote the selected token's word and not a foil the user typed.

Asked for by the page (``{type: "contrast", token, foil}``), computed on the worker like the maps
(``ex.contrast(token, foil)``, ``audit/contrast.py``: 16 Integrated-Gradients steps of two decoder
passes each): a job in the map lane, so the selected token's comes first, identical requests are
merged, a request for a token the page has left is dropped (or stopped at its next model layer) and
the page's cancel control stops it (``lazy.Lane``). Results are kept here per key (``contrast_key``),
so a token seen again, another view and ``save_html`` need no recomputation. Requests are checked before
they queue: an empty foil, a foil that is the word itself, a token out of range or a model that cannot force a
transcript through its decoder with gradients get an "error" reply at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..audit.contrast import bare_word  # the engine's own rule: "clubs." -> "clubs"
from ..models.base import INPUT_GRADIENTS
from . import protocol
from .layers import _model_supports
from .lazy import Lane
from .worker import Job, Worker

MAX_FOIL_CHARS = 64  # a word or a short phrase; longer input is a paste gone wrong


def contrast_key(token: int, foil: str) -> str:
    """``"{token}|contrast|{foil}"`` with the foil's surrounding spaces and punctuation removed:
    ``contrastKey`` in js/src/contraststore.js builds the same string."""
    return f"{token}|contrast|{bare_word(foil)}"


def supported(explanation) -> bool:
    """The page's ``meta.contrast``: whether this explanation's model can compute a contrast (it forces
    the word and the foil through the decoder and needs gradients through the input)."""
    return _model_supports(getattr(explanation, "model", None), INPUT_GRADIENTS)


def _finite(x: float):
    return float(x) if math.isfinite(x) else None  # the page's JSON.parse rejects NaN


def reply_fields(c) -> dict:
    """What the page draws besides the map (the HTML export stores the same fields)."""
    return {"token": int(c.token), "target": c.target, "foil": c.foil, "delta": _finite(c.delta),
            "delta_silence": _finite(c.delta_silence), "total": _finite(c.total),
            "peak_s": _finite(c.peak_s), "start_frame": int(c.start_frame), "n_frames": int(c.map.size),
            "dtype": "float32"}


class Contrasts(Lane):
    """The contrast lane's results, by ``contrast_key`` (``lazy.Lane``)."""

    def __init__(self, explanation, worker: Worker, send: Callable[[protocol.Reply], None], background: bool):
        super().__init__(explanation, worker, send, background)
        self.supported = supported(explanation)

    # ---- checking and computing -------------------------------------------------------------
    def check(self, token, foil) -> tuple[int, str]:
        """The checked (token, foil); a ValueError naming the problem otherwise."""
        ex = self.explanation
        if not self.supported:
            raise ValueError(f"{ex.model_name} does not support contrastive explanations (they force the "
                             "word and the foil through the decoder, with gradients through the input)")
        token = protocol.token_index(token, len(ex.tokens), "token")
        if not isinstance(foil, str):
            raise ValueError(f"foil must be a word (a string), got {foil!r}")
        if len(foil) > MAX_FOIL_CHARS:
            raise ValueError(f"foil is {len(foil)} characters long; type a word (at most {MAX_FOIL_CHARS})")
        word = ex.words[ex.tokens[token].word].text
        if not bare_word(foil):
            raise ValueError(f"type a foil: a word to contrast with {bare_word(word) or word!r}")
        if not bare_word(word):
            raise ValueError(f"token {token} belongs to {word!r}, which has no letters to contrast; pick a word")
        if bare_word(foil) == bare_word(word):
            raise ValueError(f"the foil {bare_word(foil)!r} is the word the model wrote; type another word")
        return token, foil

    def compute(self, token: int, foil: str):
        """``token``'s contrast against ``foil``, computed once. Run it on the worker."""
        key = contrast_key(token, foil)
        hit = self._results.get(key)
        if hit is None:
            hit = self._results[key] = self.explanation.contrast(token, bare_word(foil))
        return hit

    def run_now(self, token: int, foil: str):
        """``compute`` on the worker, waited for (the Python API and ``save_html``)."""
        token, foil = self.check(token, foil)
        return self.wait(lambda: self.compute(token, foil))

    # ---- requests from the page ----------------------------------------------------------------
    def request(self, req_id, key, token, foil, selection: int) -> None:
        token, foil = self.check(token, foil)
        own = contrast_key(token, foil)
        job = Job("map", self._run, key=("contrast", own), token=token, selection=selection)
        job.state["foil"] = foil
        job.requesters[req_id] = key if key is not None else own
        self.submit(job, own)

    def compute_job(self, job: Job):
        return self.compute(job.token, job.state["foil"])

    def reply(self, job: Job, result, key: str, ids: list) -> protocol.Reply:
        arr = np.ascontiguousarray(result.map, dtype=np.float32)
        return ({"type": "contrast", "id": ids[0], "ids": ids, "key": key, **reply_fields(result)},
                [memoryview(arr).cast("B")])
