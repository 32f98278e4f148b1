"""What one run of an effects study records: its val selection, its test scores, its curve and its cost."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pydantic import BaseModel

from addp_agent.effects.config import SamplerSetting, Variant
from addp_agent.effects.task import Curve, Scores


class SelectionRow(BaseModel):
    setting: SamplerSetting
    metrics: dict[str, float | int | None]
    unet_passes: int


class Selection(BaseModel):
    """The val sweep of one run and the setting it chose (test never takes part)."""

    split: str
    sample_ids: list[str]
    metric: str
    rows: list[SelectionRow]
    chosen: SamplerSetting


class RunResult(BaseModel):
    task: str
    variant: Variant
    seed_index: int
    train_seed: int
    steps: int
    steps_done: int
    complete: bool  # trained for all ``steps`` (not ended by the safety stop)
    stopped_by: str | None
    final_loss: float | None
    train_cpu_s: float
    train_wall_s: float
    eval_cpu_s: float
    eval_wall_s: float
    selection: Selection
    test: Scores
    curve: Curve
    log: str  # the training log, relative to the study folder
    device: str


def device_name() -> str:
    """The hardware a run used, in words."""
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), {os.cpu_count()} CPU cores"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"CPU: {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"
