"""The random-model speed script: the tiny sizes run here; the realistic sizes need CUDA and say so."""
import pytest
import torch

from leafx_widgets.bench import random_model_speed as speed


@pytest.mark.parametrize("family", ["whisper", "voxtral"])
def test_tiny_models_print_every_rung_against_the_forced_pass(family, capsys):
    assert speed.main(["--family", family, "--size", "tiny", "--tokens", "6"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:4] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| stage")}
    assert set(rows) == {"forced pass", *speed.METHODS}
    assert float(rows["forced pass"][1]) == 1.0
    assert all(float(seconds) > 0 for seconds, _ in rows.values())
    assert f"{family} (tiny," in out and "M parameters" in out


def test_large_v3_sized_whisper_has_large_v3s_shapes():
    """Built on the meta device: no memory, only shapes (the GPU run builds the same in float16)."""
    adapter = speed.build("whisper", "realistic", torch.device("meta"), torch.float16)
    assert 1.5e9 < speed.parameters(adapter) < 1.6e9  # Whisper large-v3: 1.55 B
    assert adapter.n_mels == 128 and adapter.model.config.decoder_layers == 32
    assert next(adapter.model.parameters()).dtype == torch.float16


def test_realistic_size_without_cuda_says_nothing_was_measured(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert speed.main(["--family", "whisper", "--size", "realistic"]) == 2
    assert "nothing was measured" in capsys.readouterr().err
    assert speed.main(["--family", "whisper", "--size", "tiny", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
