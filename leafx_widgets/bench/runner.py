"""LEAF-XBench runner: manifest -> per-token records for every method and metric.

    leafx-widgets bench --manifest M.json [--model tiny.en] [--methods ...] [--out DIR]

Python: ``run_bench(manifest, model="tiny.en", methods=None, out_dir="bench_out", **settings)``
or ``main(argv)``. Per clip the runner decodes once (``explain``), aligns the decoded
words to the reference words (``align.py``), and evaluates the *first token of every
matched word* (the query that predicts it) with each method:

* TLoc (pointing game +-20 ms, top-k IoU, mass in span) and SPR on every evaluated token;
* D-AOPC and insertion (masking top-k% of the real frames, k in 5..50%) on up to
  ``faith_per_clip`` tokens per clip (evenly spaced), the expensive part;
* INF (captum ``infidelity``, optimal scaling) with ``n_inf`` random masks of 100 ms
  segments per window, shared by every token and method (their log-probs are computed once);
* STAB: cosine and Spearman between the clean map and the map under white noise at 30 dB SNR
  and under a 40 ms delay (map shifted back by 2 frames), for tokens decoded identically
  (same token at the same position with the same prefix).

Methods that are not batched (IG) run on the ``faith_per_clip`` tokens only.

Reliability: every manifest is checked before any work (``validate.py``: one error lists
every problem). Results are cached per clip under ``out_dir/cache``, keyed by a hash of
the clip's audio bytes, text and word spans together with the settings, model, methods
and their resolved parameters, so an edited clip is recomputed and an unchanged one is
not. A clip that fails is recorded with a one-line reason and the run goes on (exit 1
at the end); Ctrl-C finishes the current clip, writes a partial report and exits 130,
and the same command resumes. Every output is written to a temporary file and renamed.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from . import metrics as M
from .metrics import infidelity_captum  # noqa: F401  (kept importable from here)
from .align import align_words, fold_words
from ..atomic import atomic_write
from .._progress import bar, bars_enabled, say
from ..executors import add_executor_options
from ..threads import add_threads_option, set_threads
from .console import GracefulStop, HelpFormatter
from .manifests import Clip, add_noise, load_manifests

DELETION_LEVELS = (0.05, 0.10, 0.20, 0.30, 0.50)
CACHE_VERSION = 2  # bump when a change to the evaluation makes cached clip results obsolete
EXIT_FAILED_CLIPS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130

# the full method list of the benchmark: LEAF-X variants and ablations, then the baselines
DEFAULT_METHODS = (
    "base", "grad", "causal", "leafx_no_entropy", "leafx_no_rollout", "leafx_no_grad",
    "causal@tau=0.5", "causal@tau=1.5", "causal@tau=2.0",
    "causal@depth=one", "causal@depth=middle_half", "causal@depth=last_half",
    "leafx_sf", "leafx_sf_full", "leafx_sf_grad", "base-vn",
    "raa_last", "raa_mean", "rollout", "saco", "ta", "whisper_dtw",
    "ig", "occlusion", "lime", "kernelshap", "spes",
)
# methods that also get D-AOPC / insertion in the default run (the paper's main table); the
# ablations get every other metric (TLoc, SPR, INF, STAB) - masking passes are the budget
DEFAULT_FAITH_METHODS = (
    "base", "grad", "causal", "leafx_sf", "leafx_sf_full", "leafx_sf_grad", "base-vn",
    "raa_last", "raa_mean", "rollout", "saco", "ta", "whisper_dtw",
    "ig", "occlusion", "lime", "kernelshap", "spes",
)


@dataclass
class Settings:
    faith_per_clip: int = 3  # tokens per clip for D-AOPC / insertion (and IG); 0 = all
    levels: tuple = DELETION_LEVELS
    n_inf: int = 64  # random masks for INF per window (16 left method differences inside the noise)
    inf_segment_frames: int = 5
    inf_p: float = 0.25  # probability that a segment is masked
    faith_methods: tuple | None = DEFAULT_FAITH_METHODS  # None = every method
    stab: bool = True
    stab_expensive_clips: int = 1  # clips per dataset where perturbation methods and IG get STAB (0 = all, -1 = none)
    noise_snr_db: float = 30.0
    shift_ms: float = 40.0
    max_tokens_per_clip: int = 0  # 0 = every matched word (smoke tests cap it)
    seed: int = 0
    params: dict = field(default_factory=dict)  # method -> parameter overrides

    def expensive_stab(self, clip_rank: int) -> bool:
        """Whether perturbation methods and IG get STAB on the clip of this rank in its dataset."""
        n = self.stab_expensive_clips
        return n == 0 or 0 <= clip_rank < n


@dataclass
class MethodSpec:
    name: str  # display / record name, e.g. "causal@tau=0.5"
    method: object  # registry Method
    params: dict


def parse_method(spec: str, overrides: dict | None = None) -> MethodSpec:
    """``name`` or ``name@key=value,key=value`` (values parsed as JSON when possible)."""
    from ..methods import get_method

    name, _, rest = spec.partition("@")
    method = get_method(name)
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    params.update((overrides or {}).get(spec, {}))
    params.update((overrides or {}).get(name, {}) if spec != name else {})
    return MethodSpec(spec, method, method.resolve(params))


def check_supported(specs: list[MethodSpec], adapter) -> None:
    """Refuse, before any work, methods that need what the loaded model does not offer."""
    for spec in specs:
        if not spec.method.supports(adapter):
            raise ValueError(f"method {spec.name!r} needs {', '.join(spec.method.needs)} from the model, "
                             f"which {getattr(adapter, 'name', 'this model')!r} does not offer")


# ----------------------------------------------------------------------------- clip preparation

@dataclass
class EvalToken:
    window: int
    position: int  # index into the window's ids
    token_index: int  # index among the Explanation's tokens
    token_text: str
    word: str  # decoded word
    ref_word: str
    span: tuple[float, float]  # reference span, seconds from the window start


def _raw_chars(text: str) -> str:
    """The characters ``fold`` keeps (before spoken-form expansion), for offsets inside a word."""
    import re
    return re.sub(r"[^\w']", "", text.lower())


def word_pieces(ex, word) -> list[tuple[str, int]]:
    """Folded pieces of one decoded word with the token index where each piece starts
    ("cold-hearted" -> ("cold", tok of "cold"), ("hearted", tok of "heart"); a numeral's
    spoken words all start at its first token: "25" -> ("twenty", t), ("five", t))."""
    content = [t for t in word.tokens if any(c.isalnum() for c in ex.tokens[t].text)] or list(word.tokens)
    raws = [x for x in word.text.replace("-", " ").split() if _raw_chars(x)]
    if len(raws) <= 1:
        return [(p, content[0]) for p in fold_words(word.text)]
    spans, pos = [], 0
    for t in word.tokens:
        n = len(_raw_chars(ex.tokens[t].text))
        spans.append((pos, pos + n, t))
        pos += n
    out, offset = [], 0
    for raw in raws:
        tok = next((t for a, b, t in spans if a <= offset < b), content[0])
        out.extend((piece, tok) for piece in fold_words(raw))
        offset += len(_raw_chars(raw))
    return out


def matched_tokens(ex, clip: Clip) -> tuple[list[EvalToken], float, str]:
    """First token of every decoded word piece that exactly matches a reference word, with the
    reference span; also the clip's WER against the reference text."""
    pieces = [pt for word in ex.words for pt in word_pieces(ex, word)]
    alignment = align_words([p for p, _ in pieces], fold_words(clip.text))
    # each folded reference word with the span of the word it came from ("25" -> twenty, five)
    ref_pieces = [(piece, w) for w in clip.words or [] for piece in fold_words(w["word"])]
    if [p for p, _ in ref_pieces] != fold_words(clip.text):
        ref_pieces = []  # spans do not line up with the text's words: WER only
    out, seen = [], set()
    for hi, ri in sorted(alignment.matches().items()) if ref_pieces else []:
        tok = ex.tokens[pieces[hi][1]]
        if tok.index in seen:  # "twenty" and "five" of one "25": evaluate its token once
            continue
        seen.add(tok.index)
        window = ex.windows[tok.window]
        offset_s = window.offset_samples / ex.sample_rate
        ref = ref_pieces[ri][1]
        span = (ref["start"] - offset_s, ref["end"] - offset_s)
        if span[1] <= 0 or span[0] >= window.n_valid * ex.frame_s:
            continue
        out.append(EvalToken(tok.window, window.tokens.index(tok.index), tok.index, tok.text,
                             pieces[hi][0], ref["word"], span))
    return out, alignment.wer, ex.text


