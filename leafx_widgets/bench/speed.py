"""Cost of LEAF-X relative to plain transcription, measured in the same run.

    python -m leafx_widgets.bench.speed [--model tiny.en] [--repeats 3] [--device cpu]
    python -m leafx_widgets.bench.speed --longform 120,600

Prints a markdown table: median seconds of plain transcription (features, encoder,
greedy decoding) and of transcription plus every token's map for each variant,
and their ratios. With ``--memory``, each stage's peak resident memory above the
level before it, in a fresh process (RSS sampled every 2 ms).

``--longform SECONDS``: recordings stitched from LibriVox clips (or ``--manifest`` clips) with
0.8 s gaps, repeated to that length; each is transcribed by transformers' own long-form
``generate`` (timestamps, sequential 30 s windows) and explained by ``lw.explain`` with every
token's default-method map, in the same run, with the word recall of each.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
STAGES = ("transcribe", "base", "grad", "causal", "base-vn", "grad-vn", "causal-vn")


def speech_clip(seconds: float) -> np.ndarray:
    """Real LibriVox speech, clips joined (0.3 s pauses) and cut to ``seconds``."""
    import soundfile

    pieces = []
    paths = sorted(glob.glob(LIBRIVOX))
    if not paths:
        raise SystemExit("needs Debian's pocketsphinx-testdata (LibriVox clips)")
    while sum(len(p) for p in pieces) < seconds * 16000:
        for path in paths:
            pieces += [soundfile.read(path, dtype="float32")[0], np.zeros(4800, np.float32)]
    return np.concatenate(pieces)[: int(seconds * 16000)]


def run_stage(model, audio, stage: str) -> int:
    """Transcribe, then (unless stage == "transcribe") compute every token's map. Returns token count."""
    import leafx_widgets as lw

    ex = lw.explain(model, audio, sample_rate=16000)
    if stage != "transcribe":
        for tok in ex.tokens:
            ex.map(tok.index, stage)
    return len(ex.tokens)


def time_stages(model, audio, repeats: int, stages) -> dict[str, float]:
    run_stage(model, audio, "transcribe")  # warm-up
    times = {s: [] for s in stages}
    for _ in range(repeats):
        for stage in stages:  # interleaved, so machine load hits every stage alike
            t0 = time.perf_counter()
            run_stage(model, audio, stage)
            times[stage].append(time.perf_counter() - t0)
    return {s: statistics.median(v) for s, v in times.items()}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stage_memory(model_name: str, seconds: float, stage: str, device: str) -> float:
    """Peak resident memory above the level before the stage (MB), sampled every 2 ms while it runs.

    (``ru_maxrss`` cannot tell: loading the model peaks higher than any stage.)"""
    import leafx_widgets as lw

    model = lw.load_model(model_name, device=device)
    audio = speech_clip(seconds)
    run_stage(model, audio, "transcribe")  # warm-up: allocator pools, lazy imports
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.002)

    before = _rss_mb()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_stage(model, audio, stage)
    done.set()
    sampler.join()
    return max(peak[0], _rss_mb()) - before


