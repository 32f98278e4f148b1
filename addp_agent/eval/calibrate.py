"""Fit a model's found rule on validation data (``addp calibrate``) and write it into the model's calibration.json.

Every sample runs one uncorrected round with the model's default settings (or ``steps``), seeded like the first
round of ``addp eval``; its paint statistics and its number of ground-truth targets feed
:func:`addp_agent.models.calibration.fit_found`. Other sections of an existing ``calibration.json`` are kept.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import torch

from addp_agent.data.sources import load_source
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.errors import UserError
from addp_agent.models.calibration import Calibration, FoundCalibration, fit_found


@torch.no_grad()
def fit_found_rule(pipe: ADDPPipeline, data: str, split: str = "val", limit: int | None = None,
                   batch_size: int = 16, seed: int = 0, steps: int | None = None) -> FoundCalibration:
    """The ``found`` section fitted on the first ``limit`` samples of ``data``'s ``split``."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    samples = list(islice(iter(load_source(data, split, skip_bad=True)), limit))
    if not samples:
        raise UserError(f"{data} split {split}: no samples to calibrate on")
    settings = pipe.resolve_settings(steps)
    statistics: list[dict[str, float]] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        output = pipe([s.expression for s in chunk], [s.image for s in chunk],
                      generator=seeded_generators([seed] * len(chunk)), output_type="np", show_progress=False,
                      **settings)
        statistics += output.paint
    return fit_found(statistics, [s.n_targets for s in samples], data, split, settings["num_inference_steps"])


def write_found_rule(folder: Path, found: FoundCalibration) -> Path:
    """Put ``found`` into ``folder``'s calibration.json (atomically; other sections kept)."""
    calibration = Calibration.load(folder) or Calibration()
    return calibration.model_copy(update={"found": found}).save(folder)
