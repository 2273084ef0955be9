"""Command line: ``leafx-widgets explain | bench | audit | lab | methods``. Only wiring; the work lives elsewhere.

It answers at once: nothing heavy (torch, transformers, librosa) is imported until the
arguments are checked, and every argument is checked before the model loads.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from . import __version__
from .threads import add_threads_option, check_threads, set_threads

DEFAULT_METHOD = "leafx_sf"  # methods.DEFAULT_METHOD, repeated so --help needs no import (a test holds them equal)
DTYPES = ("float32", "float16", "bfloat16")
# formats soundfile cannot read but the loader's librosa/audioread fallback may (ffmpeg)
FALLBACK_SUFFIXES = {".m4a", ".mp4", ".aac", ".wma", ".webm", ".opus", ".amr"}
BENCH_MODULES = {"captum": "captum", "sklearn": "scikit-learn", "praatio": "praatio", "pocketsphinx": "pocketsphinx"}
LAB_MODULES = {"jupyterlab": "jupyterlab"}
AUDIT_MODULES = {"pandas": "pandas", "pyarrow": "pyarrow"}
NOTEBOOKS_DIR = "leafx-notebooks"  # where `lab` copies the shipped notebooks (wheel installs)


class UsageError(Exception):
    """A bad argument: printed as one line, exit 2."""


# -- checks that run before anything heavy -----------------------------------------------------
def check_audio_path(path: str) -> Path:
    from .audio import check_path  # numpy only: still no torch

    p = Path(path).expanduser()
    check_path(p)  # FileNotFoundError / AudioError: one line from main(), as a UsageError is
    if not os.access(p, os.R_OK):
        raise UsageError(f"audio file {path} is not readable (permissions)")
    import soundfile

    try:
        soundfile.info(str(p))
    except Exception as err:  # noqa: BLE001 - any reason the header does not read
        if p.suffix.lower() not in FALLBACK_SUFFIXES:
            raise UsageError(f"cannot read {path} as audio: {str(err).splitlines()[0]}") from None
    return p


def check_writable(path: str, what: str) -> Path:
    """``path``'s folder exists (or can be made) and takes a new file."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{what} {path} is a folder; give a file name")
    check_folder_writable(str(p.parent) or ".", what, shown=path)
    return p


def check_folder_writable(path: str, what: str, shown: str | None = None) -> Path:
    """The folder ``path`` exists (or can be made) and takes a new file."""
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".leafx-check-"):
            pass
    except OSError as err:
        raise UsageError(f"cannot write {what} {shown or path}: {err.strerror or err}") from None
    return p


