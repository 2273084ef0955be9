"""``leafx-widgets audit``: the token audit of a whole corpus.

    leafx-widgets audit --manifest M.json [--manifest N.json] --out OUT
    leafx-widgets audit --audio-dir DIR --out OUT          # no references: no error labels, no WER

Python: ``run_audit(manifests=None, audio_dir=None, out_dir="audit_out", model="tiny.en", ...)``
or ``main(argv)``. Each clip is one job for ``audit_clip(adapter, job)`` (a module-level function,
so an executor can ship it to other processes): decode, ``audit()`` every token, and for every
substituted word the contrast of the model's word against the reference word
(``contrast.py``). Outputs in OUT:

* ``tokens.csv`` and ``tokens.parquet``: one row per token, ``dataset``, ``clip`` then
  ``table.COLUMNS`` and the contrast columns (``contrast_foil``, ``contrast_delta`` = log
  p(model's word) - log p(reference word) on the clip, ``contrast_total`` = the map's sum, how
  much the sound (against silence) moved the choice towards the model's word, ``contrast_peak_s``);
* ``clips.csv``: per clip WER, substitutions, insertions, deletions, flagged tokens, transcript;
* ``deletions.csv``: reference words the transcripts lack; ``failed.csv``: clips that failed,
  each with a one-line reason;
* ``report.html``: a self-contained bokeh page ranking clips and tokens.

Like the bench: every input is checked before any work; each clip's result is cached under
``OUT/cache`` keyed by a hash of the audio bytes, reference and settings (``bench.runner.clip_key``),
so the same command resumes and an edited clip is recomputed; a failing clip is recorded and the
run goes on (exit 1); Ctrl-C finishes the running clip, writes the outputs for what is done and
exits 130 (a second Ctrl-C stops at once).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_write
from .._progress import bar, bars_enabled, say
from ..threads import add_threads_option, set_threads
from .table import COLUMNS, FLAG_THRESHOLD, NOISE_SNR_DB

CACHE_VERSION = 2  # bump when a change makes cached clip results obsolete
EXIT_FAILED_CLIPS, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".webm")
CONTRAST_COLUMNS = ("contrast_foil", "contrast_delta", "contrast_total", "contrast_peak_s")
CLIP_COLUMNS = ("dataset", "clip", "file", "wer", "n_tokens", "n_flagged", "n_substitutions", "n_insertions",
                "n_deletions", "mean_score", "max_score", "hyp", "ref", "seconds")


@dataclass
class AuditSettings:
    method: str | None = None  # None: DEFAULT_METHOD
    stability: bool = True
    noise_snr_db: float = NOISE_SNR_DB
    seed: int = 0
    threshold: float = FLAG_THRESHOLD
    contrast_steps: int = 16  # 0: no contrasts for substitutions


def audit_clip(adapter, job: dict) -> dict:
    """One clip's audit: ``{"clip": summary, "tokens": [row], "deletions": [...]}`` (JSON-able).

    ``job``: ``{"dataset", "clip", "file", "text" (or None), "words" (or None), "settings"}``."""
    import numpy as np

    from ..explanation import explain
    from .contrast import contrast
    from .table import audit

    s = AuditSettings(**job["settings"])
    t0 = time.time()
    ref = {"text": job["text"], "words": job["words"]} if job.get("text") else None
    ex = explain(adapter, job["file"], progress=False, reference=ref)
    df = audit(ex, method=s.method, stability=s.stability, noise_snr_db=s.noise_snr_db, seed=s.seed,
               threshold=s.threshold)
    for col in CONTRAST_COLUMNS:
        df[col] = None if col == "contrast_foil" else np.nan
    if ref is not None and s.contrast_steps > 0:
        subs = df[df["error"] == "substitution"]
        for _, rows in subs.groupby("word_index", sort=True):
            content = [i for i, text in zip(rows.index, rows["text"]) if any(c.isalnum() for c in text)]
            first = content[0] if content else rows.index[0]
            c = contrast(ex, int(df.at[first, "token"]), rows["ref_word"].iloc[0], steps=s.contrast_steps)
            df.loc[rows.index, list(CONTRAST_COLUMNS)] = [c.foil, c.delta, c.total, c.peak_s]
    errors = df["error"]
    deletions = df.attrs["deletions"]
    info = {"dataset": job["dataset"], "clip": job["clip"], "file": job["file"], "wer": df.attrs["wer"],
            "n_tokens": len(df), "n_flagged": int(df["flag"].sum()),
            "n_substitutions": int(df.loc[errors == "substitution", "word_index"].nunique()),
            "n_insertions": int(df.loc[errors == "insertion", "word_index"].nunique()),
            "n_deletions": len(deletions) if ref is not None else None,
            "mean_score": float(df["score"].mean()) if len(df) else None,
            "max_score": float(df["score"].max()) if len(df) else None,
            "hyp": ex.text, "ref": job.get("text"), "seconds": round(time.time() - t0, 2)}
    rows = [{k: _plain(v) for k, v in row.items()} for row in df.to_dict("records")]
    return {"clip": info, "tokens": rows, "deletions": deletions}


def _plain(v):
    """numpy scalars to Python; NaN to None (JSON has no NaN)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# ----------------------------------------------------------------------------- jobs

