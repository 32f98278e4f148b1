"""`addp train` through the CLI entry point: a tiny run, and bad input as one line with exit code 2."""

from __future__ import annotations

import importlib
import json

import pytest
from cli_support import exit_code

import addp_agent.cli as cli


@pytest.fixture(autouse=True)
def _train_command(monkeypatch) -> None:
    """Register `train` (plus the committed `data` group, so typer keeps sub-command mode) and nothing else."""
    monkeypatch.setattr(cli, "_register", lambda: [importlib.import_module(f"addp_agent.cli.{name}")
                                                   for name in ("data", "train")])


def test_tiny_run_writes_a_model(tmp_path, capsys, tiny_model_json):
    model = tiny_model_json
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--model-config", str(model), "--n-train", "8", "--steps", "2",
            "--batch-size", "2", "--val-every", "0", "--checkpoint-every", "2", "--timesteps", "analytic", "--quiet"]
    assert exit_code(args) == 0
    assert f"model saved to {out / 'model'}" in capsys.readouterr().out
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["timesteps"] == "analytic" and saved["model"]["block_out_channels"] == [16, 32]


@pytest.mark.parametrize("extra, message", [
    (["--parameterization", "v"], "--parameterization"),
    (["--timesteps", "cosine"], "unknown --timesteps"),
    (["--timesteps", "estimated", "--timesteps-file", "/nonexistent.json"], "no such contribution file"),
    (["--model-config", "/nonexistent.json"], "--model-config"),
    (["--model-config", "{tmp}/latin-1.json"], "--model-config"),  # not UTF-8
    (["--n-train", "-1"], "--n-train: Input should be greater than or equal to 0"),
    (["--lr", "nan"], "--lr: must be a finite number"),
    (["--lr", "1e300"], "--lr: Input should be less than or equal to 1"),  # was: AdamW's overflow traceback
    (["--task", "depth", "--lr", "1e300"], "--lr: Input should be less than or equal to 1"),
    (["--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr-schedule", "linear"], "--lr-schedule"),
    (["--max-minutes", "-1"], "--max-minutes"),
    (["--mixed-precision", "fp8"], "--mixed-precision"),
    (["--min-lr-ratio", "2"], "--min-lr-ratio"),
    (["--data-workers", "-3"], "--data-workers"),
    (["--data-device", "gpu"], "--data-device"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "latin-1.json").write_bytes(b'{"name": "\xe9"}')
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    assert exit_code(["train", "--out", str(tmp_path / "run"), "--steps", "1", "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.parametrize(("task", "model", "message"), [
    ("ris", {"block_out_channels": [7, 14], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]}, "multiples of norm_num_groups 8"),
    ("ris", {"text": {"hidden_size": 3, "heads": 2}}, "not a multiple of heads 2"),
    ("ris", {"patch_size": 0}, "model.json: patch_size: Input should be greater than or equal to 1"),
    ("ris", {"block_out_channels": [64, 128]}, "one entry per level"),
    ("ris", {"down_block_types": ["Bogus", "DownBlock2D", "DownBlock2D"]}, "model.json: down_block_types[0]:"),
    ("ris", {"layers_per_block": 0}, "model.json: layers_per_block:"),
    ("ris", {"text": {"max_length": 0}}, "model.json: text.max_length:"),
    ("ris", {"block_out_chanels": [64]}, "Extra inputs are not permitted"),  # a typo was silently ignored
    ("depth", {"patch_size": 0}, "model.json: patch_size:"),  # was: ZeroDivisionError
    ("depth", {"block_out_channels": [7, 14, 21]},
     "model.json: block_out_channels [7, 14, 21] must be positive multiples of norm_num_groups 8"),
])
def test_a_model_config_the_unet_cannot_build_is_one_line(tmp_path, capsys, task, model, message):
    """Each was a traceback from diffusers, torch or transformers when the model was built."""
    (tmp_path / "model.json").write_text(json.dumps(model))
    argv = ["train", "--task", task, "--out", str(tmp_path / "run"), "--steps", "1", "--quiet", "--model-config",
            str(tmp_path / "model.json")]
    assert exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --model-config ") and message in err and "\n" not in err
    assert "Value error" not in err and "--model-" not in err.replace("--model-config", "")  # no made-up flags
    assert not (tmp_path / "run").exists()