def check_extra(modules: dict[str, str], extra: str, what: str) -> None:
    missing = [pip for mod, pip in modules.items() if importlib.util.find_spec(mod) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise UsageError(f"{what} needs {', '.join(missing)}, which {verb} not installed: "
                         f'pip install "leafx-widgets[{extra}]"')


def check_duration(path: Path, max_duration_s: float) -> None:
    """``path`` lasts at most ``max_duration_s`` (from its header: nothing decoded, no model loaded)."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:  # noqa: BLE001 - a format only the loader's fallback reads: it checks the length itself
        return
    if info.samplerate and info.frames / info.samplerate > max_duration_s:
        raise UsageError(f"{path} lasts {info.frames / info.samplerate:.1f} s, over --max-duration "
                         f"{max_duration_s:g} s; cut it, or raise --max-duration")


# the loader names its own keyword arguments; on the command line they are options
CLI_WORDS = {"pass allow_truncated=True": "pass --allow-truncated",
             "pass max_duration_s=None if you mean it": "raise --max-duration if you mean it"}
TIMESTAMPS = {"auto": None, "on": True, "off": False}


def _cli_message(message: str) -> str:
    for words, option in CLI_WORDS.items():
        message = message.replace(words, option)
    return message


def decoding_options(args) -> dict:
    """explain()'s DecodeOptions from --no-condition, --timestamps and --no-fallback."""
    options = {"condition_on_previous_text": not args.no_condition, "timestamps": TIMESTAMPS[args.timestamps],
               "task": args.task}
    if args.no_fallback:
        options["temperatures"] = (0.0,)
    if args.language not in (None, "auto"):
        options["language"] = args.language
    if args.text is not None:
        options["text"] = args.text
    return options


def fallback_mark(temperature: float) -> str:
    return f"  [fallback: sampled at temperature {temperature:g}]" if temperature > 0 else ""


def report(ex, peaks: list[float], peak_method: str) -> list[str]:
    """The printed summary: transcript, segments with their times (when there are several windows), each
    word's peak. What was decoded under a fallback (sampled at a temperature above 0) is marked."""
    lines = [f"transcript: {ex.text}"]
    if len(ex.windows) > 1 and ex.segments:
        lines.append(f"segments ({len(ex.segments)} in {len(ex.windows)} windows):")
        lines += [f"  {seg.start:8.2f} - {seg.end:8.2f} s  {seg.text}{fallback_mark(seg.temperature)}"
                  for seg in ex.segments]
    peak_head = f"peak (s) [{peak_method}]"
    width = max(8, len(peak_head))
    lines.append(f"{'word':<20} {peak_head:>{width}} {'p(first token)':>15}")
    marked = False
    for word, peak in zip(ex.words, peaks):
        first = ex.tokens[word.tokens[0]]
        fallback = any(ex.tokens[t].fallback for t in word.tokens)
        marked |= fallback
        text = word.text + (" *" if fallback else "")
        lines.append(f"{text:<20} {peak:>{width}.2f} {math.exp(first.logprob):>15.2f}")
    if marked:
        lines.append("* decoded under a fallback: its window failed the log-prob or compression check "
                     "when decoded greedily, and was sampled")
    return lines


# -- explain -----------------------------------------------------------------------------------
def _explain(args) -> int:
    audio = check_audio_path(args.audio) if args.audio else None
    if not args.max_duration > 0:  # also NaN
        raise UsageError(f"--max-duration must be a positive number of seconds, got {args.max_duration:g}")
    if audio is not None:
        check_duration(audio, args.max_duration)
    if args.json:
        check_writable(args.json, "--json")
    try:
        check_threads(args.threads)
    except ValueError as err:
        raise UsageError(str(err)) from None

    import torch

    from .methods import get_method
    from .models import resolve_device

    try:
        resolve_device(args.device)
        variants = [v.strip() for v in args.methods.split(",") if v.strip()]
        if not variants:
            raise UsageError("--methods is empty; name at least one method, e.g. --methods base")
        for name in [*variants, args.peaks]:
            get_method(name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    set_threads(args.threads)

    from . import explain, load_model, sample_path

    audio = audio or sample_path()
    quiet = args.quiet
    t0 = time.perf_counter()
    model = load_model(args.model, device=args.device, dtype=getattr(torch, args.dtype))
    t1 = time.perf_counter()
    from .audio import AudioError, load_audio

    try:  # progress: explain's bar over seconds of audio, on a terminal
        clip = load_audio(audio, target_rate=model.sample_rate, max_duration_s=args.max_duration,
                          allow_truncated=args.allow_truncated)
        ex = explain(model, clip, progress=False if quiet else None, max_duration_s=args.max_duration,
                     **decoding_options(args))
    except (AudioError, ValueError) as err:  # bad audio, or a language / task / text the model refuses
        raise UsageError(_cli_message(str(err))) from None
    t2 = time.perf_counter()
    from ._progress import progress

    todo = [(v, tok.index) for v in dict.fromkeys([*variants, args.peaks]) for tok in ex.tokens]
    for v, i in progress(todo, total=len(todo), desc="maps", unit="map", enabled=False if quiet else None):
        ex.map(i, v)
    t3 = time.perf_counter()
    peaks = ex.word_peaks(args.peaks)
    print(f"{audio}  ({ex.duration_s:.2f} s, model {ex.model_name}, {len(ex.tokens)} tokens)")
    if ex.language_probs:
        print(f"language: {ex.language} (detected, p {ex.language_probs[ex.language]:.2f}); task: {ex.task}")
    elif ex.task != "transcribe" or ex.language != "en":
        print(f"language: {ex.language}; task: {ex.task}")
    print("\n".join(report(ex, peaks, args.peaks)))
    print(f"load {t1 - t0:.2f} s, decode {t2 - t1:.2f} s, maps ({','.join(variants)}) {t3 - t2:.2f} s")
    if args.json:
        path = ex.save_json(args.json, variants, peak_method=args.peaks)
        print(f"wrote {path} (maps: {', '.join(dict.fromkeys([*variants, args.peaks]))}; word peaks: {args.peaks})")
    return 0


# -- bench -------------------------------------------------------------------------------------
def _bench(rest: list[str]) -> int:
    if not any(a in ("-h", "--help") for a in rest):
        check_extra(BENCH_MODULES, "bench", "the benchmark")
    from .bench import runner

    return runner.main(rest)


# -- audit -------------------------------------------------------------------------------------
def _audit(rest: list[str]) -> int:
    if not any(a in ("-h", "--help") for a in rest):
        check_extra(AUDIT_MODULES, "audit", "the audit")
    from .audit import corpus

    return corpus.main(rest)


# -- lab ---------------------------------------------------------------------------------------
def shipped_notebooks() -> Path | None:
    """The notebooks folder: inside the package (wheel install) or beside it (source checkout)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "notebooks", here.parent / "notebooks"):
        if (folder / "quickstart.ipynb").exists():
            return folder
    return None


def notebooks_for_lab(target: str | None) -> Path:
    """The folder JupyterLab opens. A source checkout opens its own ``notebooks/``; a wheel install
    copies the shipped notebooks into ``target`` (default ./leafx-notebooks) once, never overwriting
    a notebook the user has edited."""
    source = shipped_notebooks()
    if source is None:
        raise UsageError("this installation ships no notebooks; reinstall leafx-widgets from a wheel or a checkout")
    inside_package = source.parent == Path(__file__).resolve().parent
    if target is None and not inside_package:
        return source
    dest = check_folder_writable(target or NOTEBOOKS_DIR, "the notebooks folder")
    copied = 0
    for nb in sorted(source.iterdir()):
        if nb.suffix in (".ipynb", ".md") and not (dest / nb.name).exists():
            shutil.copy2(nb, dest / nb.name)
            copied += 1
    if copied:
        print(f"leafx-widgets: copied {copied} notebooks to {dest}/", file=sys.stderr)
    return dest


def lab_command(jupyter_args: list[str], folder: Path) -> list[str]:
    """``jupyter lab`` on the quickstart, with the user's arguments passed through; as root it adds
    --allow-root (containers and Binder-like hosts), which Jupyter otherwise refuses."""
    cmd = [sys.executable, "-m", "jupyter", "lab"]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in jupyter_args:
        cmd.append("--allow-root")
    if not any(a.startswith(("--notebook-dir", "--ServerApp.root_dir", "--root-dir")) for a in jupyter_args):
        cmd.append(f"--ServerApp.root_dir={folder}")
        names_a_file = any(a.endswith(".ipynb") or (not a.startswith("-") and Path(a).exists()) for a in jupyter_args)
        if not names_a_file:  # open the quickstart
            cmd.append(str(folder / "quickstart.ipynb"))
    return [*cmd, *jupyter_args]


def _lab(args, rest: list[str]) -> int:
    check_extra(LAB_MODULES, "lab", "leafx-widgets lab")
    folder = notebooks_for_lab(args.notebooks)
    cmd = lab_command(rest, folder)
    sys.stdout.flush(), sys.stderr.flush()
    if os.name == "posix":  # Jupyter takes over the process: its own Ctrl-C handling, its exit code
        os.execv(cmd[0], cmd)
    import subprocess

    return subprocess.call(cmd)


# -- methods -----------------------------------------------------------------------------------
def _methods(args) -> int:
    from .methods import METHODS

    print(f"{'name':<18} {'family':<13} {'cost':<5} {'available':<10} label")
    for name, m in METHODS.items():
        status = "yes" if m.available else f'no: pip install "leafx-widgets[{m.extra}]"'
        mark = "*" if name == DEFAULT_METHOD else " "
        print(f"{name:<17}{mark} {m.family:<13} {m.cost:<5} {status:<10} {m.label}")
    print("* the default (word peaks, the widget's first view)")
    return 0


# -- parser ------------------------------------------------------------------------------------
class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help, except where there is none to show."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


EPILOG = """examples:
  leafx-widgets explain                              # the bundled LibriVox clip with the bundled tiny.en
  leafx-widgets explain talk.wav --methods base,grad,causal --json talk.json
  leafx-widgets explain talk.wav --model openai/whisper-small --device cuda --dtype float16
  leafx-widgets explain lecture.mp3 --no-condition   # long-form, each window decoded without earlier text
  leafx-widgets lab                                  # JupyterLab on the quickstart notebook
  leafx-widgets lab --no-browser --port 8899         # extra arguments go to jupyter lab
  leafx-widgets bench --manifest M.json --out results/
  leafx-widgets audit --manifest M.json --out audit/   # every token scored, flagged, labelled against the reference
  leafx-widgets methods                              # every method, and which extra it needs
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leafx-widgets", description="LEAF-X explanations for Whisper: which "
                                     "stretch of the audio each decoded token rests on.",
                                     epilog=EPILOG, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{explain,lab,bench,audit,methods}")
    ex = sub.add_parser("explain", help="decode audio and print each word's peak evidence time",
                        description="Decode AUDIO once, compute the maps of --methods for every token, print "
                                    "each word's peak time and optionally write the JSON.",
                        epilog=EPILOG, formatter_class=_Formatter)
    ex.add_argument("audio", nargs="?", help="wav/flac/mp3/ogg file (default: the bundled LibriVox sample)")
    ex.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a model folder, or a Hugging Face id")
    ex.add_argument("--methods", "--variants", dest="methods", default=DEFAULT_METHOD,
                    help="comma-separated methods to compute and save, e.g. base,grad,causal,base-vn "
                         "(list them with `leafx-widgets methods`)")
    ex.add_argument("--peaks", default=DEFAULT_METHOD, metavar="METHOD",
                    help="the method whose map gives each word's peak time (printed and saved)")
    ex.add_argument("--json", metavar="OUT.json", help="write the leafx-explanation/1 JSON here")
    ex.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    ex.add_argument("--dtype", default="float32", choices=DTYPES, help="model weights and activations")
    add_threads_option(ex)
    ex.add_argument("--max-duration", type=float, default=3 * 3600.0, metavar="SECONDS",
                    help="refuse longer audio (a guard against mistaken inputs)")
    ex.add_argument("--allow-truncated", action="store_true",
                    help="explain what a truncated or damaged file holds instead of refusing it")
    ex.add_argument("--timestamps", choices=tuple(TIMESTAMPS), default="auto",
                    help="Whisper's long-form decoding with timestamps: auto (audio over 30 s), on, or off "
                         "(fixed 30 s windows)")
    ex.add_argument("--no-condition", action="store_true",
                    help="do not condition each window on the text decoded before it")
    ex.add_argument("--no-fallback", action="store_true",
                    help="greedy decoding only: no retry at higher temperatures when a window fails "
                         "the log-prob or compression check")
    ex.add_argument("--language", default=None, metavar="CODE",
                    help="multilingual models: the spoken language (de, fr, ...); default: detected")
    ex.add_argument("--task", default="transcribe", choices=("transcribe", "translate"),
                    help="multilingual models: translate writes English and explains it over the foreign audio")
    ex.add_argument("--text", default=None, metavar="TRANSCRIPT",
                    help="explain this transcript (a reference, another hypothesis) instead of decoding: "
                         "each token's log-prob under the model, and its maps")
    ex.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    lab = sub.add_parser("lab", help="open JupyterLab on the quickstart notebook",
                         description="JupyterLab on the quickstart notebook. Any argument not listed here goes "
                                     "to `jupyter lab` (--port, --no-browser, --ip ...). As root it adds "
                                     "--allow-root. An install from a wheel copies the notebooks into "
                                     f"./{NOTEBOOKS_DIR} first (edited notebooks are never overwritten).",
                         formatter_class=_Formatter)
    lab.add_argument("--notebooks", metavar="DIR", default=None,
                     help=f"copy the notebooks here and open them (default: the checkout's notebooks/, "
                          f"or ./{NOTEBOOKS_DIR} for a wheel install)")
    sub.add_parser("bench", help="LEAF-XBench on a manifest (see `leafx-widgets bench --help`)", add_help=False)
    sub.add_parser("audit", help="audit every token of a corpus (see `leafx-widgets audit --help`)", add_help=False)
    sub.add_parser("methods", help="list the attribution methods and whether each is installed",
                   formatter_class=_Formatter)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] in (["bench"], ["audit"]):  # they parse their own options
        args, rest = parser.parse_args(argv[:1]), argv[1:]
    elif argv[:1] == ["lab"]:
        args, rest = parser.parse_known_args(argv)
    else:
        args, rest = parser.parse_args(argv), []
    try:
        if args.command == "explain":
            return _explain(args)
        if args.command == "bench":
            return _bench(rest)
        if args.command == "audit":
            return _audit(rest)
        if args.command == "lab":
            return _lab(args, rest)
        return _methods(args)
    except KeyboardInterrupt:
        print("leafx-widgets: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except (UsageError, ValueError, FileNotFoundError, IndexError, TypeError) as err:
        print(f"leafx-widgets: error: {err}", file=sys.stderr)
        return 2


def entry() -> None:
    """The console script: ``main``'s status as the process's exit status. After Ctrl-C it leaves at once
    (os._exit): a half-done import or computation must not turn exit 130 into death by SIGINT at shutdown."""
    status = main()
    if status == 128 + signal.SIGINT:
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    entry()