def evenly(items: list, k: int) -> list:
    if k <= 0 or len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


# ----------------------------------------------------------------------------- metrics per clip

def inf_masks(n_valid: int, settings: Settings, rng) -> np.ndarray:
    """Random perturbations I for INF: 100 ms segments masked with probability inf_p (>= 1 per mask)."""
    seg = settings.inf_segment_frames
    n_seg = (n_valid + seg - 1) // seg
    masks = rng.random((settings.n_inf, n_seg)) < settings.inf_p
    for row in masks:
        if not row.any():
            row[rng.integers(n_seg)] = True
    return np.repeat(masks, seg, axis=1)[:, :n_valid]


def perturbed_versions(audio: np.ndarray, sr: int, frame_s: float, settings: Settings, seed: int) -> dict:
    """STAB's perturbed clips: {kind: (samples, frames the maps shift by)}; ``frame_s``: seconds per map frame."""
    shift = int(round(settings.shift_ms / 1000 * sr))
    speech = audio[np.abs(audio) > 0]
    return {
        "noise": (add_noise(audio, settings.noise_snr_db, seed=seed, reference=speech), 0),
        "shift": (np.concatenate([np.zeros(shift, np.float32), audio]).astype(np.float32),
                  int(round(settings.shift_ms / 1000 / frame_s))),
    }


