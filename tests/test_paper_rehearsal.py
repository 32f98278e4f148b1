"""The paper's RefCOCO run rehearsed end to end at toy scale: the two commands of docs/reproduce-refcoco.md.

A CRIS export of Shapes-Ref named ``refcoco`` stands in for RefCOCO, a tiny latent InstructPix2Pix-format model
(Euler-ancestral, ε-prediction, saved with ``save_pretrained``) for ``timbrooks/instruct-pix2pix``. The training
(``--recipe paper-refcoco``, toy sizes given as flags) is interrupted with SIGINT once a checkpoint exists and
resumed by the same command; then ``addp eval --protocol paper`` (fewer steps, the tiny model's resolution) scores
the exported model and writes the report. Run with ``pytest -m slow -s tests/test_paper_rehearsal.py`` to see it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from addp_agent.data.sources import load_source
from addp_agent.engine.decode import MaskDecoding
from addp_agent.masks import decode_rle
from addp_agent.metrics import iou_counts

pytestmark = pytest.mark.slow

ENV = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
TRAIN_STEPS = 30  # ⌈10 epochs × 24 referred objects / 8 per step⌉


def _addp(*args: str) -> list[str]:
    return [sys.executable, "-m", "addp_agent", *args]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _interrupt_after_first_checkpoint(command: list[str], checkpoints: Path) -> subprocess.CompletedProcess:
    """Start ``command``, send SIGINT (Ctrl-C) once ``step-2`` is complete, and wait for it to stop."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 600
    while not (checkpoints / "step-2" / "step.json").exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def test_paper_refcoco_rehearsal(tmp_path, tiny_latent_dir, capsys):
    data, run, evaluation = tmp_path / "refcoco-cris", tmp_path / "run", tmp_path / "eval"
    for split, n in (("train", 24), ("val", 8)):
        _run(_addp("data", "shapes", "--out", str(data), "--split", split, "--n", str(n), "--format", "cris",
                   "--dataset-name", "refcoco", "--size", "64"))

    train = _addp("train", "--recipe", "paper-refcoco", "--data", f"cris:{data}:refcoco",
                  "--init-from", str(tiny_latent_dir), "--out", str(run),
                  "--resolution", "32", "--batch-size", "4", "--effective-batch-size", "8", "--epochs", "10",
                  "--val-every", "10", "--val-n", "4", "--val-steps", "2", "--checkpoint-every", "2",
                  "--log-every", "1", "--quiet")
    first = _interrupt_after_first_checkpoint(train, run / "checkpoints")
    assert first.returncode != 0 and "interrupted: checkpoint at step" in first.stdout, first.stderr[-3000:]
    stopped = json.loads(max((run / "checkpoints").glob("step-*/step.json"),
                             key=lambda p: int(p.parent.name[5:])).read_text())["step"]
    assert 2 <= stopped < TRAIN_STEPS
    second = _run(train)
    assert f"resumed from {run / 'checkpoints' / f'step-{stopped}'} at step {stopped}" in second.stdout
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows if "loss" in r}) == list(range(1, TRAIN_STEPS + 1))
    assert [r["step"] for r in rows if "val_mIoU" in r][-1] == TRAIN_STEPS
    recipe = json.loads((run / "recipe.json").read_text())
    assert recipe["plan"] == {"processes": 1, "batch_size": 4, "accumulation": 2, "effective_batch": 8,
                              "steps": TRAIN_STEPS, "epoch_size": 24, "epochs": 10.0}
    assert set(recipe["recipe"]["changed"]) == {"init_from", "resolution", "batch_size", "effective_batch_size",
                                                "epochs", "val_every", "val_n", "val_steps", "checkpoint_every"}
    assert json.loads((run / "model" / "training.json").read_text())["step"] == TRAIN_STEPS

    scored = _run(_addp("eval", "--protocol", "paper", "--data", f"cris:{data}:refcoco", "--model", str(run / "model"),
                        "--out", str(evaluation), "--steps", "4", "--resolution", "32", "--quiet"))
    assert scored.stdout.startswith("protocol paper: ")
    document = json.loads((evaluation / "metrics.json").read_text())
    assert document["n"] == 8 and document["config"]["decode_size"] == 512
    assert document["protocol"]["changed"] == {"steps": {"preset": 100, "used": 4},
                                               "resolution": {"preset": 256, "used": 32}}
    reference = MaskDecoding(size=512)
    records = [json.loads(line) for line in (evaluation / "samples.jsonl").read_text().splitlines()]
    for record, sample in zip(records, load_source(f"cris:{data}:refcoco", "val"), strict=True):
        (round_,) = record["rounds"]
        assert iou_counts(decode_rle(round_["mask_rle"]), reference.reference(sample.mask)) == \
            (round_["intersection"], round_["union"])
    report = (evaluation / "report.md").read_text()
    assert "Protocol `paper`" in report and "| 1 | 8 |" in report
    with capsys.disabled():
        print("\n--- train (interrupted) ---\n" + first.stdout + "--- train (resumed) ---\n" + second.stdout
              + "--- eval ---\n" + scored.stdout + "--- report.md ---\n" + report)
