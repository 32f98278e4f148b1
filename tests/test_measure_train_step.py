"""scripts/measure_train_step.py at toy size on the CPU: it runs the project's training step and projects an epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_toy_dry_run_times_steps_and_projects_an_epoch(tmp_path):
    out = tmp_path / "step.json"
    command = [sys.executable, str(ROOT / "scripts" / "measure_train_step.py"), "--size", "toy", "--batch-size", "4",
               "--resolution", "32", "--accumulation", "2", "--steps", "1", "--warmup", "1", "--objects", "100",
               "--json", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["step_s"]) == len(result["vae_3_encodes_s"]) == len(result["unet_fwd_bwd_s"]) == 3
    assert all(t > 0 for t in result["step_s"]) and result["gradient_checkpointing"]
    assert result["epoch_s"] == pytest.approx([t * 100 / 8 for t in result["step_s"]])  # 100 objects / (4 × 2)
    assert "optimisation step: " in done.stdout and "epoch of 100 referred objects" in done.stdout
    flops = subprocess.run([*command[:2], "--size", "toy", "--batch-size", "2", "--resolution", "32", "--flops"],
                           capture_output=True, text=True, timeout=600, env=env)
    assert flops.returncode == 0 and "one micro-batch of 2 at 32 px (TFLOP)" in flops.stdout, flops.stderr[-2000:]