def same_prefix(a_ids: list[int], b_ids: list[int], position: int) -> bool:
    return len(b_ids) > position and a_ids[: position + 1] == b_ids[: position + 1]


def is_expensive(method) -> bool:
    """Methods whose maps cost encoder passes (perturbation families, per-token IG)."""
    return method.family == "perturbation" or not method.batched


def enabled_metrics(settings: Settings) -> list:
    """The registered metrics this run evaluates (STAB's need only with ``settings.stab``)."""
    return [m for m in M.METRICS.values() if settings.stab or "perturbed_decodes" not in m.needs]


def evaluate_clip(model, clip: Clip, dataset: str, specs: list[MethodSpec], settings: Settings,
                  log=print, clip_rank: int = 0, bars: bool = False) -> dict:
    """Every method and registered metric on one clip: ``{"clip": info, "records": [...], "timing": {...}}``.
    What the metrics need is prepared once: model passes per window, STAB's perturbed decodes.
    ``bars``: progress bars for the stages (shared passes, STAB decodes, methods, metrics, STAB)."""
    from .. import explain

    rng = np.random.default_rng(settings.seed + int(hashlib.md5(clip.id.encode()).hexdigest()[:6], 16))
    t0 = time.time()
    ex = explain(model, str(clip.path))
    tokens, wer, hyp = matched_tokens(ex, clip)
    if settings.max_tokens_per_clip:
        tokens = evenly(tokens, settings.max_tokens_per_clip)
    faith = {t.token_index for t in evenly(tokens, settings.faith_per_clip)}
    frame_s = ex.frame_s
    records = []
    clip_info = {"dataset": dataset, "clip": clip.id, "wer": wer, "hyp": hyp, "ref": clip.text,
                 "n_tokens": len(tokens), "n_faith": len(faith)}
    if not tokens:
        return {"clip": clip_info, "records": [], "timing": {}}
    by_window: dict[int, list[EvalToken]] = {}
    for t in tokens:
        by_window.setdefault(t.window, []).append(t)
    metrics = enabled_metrics(settings)
    needs = set().union(*(m.needs for m in metrics))

    # shared model passes per window: clean log-probs and INF perturbations
    from ..methods._common import MaskedScorer
    scorers, clean_lp, inf_data = {}, {}, {}
    if "model_passes" in needs:
        for w, toks in bar(by_window.items(), "shared passes", enabled=bars, total=len(by_window), unit="window"):
            window = ex.windows[w]
            positions = [t.position for t in toks]
            scorers[w] = MaskedScorer(window, positions)
            clean_lp[w] = scorers[w].masked(np.zeros((1, window.n_valid), bool))[0].numpy()
            masks = inf_masks(window.n_valid, settings, rng)
            inf_data[w] = (masks, scorers[w].masked(masks).numpy())
    timing = {"decode_and_shared_s": time.time() - t0}

    # perturbed clips for STAB
    stab_ex = {}
    if "perturbed_decodes" in needs:
        audio = np.asarray(ex.audio)  # whole: the perturbed versions are whole clips (seconds long)
        versions = perturbed_versions(audio, ex.sample_rate, ex.frame_s, settings, settings.seed + 7).items()
        for kind, (pert, shift_frames) in bar(versions, "stab: decode perturbed", enabled=bars, unit="clip"):
            stab_ex[kind] = (explain(model, pert, sample_rate=ex.sample_rate), shift_frames)

    method_bar = bar(specs, "methods", enabled=bars, unit="method")
    for spec in method_bar:
        method_bar.set_postfix_str(spec.name)
        m = spec.method
        ts = time.time()
        maps = {}
        for w, toks in by_window.items():
            chosen = toks if m.batched else [t for t in toks if t.token_index in faith]
            if not chosen:
                continue
            out = m.compute(ex.windows[w], [t.position for t in chosen], **spec.params)
            for t, r in zip(chosen, out):
                maps[t.token_index] = M.as_map(r)
        runtime = (time.time() - ts) / max(len(maps), 1)
        tf = time.time()
        stab_here = bool(stab_ex) and (not is_expensive(m) or settings.expensive_stab(clip_rank))
        pmaps = {kind: {} for kind in stab_ex} if stab_here else None
        for kind, (pex, _) in stab_ex.items() if stab_here else ():
            pwin_tokens = {}
            for t in tokens:
                if t.token_index not in maps or t.window >= len(pex.windows):
                    continue
                if same_prefix(ex.windows[t.window].ids, pex.windows[t.window].ids, t.position):
                    pwin_tokens.setdefault(t.window, []).append(t)
            for w, toks in bar(pwin_tokens.items(), f"{spec.name}: stab {kind}", enabled=bars,
                               total=len(pwin_tokens), unit="window"):
                out = m.compute(pex.windows[w], [t.position for t in toks], **spec.params)
                for t, r in zip(toks, out):
                    pmaps[kind][t.token_index] = M.as_map(r)
        faith_method = settings.faith_methods is None or spec.name in settings.faith_methods
        for t in bar(tokens, f"{spec.name}: metrics", enabled=bars, unit="token"):
            if t.token_index not in maps:
                continue
            r = maps[t.token_index]
            window = ex.windows[t.window]
            col = [x.token_index for x in by_window[t.window]].index(t.token_index)
            rec = {"dataset": dataset, "clip": clip.id, "wer": wer, "method": spec.name,
                   "token_index": t.token_index, "position": t.position, "token": t.token_text,
                   "word": t.word, "ref_word": t.ref_word, "span_start": t.span[0], "span_end": t.span[1],
                   "n_valid": window.n_valid, "peak_s": (int(np.argmax(r)) + 0.5) * frame_s}
            inp = M.TokenInput(r, t.span, frame_s, settings, runtime_s=runtime, n_valid=window.n_valid)
            if scorers:
                scorer = scorers[t.window]
                inp.clean_logp = float(clean_lp[t.window][col])
                inp.masked_logp = lambda masks, scorer=scorer, col=col: scorer.masked(masks)[:, col].numpy()
                masks, lp_masked = inf_data[t.window]
                inp.inf = (masks, lp_masked[:, col])
            if pmaps is not None:
                inp.perturbed = {kind: (pmaps[kind].get(t.token_index), shift)
                                 for kind, (_, shift) in stab_ex.items()}
            faith_token = t.token_index in faith and faith_method
            for metric in metrics:
                if "faith_tokens" in metric.needs and not faith_token:
                    continue
                rec.update(metric.compute(inp))
            records.append(rec)
        timing[spec.name] = {"maps_s": runtime * max(len(maps), 1), "metrics_s": time.time() - tf,
                             "n_maps": len(maps)}
        log(f"  {clip.id[:40]:40s} {spec.name:26s} maps {runtime * max(len(maps), 1):6.1f}s "
            f"metrics {time.time() - tf:5.1f}s")
    clip_info["passes"] = sum(s.n_evaluated for s in scorers.values())
    return {"clip": clip_info, "records": records, "timing": timing}


