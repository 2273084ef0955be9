"""The layers pane's data: the selected token's logit lens and its activation patching over time.

Asked for by the page (``{type: "lens"}``, ``{type: "patching"}``), computed on the worker like the
maps: a job in the map lane, so the selected token's comes first, newest first, identical requests
are merged, a request for a token the page has left is dropped (or stopped at its next model layer)
and the page's cancel control stops it (``lazy.Lane``). Results are kept here per key (``layers_key``),
as the JSON the page draws, so a token seen again, another view and ``save_html`` need no recomputation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..patching import DEFAULT_SPANS
from . import protocol
from .lazy import Lane
from .worker import Job, Worker

LENS, PATCHING = "lens", "patching"
CORRUPTIONS = ("noise", "silence")  # what the pane offers as the corrupted input
DEFAULT_CORRUPT = "noise"
PATCH_SPANS = DEFAULT_SPANS  # stretches of the encoder output restored one at a time
CAPABILITY = {LENS: "logit_lens", PATCHING: "patching"}  # the model capability each needs
LABEL = {LENS: "the logit lens", PATCHING: "activation patching"}


def layers_key(kind: str, token: int, corrupt: str | None = None) -> str:
    """``"{token}|lens"`` or ``"{token}|patching|{corrupt}"``: ``layersKey`` in js/src/layerstore.js."""
    return f"{token}|{LENS}" if kind == LENS else f"{token}|{PATCHING}|{corrupt}"


def _model_supports(model, capability: str) -> bool:
    if model is None:
        return False
    caps = getattr(model, "supports", None)
    if callable(caps):  # a method supports(name)
        return bool(caps(capability))
    return capability in (caps or ())  # the adapters' frozenset property


def capabilities(explanation) -> dict:
    """The page's ``meta.layers``: what the pane can show for this explanation's model."""
    model = getattr(explanation, "model", None)
    return {LENS: _model_supports(model, CAPABILITY[LENS]),
            PATCHING: _model_supports(model, CAPABILITY[PATCHING]),
            "corrupt": list(CORRUPTIONS), "default_corrupt": DEFAULT_CORRUPT, "n_spans": PATCH_SPANS}


def check_corrupt(value) -> str:
    if value is None:
        return DEFAULT_CORRUPT
    if not isinstance(value, str) or value not in CORRUPTIONS:
        raise ValueError(f"corrupt must be one of {list(CORRUPTIONS)}, got {value!r}")
    return value


def _finite(obj: Any) -> Any:
    """JSON without NaN or infinity (the page's JSON.parse rejects them): those become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _finite(obj.item())
    return obj


class Layers(Lane):
    """The layers pane's results, by ``layers_key``, as the JSON the page draws (``lazy.Lane``)."""

    def __init__(self, explanation, worker: Worker, send: Callable[[protocol.Reply], None], background: bool):
        super().__init__(explanation, worker, send, background)
        self.supports = capabilities(explanation)

    # ---- computing ------------------------------------------------------------------------
    def check(self, kind: str, corrupt: str | None = None) -> str | None:
        """Raises ValueError when the model cannot compute ``kind``; returns the checked ``corrupt``."""
        if not self.supports[kind]:
            raise ValueError(f"{self.explanation.model_name} does not support {LABEL[kind]}")
        return check_corrupt(corrupt) if kind == PATCHING else None

    def compute(self, kind: str, token: int, corrupt: str | None = None) -> dict:
        """The JSON of ``token``'s lens or patching, computed once. Run it on the worker."""
        key = layers_key(kind, token, corrupt)
        hit = self._results.get(key)
        if hit is not None:
            return hit
        ex = self.explanation
        if kind == LENS:
            result = ex.logit_lens(token)
        else:
            result = ex.patching(token, corrupt=corrupt, over="time", n_spans=PATCH_SPANS)
        out = _finite(result.to_json())
        self._results[key] = out
        return out

    def run_now(self, kind: str, token: int, corrupt: str | None = None) -> dict:
        """``compute`` on the worker, waited for (the Python API and ``save_html``)."""
        n = len(self.explanation.tokens)
        token = protocol.token_index(token, n, "token")
        corrupt = self.check(kind, corrupt)
        return self.wait(lambda: self.compute(kind, token, corrupt))

    # ---- requests from the page ------------------------------------------------------------
    def request(self, kind: str, req_id, key, token: int, corrupt: str | None, selection: int) -> None:
        corrupt = self.check(kind, corrupt)
        own = layers_key(kind, token, corrupt)
        job = Job("map", self._run, key=("layers", own), token=token, selection=selection)
        job.state.update(kind=kind, corrupt=corrupt)
        job.requesters[req_id] = key if key is not None else own
        self.submit(job, own)

    def compute_job(self, job: Job) -> dict:
        return self.compute(job.state["kind"], job.token, job.state["corrupt"])

    def reply(self, job: Job, result: dict, key: str, ids: list) -> protocol.Reply:
        kind = job.state["kind"]
        return ({"type": kind, "id": ids[0], "ids": ids, "key": key, "token": job.token,
                 "corrupt": job.state["corrupt"], kind: result}, [])