def jobs_from_manifests(manifests, *, allow_outside_paths: bool = False) -> list[dict]:
    """One job per clip of every manifest (all checked first: one ManifestError lists every problem),
    datasets interleaved so an interrupted run still covers each."""
    import itertools

    from ..bench.manifests import load_manifests

    per = [[{"dataset": name, "clip": c.id, "file": str(c.path), "text": c.text, "words": c.words} for c in clips]
           for name, clips in load_manifests(manifests, allow_outside_paths=allow_outside_paths)]
    return [j for group in itertools.zip_longest(*per) for j in group if j is not None]


def jobs_from_audio_dir(folder) -> list[dict]:
    """One job per audio file under ``folder`` (recursively, sorted), without references."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"--audio-dir {folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"--audio-dir {folder} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [{"dataset": root.name or "audio", "clip": str(p.relative_to(root)), "file": str(p.resolve()),
             "text": None, "words": None} for p in files]


# ----------------------------------------------------------------------------- driver

def run_audit(manifests=None, audio_dir=None, out_dir="audit_out", *, model="tiny.en", device: str = "cpu",
              language: str | None = "en", settings: AuditSettings | None = None, executor: str = "local",
              workers: int | None = None, ray_options: dict | None = None, allow_outside_paths: bool = False, quiet: bool = False, progress: bool | None = None,
              log=None) -> dict:
    """Audit every clip of ``manifests`` (paths) or every audio file of ``audio_dir`` into ``out_dir``.

    ``executor``: ``"local"`` (this process), ``"ray"`` (a Ray cluster started here) or
    ``"ray://HOST:PORT"`` with ``workers`` model-holding workers (``executors.run_jobs``; on Ray
    ``model`` must be a name); the tables are the same whichever runs the clips.

    Returns ``{"tokens": DataFrame, "clips": DataFrame, "failed": [...], "interrupted", "planned_clips"}``;
    see the module docstring for the files and the resume / Ctrl-C behaviour."""
    from ..bench.console import GracefulStop
    from ..bench.manifests import Clip
    from ..bench.runner import _safe_name, clip_key, one_line
    from ..executors import check_executor, run_jobs

    settings = settings or AuditSettings()
    executor = check_executor(executor)
    if (manifests is None) == (audio_dir is None):
        raise ValueError("give either manifests or audio_dir (a corpus with references, or a folder of audio)")
    if not 0 <= settings.threshold <= 1:
        raise ValueError(f"the flag threshold must be in [0, 1] (the score's range), got {settings.threshold}")
    if settings.contrast_steps < 0:
        raise ValueError(f"contrast steps must be >= 0 (0: no contrasts), got {settings.contrast_steps}")
    if isinstance(manifests, (str, Path)):
        manifests = [manifests]
    jobs = jobs_from_manifests(manifests, allow_outside_paths=allow_outside_paths) if manifests is not None \
        else jobs_from_audio_dir(audio_dir)
    bars = bars_enabled(quiet) if progress is None else bool(progress)
    log = log or ((lambda msg: None) if quiet else say)
    out = Path(out_dir)
    cache_dir = out / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    model_name = str(model) if isinstance(model, (str, Path)) else getattr(model, "name", "model")
    run = {"version": CACHE_VERSION, "kind": "audit", "model": model_name, "language": language,
           "settings": asdict(settings)}
    results: dict[int, dict] = {}
    failed: list[dict] = []
    todo = []
    for i, job in enumerate(jobs):
        job["settings"] = asdict(settings)
        clip = Clip(job["clip"], Path(job["file"]), job["text"] or "", job["words"])
        try:
            key = clip_key(clip, job["dataset"], run, False)
        except OSError as err:  # unreadable audio: a failed clip, not a crash
            failed.append({"order": i, "dataset": job["dataset"], "clip": job["clip"], "file": job["file"],
                           "reason": one_line(err)})
            continue
        job["order"] = i
        job["cache"] = str(cache_dir / f"{_safe_name(job['dataset'])}__{_safe_name(job['clip'])}__{key}.json")
        cached = _read_cache_file(job["cache"])
        if cached is not None:
            results[i] = cached
        else:
            todo.append(job)
    log(f"{len(jobs)} clips: {len(results)} cached, {len(todo)} to audit")
    started = time.time()
    stop_line = (f"leafx-widgets audit: interrupted; finishing the running clip, then writing the outputs for "
                 f"what is done to {out} (Ctrl-C again to stop at once)")
    clip_bar = bar(total=len(jobs), desc="clips", enabled=bars, leave=True, unit="clip")
    clip_bar.update(len(results) + len(failed))

    def on_result(job, result, error):
        tag = f"{job['dataset']}/{job['clip']}"
        if error is not None:
            failed.append({"order": job["order"], "dataset": job["dataset"], "clip": job["clip"],
                           "file": job["file"], "reason": one_line(error)})
            say(f"{tag}: failed: {one_line(error)}")
        else:
            atomic_write(job["cache"], json.dumps(result))
            results[job["order"]] = result
            log(f"{tag}: {result['clip']['seconds']:.1f}s, {result['clip']['n_flagged']} flagged"
                + (f", WER {result['clip']['wer']:.2f}" if result["clip"]["wer"] is not None else ""))
        clip_bar.update(1)

    with GracefulStop(stop_line) as stop:
        try:
            if todo:
                run_jobs(todo, audit_clip, executor=executor, model=model, device=device, language=language,
                         on_result=on_result, should_stop=lambda: stop.requested, num_workers=workers,
                         ray_options=ray_options, log=log)
        except KeyboardInterrupt:  # the second Ctrl-C: the running clip is dropped, nothing cached for it
            stop.requested = True
        finally:
            clip_bar.close()
        interrupted = stop.requested
    outcome = write_outputs(out, [results[i] for i in sorted(results)], sorted(failed, key=lambda f: f["order"]),
                            settings=settings, model_name=model_name, language=language, wall_s=time.time() - started,
                            planned=len(jobs), interrupted=interrupted)
    return outcome


def _read_cache_file(path) -> dict | None:
    """A cached clip result, or None when absent, unreadable or not shaped like one (audited again then)."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(result, dict) and isinstance(result.get("tokens"), list) and isinstance(result.get("clip"), dict)
    return result if ok else None