def peak_rss_mb(model_name: str, seconds: float, stage: str, device: str) -> float:
    code = (f"from leafx_widgets.bench.speed import stage_memory;"
            f"print(stage_memory({model_name!r}, {seconds}, {stage!r}, {device!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


# -- long recordings: lw.explain against transformers' long-form generate ---------------------------------
def librivox_clips():
    """The LibriVox clips of Debian's pocketsphinx-testdata with their transcripts (no word spans)."""
    from .manifests import LIBRIVOX_DIR, Clip, read_librivox_transcription

    texts = read_librivox_transcription(LIBRIVOX_DIR) if LIBRIVOX_DIR.exists() else {}
    if not texts:
        raise SystemExit("needs Debian's pocketsphinx-testdata (LibriVox clips)")
    return [Clip(file_id, LIBRIVOX_DIR / f"{file_id}.wav", text, None) for file_id, text in sorted(texts.items())]


def long_recording(seconds: float, clips=None, *, gap_s: float = 0.8):
    """``clips`` (default: ``librivox_clips()``) one after another with ``gap_s`` of silence, cycled until
    the recording lasts at least ``seconds`` (a ``longform.Stitched``: samples and reference texts)."""
    import soundfile

    from .longform import stitch

    clips = list(clips or librivox_clips())
    lengths = {c.id: soundfile.info(str(c.path)).duration for c in clips}
    chosen, total = [], 0.0
    while total < seconds:
        clip = clips[len(chosen) % len(clips)]
        chosen.append(clip)
        total += lengths[clip.id] + gap_s
    return stitch(chosen, gap_s=gap_s)


def hf_generation_config(adapter):
    """A copy of the model's generation config set up for transformers' long-form generate with timestamps
    (a converted checkpoint, such as the bundled tiny.en, lacks Whisper's generation settings)."""
    import copy

    from ..models.whisper import MAX_INITIAL_TIMESTAMP_INDEX

    gc = copy.deepcopy(adapter.model.generation_config)
    gc.no_timestamps_token_id = adapter.no_timestamps
    gc.max_initial_timestamp_index = MAX_INITIAL_TIMESTAMP_INDEX
    gc.is_multilingual = adapter.multilingual
    gc.decoder_start_token_id = adapter.sot
    gc.eos_token_id = gc.pad_token_id = adapter.eot
    gc.prev_sot_token_id = adapter.start_of_prev
    gc.suppress_tokens = [i for i in adapter.suppress if i < adapter.eot]
    gc.begin_suppress_tokens = list(adapter.suppress_begin)
    gc.max_length = adapter.model.config.max_target_positions  # else generate stops each window after 20 tokens
    return gc


# openai-whisper's ``transcribe`` defaults (temperature fallback, its two thresholds, the no-speech skip and
# conditioning on earlier text) as transformers' long-form generate takes them
WHISPER_TRANSCRIBE = {"temperature": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "compression_ratio_threshold": 2.4,
                      "logprob_threshold": -1.0, "no_speech_threshold": 0.6, "condition_on_prev_tokens": True}


def hf_transcribe(adapter, samples: np.ndarray, generation_config=None, **generate_kwargs) -> str:
    """Long-form transcription with transformers' ``generate(..., return_timestamps=True)``: plain (greedy, no
    conditioning) by default, or with ``**WHISPER_TRANSCRIBE`` (then seeded: sampling at T > 0 repeats)."""
    import torch
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=adapter.n_mels, sampling_rate=adapter.sample_rate)
    inputs = extractor(samples, sampling_rate=adapter.sample_rate, return_tensors="pt", truncation=False,
                       padding="longest", return_attention_mask=True)
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # Whisper's generate warns about its own suppress-token arguments
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            out = adapter.model.generate(inputs.input_features.to(adapter.device, adapter.dtype),
                                         attention_mask=inputs.attention_mask.to(adapter.device),
                                         generation_config=generation_config or hf_generation_config(adapter),
                                         return_timestamps=True, **generate_kwargs)
    finally:
        logging.set_verbosity(verbosity)
    ids = out.sequences[0] if hasattr(out, "sequences") else out[0]
    return adapter.text([int(i) for i in ids if int(i) < adapter.eot])


