"""The long-form speed, flat-memory and batching benchmarks run end to end on short inputs (no timing asserted)."""
from __future__ import annotations

import soundfile

from leafx_widgets.bench import long_memory, speed


def test_longform_speed_row_and_table(model):
    stitched = speed.long_recording(35)
    assert 35 <= stitched.duration_s < 70 and len(stitched.clips) >= 2
    row = speed.longform_speed(model, stitched)
    assert row["ratio"] == row["explain_s"] / row["generate_s"] > 0
    assert row["windows"] >= 2 and row["tokens"] > 50
    # both transcribe the speech (LibriVox clips tiny.en knows well)
    assert row["recall_generate"] > 0.8 and row["recall_explain"] > 0.8
    table = speed.longform_table([row]).splitlines()
    assert "explain / generate" in table[0] and "recall explain" in table[0]
    assert table[2].startswith(f"| {row['seconds']:.0f} s |") and f"{row['ratio']:.2f}x" in table[2]


def test_flat_memory_runs_each_length_in_its_own_process(tmp_path):
    rows = long_memory.flat_memory((0.3, 0.6), threads=1, folder=tmp_path)
    assert [round(r["duration_s"]) for r in rows] == [18, 36]
    assert all(r["peak_mb"] >= r["model_loaded_mb"] > 0 and r["tokens"] > 0 for r in rows)
    # the peak while explaining is measured apart from the model loading's (Linux)
    assert all(0 < r["explain_peak_mb"] <= r["peak_mb"] for r in rows)
    table = long_memory.table(rows)
    assert "peak RSS (MB)" in table.splitlines()[0]
    grew = rows[1]["peak_mb"] - rows[0]["peak_mb"]
    assert f"peak difference {grew:.0f} MB for 1 MB more audio" in table  # 18 s of float32 at 16 kHz: 1.1 MB
    explaining = rows[1]["explain_peak_mb"] - rows[0]["explain_peak_mb"]
    assert f"peak while explaining: {explaining:.0f} MB more" in table
    assert list(tmp_path.iterdir()) == []  # the recordings are removed


def test_recording_written_for_the_memory_bench_lasts_what_was_asked(tmp_path):
    path = tmp_path / "x.wav"
    assert long_memory.write_recording(path, 40) == 40
    info = soundfile.info(str(path))
    assert info.samplerate == 16000 and info.frames == 40 * 16000 and info.subtype == "PCM_16"


def test_batch_speed_row_and_table(model):
    sources = speed.batch_sources(n_short=2, long_s=())
    row = speed.batch_speed(model, sources, batch_size=2)
    assert row["same_tokens"] and row["sources"] == 2 and row["ratio"] == row["many_s"] / row["loop_s"]
    table = speed.batch_table([row]).splitlines()
    assert "explain_many / loop" in table[0] and table[2].endswith("| yes |")
