"""Activation patching (causal tracing, Meng et al. 2022) on a decoded window.

The model reads a corrupted recording ("noise", "silence" or another recording of the same
length) while the clean transcript's tokens are teacher-forced; chosen activations are restored
from the clean run, and the emitted token's log-prob says how much of the clean prediction they
carry. Sites:

    "encoder"            the whole encoder output
    "enc.L"              encoder layer L's output (the layers above run again on it)
    "dec.L"              the residual stream after decoder layer L
    "dec.L.cross"        decoder layer L's cross-attention output
    "dec.L.cross.H"      head H of it (before the output projection, so all heads = the block)
    ("time", t0, t1)     the encoder output's frames in [t0, t1) seconds of the recording
    ("enc.L", t0, t1)    encoder layer L's output in that span

A decoder-only speech LLM has no cross-attention (its language model reads the audio embeddings
through self-attention): "dec.L" is its language model's residual, "encoder" its audio embeddings,
"enc.L" its audio tower's layers, and time spans are whole embeddings (40 ms, 80 ms) of the window.

Every pass teacher-forces the whole window, so one pass gives every token's log-prob; results
are cached per (window, corruption, restored sites) and a token's ``patching`` reuses them. The
clean and corrupted encoder outputs are computed once per window: restoring encoder frames or
decoder sites never encodes again (only ``enc.L`` sites run the encoder, from the corrupted input).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from . import lens
from .models import base

DEFAULT_SNR_DB = -10.0  # "noise": loud enough that tiny.en loses most words (see the README's numbers)
DEFAULT_SPANS = 30
BATCH_ROWS = 8  # patched passes run together (each holds its own copy of the encoder output)
MIN_GAP = 1e-3  # nats: below this clean and corrupted agree, and the normalised effect is undefined (NaN)
OVER = ("layers", "heads", "time")

_SITE = re.compile(r"^(?:(encoder)|enc\.(\d+)|dec\.(\d+)(\.cross(?:\.(\d+))?)?)$")


class PatchingError(ValueError):
    """A bad site, corruption or token for patching (a ValueError)."""


@dataclass(frozen=True)
class Site:
    kind: str  # "encoder" | "time" | "enc" | "dec" | "cross"
    layer: int | None = None
    head: int | None = None
    frames: tuple[int, int] | None = None  # window-local [first, stop) encoder frames; None: all
    label: str = ""


@dataclass
class Patching:
    """The normalised effect of restoring each site (0 = corrupted, 1 = clean) on one token's log-prob.

    ``logprob``: the raw log-prob with each site restored; ``effect`` is NaN where clean and corrupted
    agree (within ``MIN_GAP``). ``start_s`` / ``end_s``: each span's seconds in the recording (over="time").
    """

    token: int
    text: str
    over: str
    corrupt: str
    sites: list[str]
    logprob: np.ndarray
    clean_logprob: float
    corrupt_logprob: float
    start_s: np.ndarray | None = None
    end_s: np.ndarray | None = None

    @property
    def effect(self) -> np.ndarray:
        gap = self.clean_logprob - self.corrupt_logprob
        if abs(gap) < MIN_GAP:
            return np.full(len(self.logprob), np.nan)
        return (self.logprob - self.corrupt_logprob) / gap

    def to_json(self) -> dict:
        def num(x):
            return None if not np.isfinite(x) else round(float(x), 6)

        out = {"token": int(self.token), "text": self.text, "over": self.over, "corrupt": self.corrupt,
               "sites": list(self.sites), "effect": [num(x) for x in self.effect],
               "logprob": [num(x) for x in self.logprob], "clean_logprob": num(self.clean_logprob),
               "corrupt_logprob": num(self.corrupt_logprob)}
        if self.start_s is not None:
            out["start_s"] = [round(float(x), 4) for x in self.start_s]
            out["end_s"] = [round(float(x), 4) for x in self.end_s]
        return out


# -- corruptions ---------------------------------------------------------------------------------------
@dataclass
class Corruption:
    """A whole corrupted recording, as long as the clean one, and a short key naming it."""

    key: tuple
    samples: np.ndarray = field(repr=False)

    @property
    def name(self) -> str:
        return " ".join(str(k) for k in self.key[:2])


def corruption(corrupt, clean: np.ndarray, *, snr_db: float = DEFAULT_SNR_DB, seed: int = 0) -> Corruption:
    """``"noise"``: the clean recording plus white noise at ``snr_db`` (relative to the power of its
    non-silent samples, drawn with ``seed``); ``"silence"``: zeros; an array: that recording."""
    n = len(clean)  # ``clean`` may be spilled samples (a long file): read whole only for "noise"
    if isinstance(corrupt, str):
        if corrupt == "silence":
            return Corruption(("silence",), np.zeros(n, np.float32))
        if corrupt == "noise":
            if not np.isfinite(snr_db):
                raise PatchingError(f"snr_db must be a finite number of dB, got {snr_db!r}")
            clean = np.asarray(clean)  # the noisy recording is built whole, as long as the clean one
            sound = clean[np.abs(clean) > 0]
            power = float(np.mean(np.square(sound, dtype=np.float64))) if len(sound) else 1e-6
            noise = np.random.default_rng(seed).standard_normal(n) * np.sqrt(power / 10 ** (snr_db / 10))
            return Corruption(("noise", f"{float(snr_db):g}dB", int(seed)), (clean + noise).astype(np.float32))
        raise PatchingError(f"corrupt must be 'noise', 'silence' or a recording (array); got {corrupt!r}")
    try:
        samples = np.asarray(corrupt, dtype=np.float32)
    except (TypeError, ValueError):
        raise PatchingError(f"corrupt must be 'noise', 'silence' or a recording (array); got {type(corrupt).__name__}") from None
    if samples.ndim != 1 or len(samples) != n:
        raise PatchingError(f"the corrupting recording must be mono and as long as the clean one ({n} samples), "
                            f"got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise PatchingError("the corrupting recording holds NaN or infinite samples")
    return Corruption(("recording", hashlib.sha1(samples.tobytes()).hexdigest()[:12]), samples)


# -- sites ---------------------------------------------------------------------------------------------
def parse_site(site, window) -> Site:
    """A site name or time span -> ``Site`` (window-local frames), with a one-sentence error when unknown."""
    adapter = window.adapter
    if isinstance(site, tuple) and len(site) == 3 and isinstance(site[0], str):
        name, t0, t1 = site
        if name != "time" and not re.fullmatch(r"enc\.\d+", name):
            raise PatchingError(f"a time span site is ('time', t0, t1) or ('enc.L', t0, t1), got {site!r}")
        frames = _span_frames(window, t0, t1)
        inner = Site("encoder") if name == "time" else parse_site(name, window)
        return Site(inner.kind, inner.layer, None, frames, f"{name} {float(t0):.2f}-{float(t1):.2f}")
    if not isinstance(site, str) or not (m := _SITE.match(site)):
        raise PatchingError(f"unknown site {site!r}: use 'encoder', 'enc.L', 'dec.L', 'dec.L.cross', "
                            "'dec.L.cross.H' or ('time', t0, t1)")
    encoder, enc_layer, dec_layer, cross, head = m.groups()
    if encoder:
        return Site("encoder", label=site)
    if enc_layer is not None:
        return Site("enc", _index(int(enc_layer), adapter.n_encoder_layers, "encoder layer", site), label=site)
    layer = _index(int(dec_layer), adapter.n_layers, "decoder layer", site)
    if cross:
        _require_cross(adapter, f"site {site!r}")
    if head is not None:
        return Site("cross", layer, _index(int(head), adapter.n_heads, "head", site), label=site)
    return Site("cross" if cross else "dec", layer, label=site)


def _require_cross(adapter, what: str) -> None:
    if base.CROSS_HEADS not in adapter.supports:
        raise PatchingError(f"{what}: {adapter.name} has no cross-attention (its decoder reads the audio through "
                            "self-attention); patch 'dec.L', 'enc.L', 'encoder' or a time span instead")


def _index(value: int, size: int, what: str, site) -> int:
    if not 0 <= value < size:
        raise PatchingError(f"site {site!r}: {what} {value} does not exist (the model has {size}: 0..{size - 1})")
    return value


def _span_frames(window, t0, t1) -> tuple[int, int]:
    """[t0, t1) seconds of the recording -> the window's [first, stop) frames covering it."""
    try:
        t0, t1 = float(t0), float(t1)
    except (TypeError, ValueError):
        raise PatchingError(f"a time span needs numbers of seconds, got ({t0!r}, {t1!r})") from None
    frame_s = window.adapter.frame_s
    start_s, end_s = window.offset_frames * frame_s, (window.offset_frames + window.n_valid) * frame_s
    if not (np.isfinite(t0) and np.isfinite(t1) and t0 < t1):
        raise PatchingError(f"a time span needs t0 < t1, got ({t0}, {t1})")
    if t0 < start_s - 1e-9 or t1 > end_s + 1e-9:
        raise PatchingError(f"time span {t0:g}-{t1:g} s lies outside the token's window ({start_s:g}-{end_s:g} s)")
    first = int(np.floor(t0 / frame_s + 1e-6)) - window.offset_frames
    stop = int(np.ceil(t1 / frame_s - 1e-6)) - window.offset_frames
    return max(first, 0), max(min(stop, window.n_valid), first + 1)


