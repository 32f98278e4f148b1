"""`addp eval` under `accelerate launch` with 2 CPU processes equals 1 process on the same 64 samples (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import redden
from test_eval_runner import _untimed

ARGS = ["eval", "--data", "shapes-gen:64:5:32", "--steps", "1", "--batch-size", "4", "--max-rounds", "2", "--quiet"]
ENV = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _eval(model, out, processes: int, *extra: str) -> None:
    args = [*ARGS, "--model", str(model), "--out", str(out), *extra]
    if processes == 1:
        command = [sys.executable, "-m", "addp_agent", *args]
    else:  # --multi_gpu starts N processes; on a CPU host they join over gloo (`--cpu` would start only one)
        accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
        command = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "addp_agent", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_equal_one_and_resume(tiny_pixel_dir, tmp_path) -> None:
    model = redden(tiny_pixel_dir, tmp_path / "model")
    _eval(model, tmp_path / "one", 1)
    _eval(model, tmp_path / "two", 2)
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one == two and one["n"] == 64
    assert sorted(p.name for p in (tmp_path / "two" / "parts").glob("*.jsonl")) == ["part-2-0.jsonl",
                                                                                    "part-2-1.jsonl"]
    assert _untimed(tmp_path / "one" / "samples.jsonl") == _untimed(tmp_path / "two" / "samples.jsonl")
    # resume across process counts: 24 samples by one process, the other 40 by two
    _eval(model, tmp_path / "mixed", 1, "--limit", "24")
    _eval(model, tmp_path / "mixed", 2)
    lines = [len((tmp_path / "mixed" / "parts" / f"part-{w}-{r}.jsonl").read_text().splitlines())
             for w, r in ((1, 0), (2, 0), (2, 1))]
    assert lines == [24, 20, 20]
    assert json.loads((tmp_path / "mixed" / "metrics.json").read_text()) == one
