"""`addp train` under `accelerate launch --num_processes 2` on CPU: trains, checkpoints, resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _launch(out, model_json, steps: int, *extra: str) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    # `--cpu` alone runs one process; `--multi_gpu` on a machine without visible GPUs runs gloo CPU processes
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "addp_agent", "train", "--out", str(out),
               "--model-config", str(model_json), "--n-train", "8", "--steps", str(steps), "--batch-size", "2",
               "--val-every", "0", "--checkpoint-every", "2", "--log-every", "1", "--quiet", *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def test_two_processes_train_and_resume(tmp_path, tiny_model_json):
    out = tmp_path / "run"
    first = _launch(out, tiny_model_json, 2)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "training on 2 process(es)" in first.stdout
    assert (out / "checkpoints" / "step-2" / "step.json").exists()
    assert (out / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    second = _launch(out, tiny_model_json, 4)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr
    marker = json.loads((out / "checkpoints" / "step-4" / "step.json").read_text())
    assert marker["step"] == 4 and marker["elapsed_s"] > 0  # training time carries over a resume
    assert json.loads((out / "model" / "training.json").read_text())["step"] == 4
    # one log row per step from the main process only
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_two_processes_stop_together_on_the_time_budget(tmp_path, tiny_model_json):
    out = tmp_path / "timed"
    run = _launch(out, tiny_model_json, 100_000, "--max-minutes", "0.1", "--lr-schedule", "cosine",
                  "--checkpoint-every", "100000")
    assert run.returncode == 0, run.stderr[-3000:]  # a stop that differed between processes would hang here
    info = json.loads((out / "model" / "training.json").read_text())
    assert info["stopped_by"] == "time" and 0 < info["step"] < 100_000
    marker = json.loads((out / "checkpoints" / f"step-{info['step']}" / "step.json").read_text())
    assert marker["elapsed_s"] >= 6.0
