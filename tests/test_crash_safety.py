"""SIGKILL in the middle of writing: `addp segment` leaves the old output set whole, `addp eval` leaves no final
files and resumes without duplicated or lost samples (real processes, killed while their staging folder fills)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import noisy_photo
from PIL import Image

from addp_agent.cli import main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def run_main(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def kill_when(process: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the process ended (code {process.returncode}) before {what}: "
                        f"{process.stderr.read().decode()[-1500:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def staging_of(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.addp-new-*"))


def test_sigkill_of_segment_while_writing_leaves_the_old_set_whole(tiny_pixel_dir, tmp_path):
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    Image.fromarray(noisy_photo(40, 56)).save(small)
    Image.fromarray(noisy_photo(1500, 2000)).save(large)  # its overlay PNG takes a while to encode: the window
    out = tmp_path / "out"
    args = ["the circle", "--model", str(tiny_pixel_dir), "--steps", "1", "--out", str(out), "--quiet"]
    run_main(["segment", str(small), *args])
    old = contents(out)
    assert sorted(old) == ["mask.png", "overlay.png", "painted.png", "result.json"]

    process = subprocess.Popen([sys.executable, "-m", "addp_agent", "segment", str(large), *args, "--seed", "7"],
                               cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(process, lambda: any(any(s.iterdir()) for s in staging_of(out)), "it started writing")
    assert process.returncode == -signal.SIGKILL
    assert contents(out) == old  # the old set, whole: not one new file, not one missing
    assert len(staging_of(out)) == 1  # the dead run's half-written set stays beside it, hidden

    run_main(["segment", str(small), *args, "--seed", "3"])  # the next run clears it away
    assert staging_of(out) == [] and sorted(contents(out)) == sorted(old)
    assert json.loads((out / "result.json").read_text())["seed"] == 3


def eval_args(model: Path, out: Path) -> list[str]:
    return ["eval", "--data", "shapes-gen:8:3:32", "--split", "val", "--model", str(model), "--critic", "simulated",
            "--max-rounds", "2", "--steps", "1", "--batch-size", "2", "--out", str(out), "--quiet"]


def comparable(path: Path) -> list[dict]:
    """samples.jsonl without the timings (which differ between runs)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        for entry in row["rounds"]:
            entry.pop("denoise_s"), entry.pop("critic_s")
    return rows


def test_sigkill_of_eval_mid_run_and_mid_finish_resumes_without_duplicates_or_losses(red_dir, tmp_path):
    reference = tmp_path / "reference"
    run_main(eval_args(red_dir, reference))
    out = tmp_path / "run"
    part = out / "parts" / "part-1-0.jsonl"

    def lines() -> int:
        try:
            return part.read_bytes().count(b"\n")
        except OSError:
            return 0

    # 1. killed after its first batches, while later ones are being computed and appended
    first = subprocess.Popen([sys.executable, "-m", "addp_agent", *eval_args(red_dir, out)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(first, lambda: lines() >= 2, "two samples were recorded")
    assert not (out / "metrics.json").exists() and not (out / "samples.jsonl").exists()
    json.loads((out / "config.json").read_text())  # written whole
    recorded = lines()
    assert 2 <= recorded < 8
    with part.open("ab") as handle:  # and as if the kill had landed in the middle of a line
        handle.write(part.read_bytes().splitlines()[0][:57])

    # 2. the resume, killed while it writes the final files beside the run folder
    second = subprocess.Popen([sys.executable, "-m", "addp_agent", *eval_args(red_dir, out)], cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(second, lambda: bool(staging_of(out)), "it started writing the final files")
    assert not (out / "metrics.json").exists() and not (out / "samples.jsonl").exists()

    # 3. the next resume finishes: every sample once, the same records and metrics as the uninterrupted run
    run_main(eval_args(red_dir, out))
    rows = comparable(out / "samples.jsonl")
    assert [row["index"] for row in rows] == list(range(8))
    assert rows == comparable(reference / "samples.jsonl")
    metrics, expected = (json.loads((p / "metrics.json").read_text()) for p in (out, reference))
    assert metrics["rounds"] == expected["rounds"] and metrics["n"] == expected["n"] == 8
    assert staging_of(out) == []