def longform_speed(adapter, stitched, *, repeats: int = 1) -> dict:
    """Seconds (median of ``repeats``, interleaved) and word recall of (a) transformers' long-form
    generate and (b) ``lw.explain`` + every token's default-method map, on one recording."""
    import leafx_widgets as lw

    from .longform import recall

    reference = " ".join(c.text for c in stitched.clips)
    config = hf_generation_config(adapter)
    times = {"generate": [], "explain": [], "maps": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        hf_text = hf_transcribe(adapter, stitched.samples, config)
        times["generate"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ex = lw.explain(adapter, stitched.samples, sample_rate=16000, progress=False)
        t1 = time.perf_counter()
        ex.maps()  # served from the maps explain computed with each window
        t2 = time.perf_counter()
        times["explain"].append(t2 - t0)
        times["maps"].append(t2 - t1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": round(stitched.duration_s, 1), "tokens": len(ex.tokens), "windows": len(ex.windows),
            "generate_s": med["generate"], "explain_s": med["explain"], "maps_s": med["maps"],
            "ratio": med["explain"] / med["generate"], "recall_generate": recall(hf_text, reference)[0],
            "recall_explain": recall(ex.text, reference)[0], "recomputed": ex.windows[0].store.recomputed
            if ex.windows and ex.windows[0].store is not None else 0}


LONGFORM_COLUMNS = ("audio", "tokens", "generate (s)", "explain + maps (s)", "of which maps (s)",
                    "explain / generate", "recall generate", "recall explain")


def longform_table(rows) -> str:
    """The markdown table of ``longform_speed`` rows."""
    lines = ["| " + " | ".join(LONGFORM_COLUMNS) + " |", "|---" * len(LONGFORM_COLUMNS) + "|"]
    for r in rows:
        lines.append(f"| {r['seconds']:.0f} s | {r['tokens']} | {r['generate_s']:.2f} | {r['explain_s']:.2f} | "
                     f"{r['maps_s']:.2f} | {r['ratio']:.2f}x | {r['recall_generate']:.3f} | {r['recall_explain']:.3f} |")
    return "\n".join(lines)


# -- many files: explain_many against a loop over explain -----------------------------------------------
def batch_sources(n_short: int = 6, long_s=(120.0, 95.0)) -> list[np.ndarray]:
    """``n_short`` short clips (LibriVox, then the bundled sample) and long stitched recordings."""
    import soundfile

    import leafx_widgets as lw

    paths = [str(c.path) for c in librivox_clips()] + [str(lw.sample_path())]
    shorts = [soundfile.read(paths[i % len(paths)], dtype="float32")[0] for i in range(n_short)]
    return shorts + [long_recording(s).samples for s in long_s]


def batch_speed(adapter, sources, *, batch_size: int = 8, repeats: int = 1) -> dict:
    """Seconds (median of ``repeats``, interleaved) of a loop of ``explain`` over ``sources`` and of
    ``explain_many``, and whether every window's tokens agree."""
    import leafx_widgets as lw

    times = {"loop": [], "many": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        alone = [lw.explain(adapter, s, sample_rate=16000, progress=False) for s in sources]
        times["loop"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        many = lw.explain_many(adapter, sources, sample_rate=16000, batch_size=batch_size, progress=False)
        times["many"].append(time.perf_counter() - t0)
    same = all([(w.prompt, w.ids) for w in a.windows] == [(w.prompt, w.ids) for w in b.windows]
               for a, b in zip(alone, many))
    loop, batched = statistics.median(times["loop"]), statistics.median(times["many"])
    return {"sources": len(sources), "audio_s": round(sum(len(s) for s in sources) / 16000, 1),
            "windows": sum(len(ex.windows) for ex in alone), "batch_size": batch_size, "loop_s": loop,
            "many_s": batched, "ratio": batched / loop, "same_tokens": same}


def batch_table(rows) -> str:
    lines = ["| recordings | audio (s) | windows | batch_size | loop of explain (s) | explain_many (s) | "
             "explain_many / loop | same tokens |", "|---" * 8 + "|"]
    for r in rows:
        lines.append(f"| {r['sources']} | {r['audio_s']:.0f} | {r['windows']} | {r['batch_size']} | {r['loop_s']:.2f} | "
                     f"{r['many_s']:.2f} | {r['ratio']:.2f}x | {'yes' if r['same_tokens'] else 'NO'} |")
    return "\n".join(lines)


EXAMPLES = """examples:
  python -m leafx_widgets.bench.speed --repeats 3
  python -m leafx_widgets.bench.speed --seconds 10 --stages transcribe,base,leafx_sf --memory --json speed.json
  python -m leafx_widgets.bench.speed --longform 120,600 --threads 2
  python -m leafx_widgets.bench.speed --batch 8 --threads 2"""


def main(argv=None) -> int:
    from .console import HelpFormatter

    parser = argparse.ArgumentParser(prog="python -m leafx_widgets.bench.speed", description=__doc__,
                                     formatter_class=HelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--model", default="tiny.en", help="tiny.en (bundled), a folder, or a Hugging Face id")
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, mps ...")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per stage (the median is shown)")
    parser.add_argument("--seconds", default="10,30", help="clip lengths in seconds, comma-separated")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated: transcribe, then methods (each: transcription + every token's map)")
    parser.add_argument("--memory", action="store_true", help="also each stage's peak memory (fresh processes)")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--longform", metavar="SECONDS",
                        help="instead: recordings of these lengths (comma-separated), explain + maps against "
                             "transformers' long-form generate")
    parser.add_argument("--manifest", action="append", help="with --longform: stitch these manifests' clips "
                        "(repeatable; default: the LibriVox clips)")
    parser.add_argument("--batch", type=int, metavar="BATCH_SIZE",
                        help="instead: explain_many over 6 short clips and 2 long recordings against a loop of explain")
    parser.add_argument("--inside", action="store_true", help="the logit lens and activation patching against one "
                        "teacher-forced decoder pass, on a --seconds clip (one window)")
    parser.add_argument("--threads", type=int, help="torch threads for every measurement (default: torch's)")
    args = parser.parse_args(argv)
    import torch

    import leafx_widgets as lw

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.longform:
        return longform_main(args)
    if args.inside:
        model = lw.load_model(args.model, device=args.device)
        print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, "
              f"median of {args.repeats} interleaved runs\n")
        rows = [inside_speed(model, float(s), repeats=args.repeats) for s in args.seconds.split(",")]
        print(inside_table(rows))
        if args.json:
            from ..atomic import atomic_write

            atomic_write(args.json, json.dumps(rows, indent=1))
        return 0
    if args.batch:
        model = lw.load_model(args.model, device=args.device)
        lw.explain(model, speech_clip(10), sample_rate=16000, progress=False)  # warm-up
        print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, "
              f"median of {args.repeats} interleaved runs\n")
        print(batch_table([batch_speed(model, batch_sources(), batch_size=args.batch, repeats=args.repeats)]))
        return 0

    stages = [s.strip() for s in args.stages.split(",")]
    if stages[0] != "transcribe":
        stages.insert(0, "transcribe")
    model = lw.load_model(args.model, device=args.device)
    print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} interleaved runs\n")
    print("| clip | tokens | " + " | ".join(f"{s} (s)" for s in stages) + " | "
          + " | ".join(f"{s} / transcribe" for s in stages[1:]) + " |")
    print("|---" * (2 + 2 * len(stages) - 1) + "|")
    results = []
    for seconds in [float(s) for s in args.seconds.split(",")]:
        audio = speech_clip(seconds)
        n_tokens = len(lw.explain(model, audio, sample_rate=16000).tokens)
        times = time_stages(model, audio, args.repeats, stages)
        ratios = {s: times[s] / times["transcribe"] for s in stages[1:]}
        print(f"| {seconds:.0f} s | {n_tokens} | " + " | ".join(f"{times[s]:.2f}" for s in stages) + " | "
              + " | ".join(f"{ratios[s]:.2f}x" for s in stages[1:]) + " |")
        row = {"seconds": seconds, "tokens": n_tokens, "times": times, "ratios": ratios}
        if args.memory:
            row["peak_rss_mb"] = {s: peak_rss_mb(args.model, seconds, s, args.device) for s in stages}
        results.append(row)
    if args.memory:
        print("\npeak resident memory above the level before the stage (MB, fresh process, sampled every 2 ms):\n")
        print("| clip | " + " | ".join(stages) + " |")
        print("|---" * (1 + len(stages)) + "|")
        for row in results:
            print(f"| {row['seconds']:.0f} s | " + " | ".join(f"{row['peak_rss_mb'][s]:.0f}" for s in stages) + " |")
    if args.json:
        from ..atomic import atomic_write

        atomic_write(args.json, json.dumps(results, indent=1))
    return 0


# -- inside the model: logit lens and activation patching --------------------------------------------------
INSIDE_STAGES = ("teacher-forced pass", "lens, every token", "patching over 30 spans", "patching over heads")


def inside_speed(model, seconds: float, *, repeats: int = 3) -> dict:
    """Median seconds of one teacher-forced decoder pass (with its log-probs) on a ``seconds`` clip's window,
    of the logit lens of every token (one capturing pass, then each token's layers through the output head),
    and of patching one token over 30 time spans and over every head ("silence"; the clean and corrupted
    encoder outputs cached, as the widget has them), interleaved in the same run."""
    import torch

    import leafx_widgets as lw
    from .. import lens

    ex = lw.explain(model, speech_clip(min(seconds, model.window_samples / model.sample_rate)), sample_rate=16000,
                    progress=False, precompute=())
    w = ex.windows[0]
    w.encoded  # noqa: B018 (keeps the window's encoder output at hand)
    ex.patch(0, "silence")  # the corrupted encoder output, cached as in the widget

    def teacher_forced():
        with torch.no_grad():
            model.teacher_forced(w.encoded, w.prompt, w.ids).logprobs  # noqa: B018

    def lens_all():
        w.cache.pop(lens.STATES_KEY, None)
        w.cache.pop(("inside.lens", lens.DEFAULT_TOP_K), None)
        for tok in ex.tokens:
            ex.logit_lens(tok.index)

    def patch_over(over):
        def run():
            ex._patched.clear()
            ex.patching(len(ex.tokens) // 2, "silence", over=over, n_spans=30)
        return run

    work = dict(zip(INSIDE_STAGES, (teacher_forced, lens_all, patch_over("time"), patch_over("heads"))))
    times = {name: [] for name in work}
    for fn in work.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in work.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    return {"seconds": seconds, "tokens": len(ex.tokens), "times": med,
            "ratios": {n: med[n] / med[INSIDE_STAGES[0]] for n in INSIDE_STAGES[1:]},
            "passes": {"patching over 30 spans": 32, "patching over heads": 2 + model.n_layers * model.n_heads}}


def inside_table(rows) -> str:
    head = "| clip | tokens | " + " | ".join(f"{s} (s)" for s in INSIDE_STAGES) + " | " + \
        " | ".join(f"{s} / pass" for s in INSIDE_STAGES[1:]) + " |"
    lines = [head, "|---" * (2 + 2 * len(INSIDE_STAGES) - 1) + "|"]
    for r in rows:
        lines.append(f"| {r['seconds']:.0f} s | {r['tokens']} | " + " | ".join(f"{r['times'][s]:.3f}" for s in INSIDE_STAGES)
                     + " | " + " | ".join(f"{r['ratios'][s]:.2f}x" for s in INSIDE_STAGES[1:]) + " |")
    return "\n".join(lines)


def longform_main(args) -> int:
    import torch

    import leafx_widgets as lw

    clips = None
    if args.manifest:
        from .manifests import load_manifests

        clips = [c for _, cs in load_manifests(args.manifest) for c in cs]
    model = lw.load_model(args.model, device=args.device)
    lw.explain(model, long_recording(35, clips).samples, sample_rate=16000, progress=False)  # warm-up
    print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats} interleaved runs\n")
    rows = []
    for seconds in [float(s) for s in args.longform.split(",")]:
        rows.append(longform_speed(model, long_recording(seconds, clips), repeats=args.repeats))
    print(longform_table(rows))
    if args.json:
        from ..atomic import atomic_write

        atomic_write(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