# ----------------------------------------------------------------------------- driver

def _safe_name(text: str) -> str:
    """A file-name-safe stand-in for an id or dataset name (the cache key keeps it unique)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:40].strip("_") or "clip"


def clip_key(clip: Clip, dataset: str, run: dict, expensive_stab: bool) -> str:
    """Content hash of one clip's job: the run (settings, model, methods, their parameters) and the
    clip itself (dataset, id, text, word spans, the audio file's bytes)."""
    h = hashlib.sha256(json.dumps({"run": run, "dataset": dataset, "id": clip.id, "text": clip.text,
                                   "words": clip.words, "expensive_stab": expensive_stab},
                                  sort_keys=True, default=str).encode())
    with open(clip.path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def _read_cache(path: Path) -> dict | None:
    """A cached clip result, or None when absent, unreadable or not shaped like one (recompute then)."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(result, dict) and isinstance(result.get("records"), list) and isinstance(result.get("clip"), dict)
    return result if ok else None


def one_line(err: BaseException) -> str:
    """``Type: first line of the message``, at most 300 characters."""
    text = str(err).strip().splitlines()
    line = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."


@dataclass
class ClipJob:
    """One clip's evaluation, as handed to an executor (picklable: methods by their spec strings)."""
    index: int  # position in the run's clip order
    dataset: str
    clip: Clip
    rank: int  # the clip's rank in its dataset (``Settings.expensive_stab``)
    methods: list
    settings: Settings
    bars: bool = False  # stage bars and per-method lines: in this process only
    log: object = None


def evaluate_job(adapter, job: ClipJob) -> dict:
    """``evaluate_clip`` for one job, with its wall time; an executor's ``work``."""
    if not Path(job.clip.path).is_file():  # a Ray worker on another machine without the file
        raise FileNotFoundError(f"{job.clip.path} is not on this worker ({socket.gethostname()}): the workers "
                                f"read the clips at the manifest's paths (use a shared filesystem)")
    specs = [parse_method(m, job.settings.params) for m in job.methods]
    t = time.time()
    result = evaluate_clip(adapter, job.clip, job.dataset, specs, job.settings, log=job.log or (lambda msg: None),
                           clip_rank=job.rank, bars=job.bars)
    result["clip"]["seconds"] = time.time() - t
    return result


def check_methods(methods: list, params: dict, adapter) -> None:
    """``check_supported`` from method specs (for an executor's workers, which load their own model)."""
    check_supported([parse_method(m, params) for m in methods], adapter)


def run_bench(manifest, model="tiny.en", methods=None, out_dir="bench_out", *, settings: Settings | None = None,
              device: str = "cpu", report: bool = True, log=None, cached_only: bool = False,
              allow_outside_paths: bool = False, progress: bool | None = None, quiet: bool = False,
              language: str | None = "en", executor: str = "local", workers: int | None = None,
              ray_options: dict | None = None) -> dict:
    """Run LEAF-XBench on one or more manifests; write records + reports into ``out_dir``.

    ``manifest``: path or list of paths (the dataset name is the file stem), all checked before
    any work (``ManifestError`` lists every problem). ``model``: a name for ``load_model`` or an
    adapter. ``methods``: method specs (``name`` or ``name@k=v,...``), default ``DEFAULT_METHODS``.
    ``progress``: progress bars on stderr (default: on a terminal or in a notebook, unless
    ``quiet``); ``quiet`` also drops the per-clip log lines (failures are still printed).
    ``language``: what a multilingual model transcribes (the manifests' references are English;
    None detects it per clip). ``executor``: ``"local"`` (this process), ``"ray"`` (a Ray
    cluster started here) or ``"ray://HOST:PORT"``, with ``workers`` models loaded in parallel
    (``executors.run_jobs``; Ray needs ``model`` as a name); the records are the same.

    Returns ``{"records", "clips", "failed", "interrupted", "planned_clips", "settings"}``: a clip
    that raises is listed in ``failed`` with a one-line reason and the run goes on; Ctrl-C
    finishes the current clip and returns what is done with ``interrupted`` set (reports
    written; the same call resumes from the cache).
    """
    import torch

    from ..executors import check_executor, run_jobs
    from ..models import load_model

    settings = settings or Settings()
    executor = check_executor(executor)
    local = executor == "local"
    bars = bars_enabled(quiet) if progress is None else bool(progress)
    log = log or ((lambda msg: None) if quiet else say)
    manifests = [manifest] if isinstance(manifest, (str, Path)) else list(manifest)
    methods = list(methods or DEFAULT_METHODS)
    specs = [parse_method(m, settings.params) for m in methods]
    per_manifest = [[(name, c, rank) for rank, c in enumerate(clips)]
                    for name, clips in load_manifests(manifests, allow_outside_paths=allow_outside_paths)]
    torch.manual_seed(settings.seed)
    by_name = isinstance(model, (str, Path))
    # on Ray every worker loads its own model (and checks the methods against it)
    adapter = None if cached_only or (by_name and not local) else \
        load_model(model, device=device, language=language) if by_name else model
    model_name = str(model) if by_name else getattr(adapter, "name", "model")
    if adapter is not None:
        check_supported(specs, adapter)
    run = {"version": CACHE_VERSION, "settings": asdict(settings), "model": model_name, "methods": methods,
           "params": {s.name: s.params for s in specs}}
    out = Path(out_dir)
    cache_dir = out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    # interleave the datasets, so that an interrupted run still covers each of them
    jobs = [job for group in itertools.zip_longest(*per_manifest) for job in group if job is not None]
    results, failures, cache_files, todo = {}, {}, {}, []
    started = time.time()

    def tag(i):
        return f"[{i + 1}/{len(jobs)}] {jobs[i][0]}/{jobs[i][1].id}"

    def fail(i, err):
        dataset, clip, _ = jobs[i]
        failures[i] = {"dataset": dataset, "clip": clip.id, "file": str(clip.path), "reason": one_line(err)}
        say(f"{tag(i)}: failed: {one_line(err)}")

    stop_line = (f"leafx-widgets bench: interrupted; finishing the current clip{'' if local else 's'}, then "
                 f"writing a partial report to {out} (Ctrl-C again to stop at once)")
    with GracefulStop(stop_line) as stop:
        clip_bar = bar(total=len(jobs), desc="clips", enabled=bars, leave=True, unit="clip")
        computing = {"started": time.time(), "done": 0}

        def on_start(job):
            clip_bar.set_postfix_str(f"{job.dataset}/{job.clip.id}"[:40])
            log(f"{tag(job.index)} ...")

        def on_result(job, result, error):
            i = job.index
            clip_bar.update(1)
            try:
                if error is not None:
                    raise error
                atomic_write(cache_files[i], json.dumps(result, default=_json_default))
            except Exception as err:  # one bad clip must not take the others with it
                fail(i, err)
                return
            results[i] = result
            computing["done"] += 1
            eta = (time.time() - computing["started"]) / computing["done"] * (len(todo) - computing["done"])
            log(f"{tag(i)}: {result['clip']['seconds']:.0f}s, WER {result['clip']['wer']:.2f}, "
                f"{result['clip']['n_tokens']} tokens; ETA {eta / 60:.1f} min")

        try:
            # first what the cache holds, then the rest through the executor
            for i, (dataset, clip, rank) in enumerate(jobs):
                if stop.requested:
                    break
                try:
                    key = clip_key(clip, dataset, run, settings.expensive_stab(rank))
                    cache_files[i] = cache_dir / f"{_safe_name(dataset)}__{_safe_name(clip.id)}__{key}.json"
                    result = _read_cache(cache_files[i])
                except Exception as err:
                    fail(i, err)
                    clip_bar.update(1)
                    continue
                if result is not None:
                    log(f"{tag(i)}: cached")
                    results[i] = result
                    clip_bar.update(1)
                elif cached_only:
                    log(f"{tag(i)}: not cached, left out (--cached-only)")
                    clip_bar.update(1)
                else:
                    todo.append(ClipJob(i, dataset, clip, rank, methods, settings, bars=bars and local,
                                        log=log if local else None))
            if todo and not stop.requested:
                computing["started"] = time.time()
                run_jobs(todo, evaluate_job, executor=executor, model=adapter if local else model_name,
                         device=device, language=language, on_result=on_result, on_start=on_start,
                         should_stop=lambda: stop.requested, num_workers=workers, ray_options=ray_options,
                         check=None if local else partial(check_methods, methods, settings.params), log=log)
        except KeyboardInterrupt:  # the second Ctrl-C: the running clips are dropped, nothing cached
            stop.requested = True
        finally:
            clip_bar.close()
        interrupted = stop.requested
        result = {"records": [r for i in sorted(results) for r in results[i]["records"]],
                  "clips": [{**results[i]["clip"], "timing": results[i].get("timing", {})} for i in sorted(results)],
                  "failed": [failures[i] for i in sorted(failures)], "interrupted": interrupted,
                  "planned_clips": len(jobs),
                  "settings": {**asdict(settings), "model": model_name, "methods": methods,
                               "method_params": {s.name: s.params for s in specs},
                               "wall_s": time.time() - started}}
        if report:
            from .report import write_reports
            write_reports(result, out)
    return result


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


EXAMPLES = """examples:
  leafx-widgets bench --manifest bench_data/librivox.json --methods leafx_sf raa_last
  leafx-widgets bench --manifest bench_data/librivox.json --manifest bench_data/espeak.json \\
      --faith-per-clip 1 --param lime.n_samples=8 --out bench_out
  leafx-widgets bench --manifest bench_data/librivox.json --out bench_out --cached-only
  leafx-widgets bench --manifest bench_data/librivox.json --executor ray --workers 2
  leafx-widgets bench --manifest bench_data/librivox.json --executor ray://head-node:10001 --device cuda

Build the manifests first: python -m leafx_widgets.bench.manifests bench_data
Exit status: 0 done, 1 some clips failed (listed in the report), 2 bad input (every
problem listed, nothing run), 130 interrupted (rerun the same command to resume)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leafx-widgets bench", description="LEAF-XBench: metrics for every method",
                                formatter_class=HelpFormatter, epilog=EXAMPLES)
    p.add_argument("--manifest", action="append", required=True,
                   help="manifest JSON: a list of {id, file, text, words} (repeat for several)")
    p.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    p.add_argument("--methods", nargs="+", default=None,
                   help="method specs: name or name@key=value,... (default: every method of the benchmark, "
                        "runner.DEFAULT_METHODS)")
    p.add_argument("--out", default="bench_out", help="folder for the reports and the per-clip cache")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")
    p.add_argument("--language", default="en",
                   help="language a multilingual model transcribes (the references' language); 'auto' detects it")
    add_threads_option(p)
    add_executor_options(p)
    p.add_argument("--faith-per-clip", type=int, default=Settings.faith_per_clip,
                   help="tokens per clip for D-AOPC/insertion and per-token methods (0 = all)")
    p.add_argument("--max-tokens-per-clip", type=int, default=0, help="cap evaluated words per clip (0 = all)")
    p.add_argument("--n-inf", type=int, default=Settings.n_inf, help="random masks per window for INF")
    p.add_argument("--levels", type=float, nargs="+", default=list(DELETION_LEVELS),
                   help="fractions of the real frames masked for D-AOPC / restored for insertion")
    p.add_argument("--no-stab", action="store_true", help="skip STAB (the two perturbed decodes per clip)")
    p.add_argument("--stab-expensive-clips", type=int, default=Settings.stab_expensive_clips,
                   help="clips per dataset where perturbation methods and IG also get STAB (0 = all, -1 = none)")
    p.add_argument("--faith-all-methods", action="store_true",
                   help="D-AOPC/insertion for every method (default: the main-table methods only)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="override a method parameter, e.g. lime.n_samples=16 (repeat)")
    p.add_argument("--seed", type=int, default=0, help="seed for INF masks and STAB noise")
    p.add_argument("--cached-only", action="store_true",
                   help="report on the clips already in the cache (an interrupted run) without computing more")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a manifest name audio or TextGrid files outside its own folder")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars or per-clip lines (failures are still printed)")
    return p


def settings_from_args(args) -> Settings:
    params: dict = {}
    for item in args.param:
        target, _, value = item.partition("=")
        method, _, key = target.rpartition(".")
        if not method or not key:
            raise ValueError(f"--param wants METHOD.KEY=VALUE, got {item!r}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        params.setdefault(method, {})[key] = value
    return Settings(faith_per_clip=args.faith_per_clip, max_tokens_per_clip=args.max_tokens_per_clip,
                    n_inf=args.n_inf, stab=not args.no_stab, seed=args.seed, params=params,
                    stab_expensive_clips=args.stab_expensive_clips, levels=tuple(args.levels),
                    faith_methods=None if args.faith_all_methods else DEFAULT_FAITH_METHODS)


def main(argv=None) -> int:
    """Exit status: 0 done, 1 some clips failed, 2 bad input, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        set_threads(args.threads)
        result = run_bench(args.manifest, args.model, args.methods, args.out, settings=settings_from_args(args),
                           device=args.device, cached_only=args.cached_only,
                           allow_outside_paths=args.allow_outside_paths, quiet=args.quiet,
                           language=None if args.language == "auto" else args.language,
                           executor=args.executor, workers=args.workers)
    except ValueError as err:  # bad input: a ManifestError, an unknown method or parameter, a bad --param
        print(f"leafx-widgets bench: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # before the clips started (model loading) or while writing the reports
        say("leafx-widgets bench: interrupted")
        return EXIT_INTERRUPTED
    failed = result["failed"]
    print(f"{len(result['records'])} records, {len(result['clips'])} of {result['planned_clips']} clips"
          + (f", {len(failed)} failed" if failed else "") + (" (interrupted)" if result["interrupted"] else "")
          + f" -> {args.out}")
    if result["interrupted"]:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_CLIPS if failed else 0


if __name__ == "__main__":
    sys.exit(main())