def write_outputs(out: Path, results: list[dict], failed: list[dict], *, settings: AuditSettings,
                  model_name: str, language: str | None = None, wall_s: float, planned: int, interrupted: bool) -> dict:
    """tokens.csv/.parquet, clips.csv, deletions.csv, failed.csv and report.html, each written atomically."""
    import pandas as pd

    token_cols = ["dataset", "clip", *COLUMNS, *CONTRAST_COLUMNS]
    rows = [{"dataset": r["clip"]["dataset"], "clip": r["clip"]["clip"], **t} for r in results for t in r["tokens"]]
    tokens = pd.DataFrame(rows, columns=token_cols)
    tokens = tokens.astype({"token": "int64", "word_index": "int64", "changed": "bool", "flag": "bool",
                            **{c: "float64" for c in ("start_s", "end_s", "peak_s", "logprob", "entropy", "outside",
                                                      "stability", "score", "contrast_delta", "contrast_total",
                                                      "contrast_peak_s")}})
    clips = pd.DataFrame([r["clip"] for r in results], columns=list(CLIP_COLUMNS))
    deletions = pd.DataFrame([{"dataset": r["clip"]["dataset"], "clip": r["clip"]["clip"], **d}
                              for r in results for d in r["deletions"]],
                             columns=["dataset", "clip", "ref_index", "word", "start", "end", "after_token"])
    failed_df = pd.DataFrame([{k: f[k] for k in ("dataset", "clip", "file", "reason")} for f in failed],
                             columns=["dataset", "clip", "file", "reason"])
    atomic_write(out / "tokens.csv", tokens.to_csv(index=False))
    atomic_write(out / "tokens.parquet", lambda fh: tokens.to_parquet(fh, index=False))
    atomic_write(out / "clips.csv", clips.to_csv(index=False))
    atomic_write(out / "deletions.csv", deletions.to_csv(index=False))
    atomic_write(out / "failed.csv", failed_df.to_csv(index=False))
    from .. import __version__

    # enough to tell two audits apart: the model, the language asked for (None: each clip's own, detected or the
    # model's only one), the settings and the package's version
    meta = {"model": model_name, "language": language, "leafx_widgets": __version__, "settings": asdict(settings), "planned_clips": planned, "done_clips": len(results),
            "failed_clips": len(failed), "interrupted": interrupted, "wall_s": round(wall_s, 1)}
    atomic_write(out / "audit.json", json.dumps(meta, indent=1))
    from .report import html_report

    html_report(tokens, clips, failed_df, meta, out / "report.html")
    return {"tokens": tokens, "clips": clips, "deletions": deletions, "failed": failed, "interrupted": interrupted,
            "planned_clips": planned}


