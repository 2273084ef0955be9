"""A stand-in Explanation with the engine's API, for widget tests that must not depend
on model weights or speed (the real engine is exercised end to end in tests/e2e)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

SR = 16000
FRAME_S = 0.02


@dataclass
class Token:
    index: int
    id: int
    text: str
    word: int
    logprob: float
    start_frame: int
    n_frames: int


@dataclass
class Word:
    index: int
    text: str
    tokens: list
    peak_s: float


def Method(name: str, label: str, cost: str, params: dict):
    """A registry entry like the real ones; FakeExplanation.map computes the maps, not ``compute``."""
    from leafx_widgets.methods import Method as RegistryMethod

    def compute(*args, **kwargs):
        raise AssertionError("the widget asks the Explanation for maps, never a method directly")

    return RegistryMethod(name, label, compute, cost=cost, params=params)


LEAFX = {"tau": 1.0, "depth": "full"}
METHODS = {
    "base": Method("base", "LEAF-X", "fast", dict(LEAFX)),
    "grad": Method("grad", "LEAF-X +grad", "slow", dict(LEAFX)),
    "causal": Method("causal", "LEAF-X +causal", "slow", dict(LEAFX)),
    "raa_last": Method("raa_last", "raw attention (last layer)", "fast", {}),
    "broken": Method("broken", "always fails", "fast", {}),
    "steps": Method("steps", "stepwise", "slow", {}),
}


# ---- driving a widget as its page does ------------------------------------------------------------
def page_request(widget, content: dict, selected=None) -> str:
    """Sends the page's request ``content`` (with ``selected`` when given); returns its id."""
    if selected is not None:
        content["selected"] = selected
    widget._on_custom_msg(widget, content, [])
    return content["id"]


def wait_for(predicate, timeout=10.0):
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.002)


def hold(widget):
    """Keeps the worker busy until the returned event is set (a Python call waiting)."""
    from leafx_widgets.widget import _call_job

    gate = threading.Event()
    widget._worker.submit(_call_job(lambda: gate.wait(20)))
    wait_for(lambda: widget._worker.running is not None)
    return gate


class Recorder:
    """What a widget sends, in order, with its binary buffers (from the kernel thread and the worker)."""

    ANSWERS = ("map", "lens", "patching", "contrast", "cancelled", "error")  # the replies that end a request

    def __init__(self, widget):
        self.replies = []  # (content, buffers)
        self.cond = threading.Condition()

        def send(content, buffers=None):
            with self.cond:
                self.replies.append((content, buffers or []))
                self.cond.notify_all()

        widget.send = send

    @property
    def sent(self) -> list:
        with self.cond:
            return [c for c, _ in self.replies]

    def with_buffers(self, kind, **match) -> list:
        """(content, buffers) of each reply of type ``kind`` whose fields equal ``match``."""
        with self.cond:
            return [(c, b) for c, b in self.replies
                    if c["type"] == kind and all(c.get(k) == v for k, v in match.items())]

    def of(self, kind, **match) -> list:
        return [c for c, _ in self.with_buffers(kind, **match)]

    def map_of(self, reply) -> np.ndarray:
        """The array sent with ``reply``."""
        (buf,) = next(b for c, b in self.with_buffers(reply["type"]) if c is reply)
        return np.frombuffer(bytes(buf), dtype=reply["dtype"])

    def answered(self) -> dict:
        """request id -> the kinds of reply that named it."""
        out = {}
        for c in self.sent:
            if c["type"] in self.ANSWERS:
                for i in c.get("ids", [c.get("id")]):
                    out.setdefault(i, []).append(c["type"])
        return out

    def wait_for(self, test, timeout=30.0):
        with self.cond:
            assert self.cond.wait_for(lambda: test(self), timeout), f"not sent within {timeout} s"


class FakeModel:
    """What the layers pane asks of a model: its capabilities (every one, so the ladder is unchanged)."""

    def __init__(self, extra=("logit_lens", "patching")):
        from leafx_widgets.models.base import CAPABILITIES

        self.supports = frozenset(CAPABILITIES) | frozenset(extra)


class Result:
    """Stands for the engine's lens and patching results: only ``to_json`` is read."""

    def __init__(self, data):
        self.data = data

    def to_json(self):
        return self.data


FAKE_LAYERS = ("dec.0", "dec.1", "dec.2", "dec.3")
_LAYER = torch.nn.Linear(2, 2)  # one model layer: each call is a point where the widget's worker can stop