def spans(window, n_spans: int) -> list[tuple[float, float]]:
    """``n_spans`` equal stretches of the window's real audio, in seconds of the recording (frame edges)."""
    if isinstance(n_spans, bool) or not isinstance(n_spans, (int, np.integer)) or n_spans < 1:
        raise PatchingError(f"n_spans must be a whole number >= 1, got {n_spans!r}")
    edges = np.unique(np.round(np.linspace(0, window.n_valid, min(int(n_spans), window.n_valid) + 1)).astype(int))
    frame_s = window.adapter.frame_s
    return [((window.offset_frames + a) * frame_s, (window.offset_frames + b) * frame_s)
            for a, b in zip(edges[:-1], edges[1:])]


def sites_over(adapter, over: str) -> list[str]:
    if over == "layers":
        if base.CROSS_HEADS not in adapter.supports:  # the residual stream only
            return [f"dec.{l}" for l in range(adapter.n_layers)]
        return [s for l in range(adapter.n_layers) for s in (f"dec.{l}.cross", f"dec.{l}")]
    if over == "heads":
        _require_cross(adapter, "patching over='heads'")
        return [f"dec.{l}.cross.{h}" for l in range(adapter.n_layers) for h in range(adapter.n_heads)]
    raise PatchingError(f"over must be one of {', '.join(map(repr, OVER))}, got {over!r}")