# ----------------------------------------------------------------------------- command line

EXAMPLES = """examples:
  leafx-widgets audit --manifest bench_data/librivox.json --out audit_out
  leafx-widgets audit --manifest a.json --manifest b.json --out audit_out --no-stability
  leafx-widgets audit --audio-dir recordings/ --out audit_out      # no references: no error labels
  leafx-widgets audit --manifest a.json --out audit_out --executor ray --workers 2

Exit status: 0 done, 1 some clips failed (failed.csv says why), 2 bad input (nothing run),
130 interrupted (rerun the same command to resume from OUT/cache)."""


def build_parser() -> argparse.ArgumentParser:
    from ..bench.console import HelpFormatter
    from ..executors import add_executor_options

    p = argparse.ArgumentParser(prog="leafx-widgets audit", formatter_class=HelpFormatter, epilog=EXAMPLES,
                                description="Audit every token of a corpus: log-prob, map entropy, mass outside "
                                            "its reference word, stability under noise, a suspicion score and a "
                                            "flag; with references, error labels, WER and contrasts.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", action="append", help="manifest JSON: a list of {id, file, text, words} "
                                                         "(repeat for several)")
    src.add_argument("--audio-dir", help="a folder of audio files (searched recursively), without references")
    p.add_argument("--out", default="audit_out", help="folder for the tables, the report and the per-clip cache")
    p.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, mps ...")
    p.add_argument("--language", default="en", help="language a multilingual model transcribes; 'auto' detects it")
    p.add_argument("--method", default=None, help="the map the signals read (default: leafx_sf)")
    p.add_argument("--threshold", type=float, default=FLAG_THRESHOLD, help="flag tokens whose score is at least this")
    p.add_argument("--noise-snr", type=float, default=NOISE_SNR_DB, help="SNR (dB) of the noise for stability")
    p.add_argument("--no-stability", action="store_true", help="skip the noisy decode (stability left out)")
    p.add_argument("--contrast-steps", type=int, default=AuditSettings.contrast_steps,
                   help="integration steps of each substitution's contrast (0: no contrasts)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    add_executor_options(p)
    add_threads_option(p)
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="let a manifest name audio files outside its own folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-clip lines (failures still shown)")
    return p


def main(argv=None) -> int:
    """Exit status: 0 done, 1 some clips failed, 2 bad input, 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        set_threads(args.threads)
        if args.method is not None:
            from ..methods import get_method

            get_method(args.method)
        result = run_audit(args.manifest, args.audio_dir, args.out, model=args.model, device=args.device,
                           language=None if args.language == "auto" else args.language,
                           settings=AuditSettings(method=args.method, stability=not args.no_stability,
                                                  noise_snr_db=args.noise_snr, seed=args.seed,
                                                  threshold=args.threshold, contrast_steps=args.contrast_steps),
                           executor=args.executor, workers=args.workers,
                           allow_outside_paths=args.allow_outside_paths, quiet=args.quiet)
    except ValueError as err:  # bad input: a ManifestError, an empty folder, a bad option
        print(f"leafx-widgets audit: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # while loading the model or writing the outputs
        say("leafx-widgets audit: interrupted")
        return EXIT_INTERRUPTED
    tokens, failed = result["tokens"], result["failed"]
    print(f"{len(tokens)} tokens ({int(tokens['flag'].sum())} flagged), {len(result['clips'])} of "
          f"{result['planned_clips']} clips" + (f", {len(failed)} failed" if failed else "")
          + (" (interrupted)" if result["interrupted"] else "") + f" -> {args.out}")
    if result["interrupted"]:
        return EXIT_INTERRUPTED
    return EXIT_FAILED_CLIPS if failed else 0


if __name__ == "__main__":
    sys.exit(main())