class FakeExplanation:
    """Words at known times; each token's map is a bump at its word's peak. The "steps" method
    runs ``steps`` layer calls spread over ``slow_s`` (``finished`` lists the maps it completed).
    Maps are cached like the real Explanation's (the widget keeps none of its own); ``calls`` lists
    the maps computed."""

    def __init__(self, words=("hello", "<b>world</b>", "&", "again"), duration_s=3.0,
                 slow_s=0.2, window_s=30.0, seed=0, audio=None, layers=False):
        rng = np.random.default_rng(seed)
        self.model_name = "fake-tiny"
        self.sample_rate = SR
        self.frame_s = FRAME_S
        self.audio_path = None
        if layers:  # a model with the logit lens and patching (the pane's tests); none otherwise
            self.model = FakeModel()
        if audio is None:
            n = int(duration_s * SR)
            t = np.arange(n) / SR
            audio = 0.3 * np.sin(2 * np.pi * 220 * t) * (rng.random(n) * 0.5 + 0.5)
        self.audio = np.asarray(audio, dtype=np.float32)
        n = self.audio.size
        self.duration_s = n / SR
        self.n_frames = int(round(self.duration_s / FRAME_S))
        self.slow_s = slow_s
        self.steps = 10
        self.calls = []
        self.finished = []
        win = int(window_s / FRAME_S)
        self.tokens, self.words = [], []
        for w, text in enumerate(words):
            peak = (w + 0.5) * self.duration_s / len(words)
            pieces = [text[: len(text) // 2], text[len(text) // 2:]] if len(text) > 4 else [text]
            ids = []
            for j, piece in enumerate(pieces):
                k = len(self.tokens)
                start = (int(peak / FRAME_S) // win) * win
                self.tokens.append(Token(k, 1000 + k, (" " if j == 0 else "") + piece, w,
                                         -0.05 - 0.8 * (k % 3), start, min(win, self.n_frames - start)))
                ids.append(k)
            self.words.append(Word(w, text, ids, peak))
        self.text = " ".join(words)
        self._cache = {}

    def map(self, token_index, method="base", **params):
        key = (token_index, method, tuple(sorted(params.items())))
        if key not in self._cache:
            self._cache[key] = self._compute(token_index, method, **params)
        return self._cache[key]

    def _compute(self, token_index, method="base", **params):
        if not isinstance(token_index, int) or not 0 <= token_index < len(self.tokens):
            raise IndexError(f"token index {token_index} out of range")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}")
        if method == "broken":
            raise ValueError("this method always fails")
        self.calls.append((token_index, method, tuple(sorted(params.items()))))
        if method == "steps":
            with torch.no_grad():
                for _ in range(self.steps):
                    _LAYER(torch.zeros(2))
                    time.sleep(self.slow_s / self.steps)
            self.finished.append(token_index)
        elif METHODS[method].cost == "slow":
            time.sleep(self.slow_s)
        tok = self.tokens[token_index]
        frames = tok.start_frame + np.arange(tok.n_frames)
        centre = self.words[tok.word].peak_s / FRAME_S + (3 if method == "grad" else 0)
        width = 5.0 * float(params.get("tau", 1.0)) * (2 if method == "causal" else 1)
        m = np.exp(-0.5 * ((frames - centre) / width) ** 2).astype(np.float32) + 1e-6
        return m / m.sum()

    def map_global(self, token_index, method="base", **params):
        out = np.zeros(self.n_frames, dtype=np.float32)
        tok = self.tokens[token_index]
        out[tok.start_frame:tok.start_frame + tok.n_frames] = self.map(token_index, method, **params)
        return out

    def logit_lens(self, token_index):
        """The emitted token climbs from rank 3 to rank 0 over the layers."""
        tok = self.tokens[token_index]
        self.calls.append((token_index, "lens", ()))
        n = len(FAKE_LAYERS)
        rank = [n - 1 - i for i in range(n)]
        return Result({"token": token_index, "layers": list(FAKE_LAYERS),
                       "logprob": [float(-0.5 * r - 0.1) for r in rank], "rank": rank,
                       "top": [[["alt", 0.5], [tok.text, 0.3]] if r else [[tok.text, 0.9], ["alt", 0.05]]
                               for r in rank]})

    def patching(self, token_index, corrupt="noise", over="time", n_spans=30):
        """Restoring the spans near the token's word recovers it. Runs ``steps`` layer calls over
        ``slow_s`` (a point where the widget's worker can stop). Under silence the token is unchanged
        by the corruption, so its effects are 0/0 (NaN)."""
        if corrupt not in ("noise", "silence"):
            raise ValueError(f"unknown corruption {corrupt!r}")
        self.calls.append((token_index, "patching", (("corrupt", corrupt),)))
        with torch.no_grad():
            for _ in range(self.steps):
                _LAYER(torch.zeros(2))
                time.sleep(self.slow_s / self.steps)
        tok = self.tokens[token_index]
        t0, t1 = tok.start_frame * FRAME_S, (tok.start_frame + tok.n_frames) * FRAME_S
        edges = np.linspace(t0, t1, n_spans + 1)
        mid = (edges[:-1] + edges[1:]) / 2
        effect = np.exp(-0.5 * ((mid - self.words[tok.word].peak_s) / 0.2) ** 2)
        if corrupt == "silence":
            effect = np.full(n_spans, np.nan)
        self.finished.append(token_index)
        return Result({"over": over, "sites": [f"time {a:.2f}-{b:.2f}" for a, b in zip(edges[:-1], edges[1:])],
                       "effect": effect.tolist(), "clean_logprob": tok.logprob, "corrupt_logprob": -8.0,
                       "start_s": edges[:-1].tolist(), "end_s": edges[1:].tolist()})

    def contrast(self, token_index, foil):
        """The word's own frames favour it (+), the rest of the window favours the foil (-); delta is
        1 + len(foil) (NaN for the foil "nan"). Runs ``steps`` layer calls over ``slow_s``, like patching."""
        from leafx_widgets.audit.contrast import Contrast

        self.calls.append((token_index, "contrast", (("foil", foil),)))
        with torch.no_grad():
            for _ in range(self.steps):
                _LAYER(torch.zeros(2))
                time.sleep(self.slow_s / self.steps)
        tok = self.tokens[token_index]
        t = (tok.start_frame + np.arange(tok.n_frames)) * FRAME_S
        near = np.abs(t - self.words[tok.word].peak_s) < 0.1
        m = np.where(near, 1.0, -0.1).astype(np.float32)
        self.finished.append(token_index)
        delta = float("nan") if foil == "nan" else 1.0 + len(foil)
        return Contrast(token=token_index, target=self.words[tok.word].text, foil=foil, delta=delta,
                        delta_silence=0.0, map=m, start_frame=tok.start_frame, frame_s=FRAME_S)

    def log_mel(self):
        rng = np.random.default_rng(1)
        return (rng.random((80, 2 * self.n_frames)) * 2 - 1).astype(np.float32)

    # ---- the audit table, in ``ex.audit()``'s shape (leafx_widgets.audit.table) ---------------
    def audit(self, reference=None, **options):
        """One row per token from the base maps: entropy of the map, a score that grows as log p falls
        (tokens below p = 0.5 are flagged), ``error`` from a reference given as a list of per-word labels.
        ``audit_s`` (default 0) spreads that many seconds of layer calls over the tokens; ``audit_fails``
        makes it raise."""
        import pandas as pd

        if getattr(self, "audit_fails", False):
            raise ValueError("this audit always fails")
        self.audits = getattr(self, "audits", 0) + 1
        rows = []
        for tok in self.tokens:
            r = self.map(tok.index, "base")
            if getattr(self, "audit_s", 0):
                with torch.no_grad():
                    _LAYER(torch.zeros(2))  # a point where the widget's worker can stop
                time.sleep(self.audit_s / len(self.tokens))
            p = r / r.sum()
            entropy = float(-(p * np.log(p + 1e-12)).sum() / np.log(len(p)))
            score = float(1 - np.exp(tok.logprob))
            error = None if reference is None else reference[tok.word]
            rows.append({"token": tok.index, "text": tok.text, "word_index": tok.word,
                         "word": self.words[tok.word].text, "start_s": np.nan, "end_s": np.nan,
                         "peak_s": (tok.start_frame + int(np.argmax(r)) + 0.5) * FRAME_S,
                         "logprob": tok.logprob, "entropy": entropy, "outside": np.nan, "stability": np.nan,
                         "changed": False, "score": score, "flag": score >= 0.5, "error": error,
                         "ref_word": None})
        return pd.DataFrame(rows)
