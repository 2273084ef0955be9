"""Detection power of the audit: AUROC for the tokens of misrecognised words (substitutions and
insertions against correct words), of ``score`` and of each signal, beside the model's own
log-prob, with bootstrap intervals over clips (tokens of one clip are not independent).

    python -m leafx_widgets.audit.detection --manifest M.json [...] --out DIR [--noisy-snr 10 5]

runs (or resumes) the corpus audit of the manifests, and of copies of their clips with white noise
at each ``--noisy-snr`` (more errors to detect; the same references and spans), then prints the
table. ``--tokens DIR/tokens.parquet`` reads a finished audit instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# signal -> (column, sign): larger value = more suspicious after multiplying by sign
SIGNALS = {"score": ("score", 1), "log-prob alone (1 - p)": ("logprob", -1), "entropy": ("entropy", 1),
           "1 - stability": ("stability", -1), "outside (matched/substituted words)": ("outside", 1)}


def auroc(values: np.ndarray, positive: np.ndarray) -> float:
    """P(value of a positive > value of a negative), ties counted half (Mann-Whitney)."""
    from ..bench.metrics import rankdata

    pos = positive.astype(bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def detection_table(tokens, *, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per signal: AUROC, its 95% bootstrap interval (clips resampled), and the paired
    difference to log-prob alone with its interval."""
    df = tokens[tokens["error"].notna()].copy()
    df["positive"] = df["error"].isin(["substitution", "insertion"])
    df["key"] = df["dataset"].astype(str) + "/" + df["clip"].astype(str)
    groups = [g for _, g in df.groupby("key", sort=True)]
    rng = np.random.default_rng(seed)
    boots = [rng.integers(len(groups), size=len(groups)) for _ in range(n_boot)]
    base_col, base_sign = SIGNALS["log-prob alone (1 - p)"]

    def value(frame, col, sign):
        ok = frame[col].notna()
        return auroc(sign * frame.loc[ok, col].to_numpy(float), frame.loc[ok, "positive"].to_numpy())

    rows = []
    for name, (col, sign) in SIGNALS.items():
        point = value(df, col, sign)
        diffs, values = [], []
        for idx in boots:
            sample = __import__("pandas").concat([groups[i] for i in idx])
            v = value(sample, col, sign)
            values.append(v)
            if col != base_col:
                ok = sample[col].notna()
                diffs.append(v - value(sample[ok], base_col, base_sign))
        vals = np.array(values, float)
        vals = vals[np.isfinite(vals)]
        ok = df[col].notna()
        row = {"signal": name, "auroc": point, "n_pos": int(df.loc[ok, "positive"].sum()),
               "n_neg": int((~df.loc[ok, "positive"]).sum()),
               "ci": tuple(np.percentile(vals, [2.5, 97.5])) if len(vals) else (np.nan, np.nan)}
        if diffs:
            d = np.array(diffs, float)
            d = d[np.isfinite(d)]
            base_here = value(df[ok], base_col, base_sign)
            row["diff"] = point - base_here
            row["diff_ci"] = tuple(np.percentile(d, [2.5, 97.5])) if len(d) else (np.nan, np.nan)
        rows.append(row)
    return rows


def format_table(rows: list[dict], n_clips: int) -> str:
    lines = [f"AUROC for tokens of misrecognised words (substitution or insertion vs correct), {n_clips} clips; "
             "95% intervals: clips resampled",
             f"{'signal':<38} {'AUROC':>6} {'95% CI':>15} {'pos/neg':>9} {'vs log-prob [95% CI]':>26}"]
    for r in rows:
        diff = f"{r['diff']:+.3f} [{r['diff_ci'][0]:+.3f}, {r['diff_ci'][1]:+.3f}]" if "diff" in r else ""
        lines.append(f"{r['signal']:<38} {r['auroc']:6.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] "
                     f"{r['n_pos']:>4}/{r['n_neg']:<4} {diff:>26}")
    return "\n".join(lines)


def noisy_manifest(manifest: Path, snr_db: float, out_dir: Path, *, seed: int = 0) -> Path:
    """A copy of ``manifest`` whose clips carry white noise at ``snr_db`` (relative to the speech),
    written once into ``out_dir`` (same ids, references and spans)."""
    import soundfile

    from ..atomic import atomic_write
    from ..bench.manifests import add_noise, load_manifest

    name = f"{manifest.stem}_snr{snr_db:g}"
    folder = out_dir / name
    target = out_dir / f"{name}.json"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, clip in enumerate(load_manifest(manifest)):
        audio, rate = soundfile.read(str(clip.path), dtype="float32", always_2d=False)
        audio = audio.mean(axis=1) if audio.ndim > 1 else audio
        noisy = add_noise(audio, snr_db, seed=seed + i, reference=audio[np.abs(audio) > 0])
        wav = folder / f"{i:03d}.wav"
        soundfile.write(str(wav), noisy, rate)
        entries.append({"id": clip.id, "file": f"{name}/{wav.name}", "text": clip.text, "words": clip.words})
    atomic_write(target, json.dumps(entries, indent=1))
    return target


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m leafx_widgets.audit.detection", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", action="append", default=[], help="manifest with references (repeat)")
    p.add_argument("--out", default="audit_detection", help="folder for the noisy copies and the audit")
    p.add_argument("--noisy-snr", type=float, nargs="*", default=[], help="also audit noisy copies at these SNRs (dB)")
    p.add_argument("--tokens", help="a finished audit's tokens.parquet (then nothing is run)")
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args(argv)
    import pandas as pd

    if args.tokens:
        tokens = pd.read_parquet(args.tokens)
    else:
        if not args.manifest:
            p.error("give --manifest (one or more) or --tokens")
        from .corpus import AuditSettings, run_audit

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        manifests = [Path(m) for m in args.manifest]
        manifests += [noisy_manifest(m, snr, out / "noisy") for snr in args.noisy_snr for m in map(Path, args.manifest)]
        result = run_audit([str(m) for m in manifests], out_dir=out / "audit",
                           settings=AuditSettings(contrast_steps=0), allow_outside_paths=False)
        tokens = result["tokens"]
    n_clips = tokens.groupby(["dataset", "clip"]).ngroups
    print(format_table(detection_table(tokens, n_boot=args.n_boot), n_clips))
    return 0


if __name__ == "__main__":
    sys.exit(main())