# -- the passes ----------------------------------------------------------------------------------------
class Patcher:
    """Patched passes over one window with one corruption; every token's log-prob per restored set."""

    def __init__(self, window, corrupt: Corruption, results: dict):
        self.window, self.adapter, self.corrupt = window, window.adapter, corrupt
        self.results = results  # (window, corruption key, restored sites) -> (n_ids,) log-probs, kept by the caller
        lens.require(self.adapter, base.PATCHING, "activation patching")

    def _corrupt_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The corrupted window's features and encoder output (as many frames as the clean one's), computed
        once per window."""
        key = ("inside.corrupt", self.corrupt.key)
        cache = self.window.cache
        if key not in cache:
            w = self.window
            chunk = self.corrupt.samples[w.offset_samples: w.offset_samples + self.adapter.window_samples]
            features = self.adapter.features(chunk)
            with torch.no_grad():
                cache[key] = (features, self.adapter.encode_frames(features, w.encoded.shape[1]))
        return cache[key]

    def logprobs(self, restores: list[tuple[Site, ...]]) -> np.ndarray:
        """(len(restores), n_ids) log p of every text position of the window with each set restored."""
        keys = [(self.window.index, self.corrupt.key, frozenset(r)) for r in restores]
        todo = list(dict.fromkeys(k for k in keys if k not in self.results))
        sets = {k: tuple(k[2]) for k in todo}
        for start in range(0, len(todo), BATCH_ROWS):
            batch = todo[start:start + BATCH_ROWS]
            for key, row in zip(batch, self._run([sets[k] for k in batch])):
                self.results[key] = row
        return np.stack([self.results[k] for k in keys])

    @torch.no_grad()
    def _run(self, restores: list[tuple[Site, ...]]) -> np.ndarray:
        w, adapter, n = self.window, self.adapter, len(restores)
        features, corrupt_encoded = self._corrupt_inputs()
        clean_encoded = w.encoded
        S = clean_encoded.shape[1]
        encoded = corrupt_encoded.expand(n, -1, -1).clone()
        enc_layers = sorted({s.layer for r in restores for s in r if s.kind == "enc"})
        if enc_layers:  # encoder layer sites: run the encoder on the corrupted input with them restored
            clean_layers = lens.encoder_layer_states(w)
            per = adapter.encoder_frames_per_frame  # a span of attended frames is this many encoder-layer frames each
            replace = {}
            for l in enc_layers:
                mask = torch.zeros(n, clean_layers[l].shape[1], dtype=torch.bool)
                for i, r in enumerate(restores):
                    for s in r:
                        if s.kind == "enc" and s.layer == l:
                            mask[i, slice(s.frames[0] * per, s.frames[1] * per) if s.frames else slice(None)] = True
                replace[l] = (mask, clean_layers[l])
            rows = [i for i, r in enumerate(restores) if any(s.kind == "enc" for s in r)]
            states = adapter.encoder_states(features.expand(len(rows), -1, -1), n_frames=S,
                                            replace={l: (m[rows], v) for l, (m, v) in replace.items()})
            encoded[rows] = adapter.encoder_readout(states[-1]).to(encoded.dtype)
        for i, r in enumerate(restores):  # encoder output frames: copied from the cached clean output
            for s in r:
                if s.kind == "encoder":
                    frames = slice(*s.frames) if s.frames else slice(None)
                    encoded[i, frames] = clean_encoded[0, frames]
        clean = lens.clean_states(w)
        replace = {}
        for l in range(adapter.n_layers):
            rows = torch.tensor([any(s.kind == "dec" and s.layer == l for s in r) for r in restores])
            if rows.any():
                replace[("dec", l)] = (rows, clean.residual[l])
            heads = torch.zeros(n, adapter.n_heads, dtype=torch.bool)
            for i, r in enumerate(restores):
                for s in r:
                    if s.kind == "cross" and s.layer == l:
                        heads[i, slice(None) if s.head is None else s.head] = True
            if heads.any():
                replace[("cross", l)] = (heads, clean.cross[l])
        states = adapter.decoder_states(encoded, w.prompt, w.ids, replace=replace)
        query = torch.tensor(adapter.query_rows(w.prompt, range(len(w.ids))))
        target = torch.tensor(w.ids)[:, None]
        out = []
        for i in range(n):  # one row at a time: (positions x vocabulary) logits are large
            logp = torch.log_softmax(adapter.lens_logits(states.residual[-1][i, query]), dim=-1)
            out.append(logp.gather(-1, target.to(logp.device))[:, 0].double().cpu().numpy())
        return np.stack(out)


# -- one token -----------------------------------------------------------------------------------------
def patch(window, position: int, corrupt: Corruption, restore, results: dict) -> float:
    """log p of the token at ``position`` of ``window.ids`` on the corrupted input with ``restore`` restored."""
    if isinstance(restore, (str, tuple)) and (isinstance(restore, str) or (restore and restore[0] == "time")
                                              and len(restore) == 3 and not isinstance(restore[1], (str, tuple))):
        restore = (restore,)  # one site given bare
    sites = tuple(parse_site(s, window) for s in restore)
    return float(Patcher(window, corrupt, results).logprobs([sites])[0, position])


def patching(window, position: int, token_index: int, corrupt: Corruption, over: str, results: dict, *,
             n_spans: int = DEFAULT_SPANS) -> Patching:
    """The effect of restoring each site of ``over`` on the token at ``position``: "layers" (each decoder
    layer's cross-attention output, where the model has one, and residual), "heads" (each cross-attention
    head; a ValueError for a model without cross-attention), "time"
    (``n_spans`` equal stretches of the window's encoder output)."""
    if over not in OVER:
        raise PatchingError(f"over must be one of {', '.join(map(repr, OVER))}, got {over!r}")
    patcher = Patcher(window, corrupt, results)
    if over == "time":
        stretches = spans(window, n_spans)
        sites = [parse_site(("time", a, b), window) for a, b in stretches]
    else:
        sites = [parse_site(s, window) for s in sites_over(window.adapter, over)]
    everything = parse_site("encoder", window)
    rows = patcher.logprobs([(), (everything,)] + [(s,) for s in sites])[:, position]
    out = Patching(token=token_index, text=window.adapter.token_text(window.ids[position]), over=over,
                   corrupt=corrupt.name, sites=[s.label for s in sites], logprob=rows[2:],
                   clean_logprob=float(rows[1]), corrupt_logprob=float(rows[0]))
    if over == "time":
        out.start_s, out.end_s = (np.array(x) for x in zip(*stretches))
    return out
