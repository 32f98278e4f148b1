"""IoU against the denoising timestep (the paper's Fig. 1a) from the engine's x̂₀ trajectory, and c_t from it.

Every step's x̂₀ prediction is decoded to a mask and scored against the ground truth. The curve reports the mean
per-sample IoU with a 95 % normal confidence band (mean ± 1.96·sd/√n), and oIoU. The contribution factors c_t
come from :func:`addp_agent.train.contribution.estimate_contribution` on the mean-IoU curve and are written in the
format ``addp train --timesteps estimated`` reads.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from addp_agent.data.sample import RISSample
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.errors import UserError
from addp_agent.metrics import iou_counts, iou_from_counts


class TimestepCurve(BaseModel):
    """Per-step statistics in denoising order (noisiest first)."""

    steps: list[int]
    timesteps: list[int]
    miou: list[float]
    ci_low: list[float]
    ci_high: list[float]
    std: list[float]
    oiou: list[float]
    contribution: list[float]
    n: int


@torch.no_grad()
def measure(pipe: ADDPPipeline, samples: Sequence[RISSample], steps: int | None = None, batch_size: int = 8,
            seed: int = 0) -> tuple[list[int], list[int], np.ndarray]:
    """Steps, timesteps and the ``(n, steps, 2)`` array of (I, U) counts of every step's x̂₀ mask."""
    if not samples:
        raise UserError("no samples to analyse")
    counts: list[list[tuple[int, int]]] = []
    step_ids: list[int] = []
    timesteps: list[int] = []
    for start in range(0, len(samples), batch_size):
        chunk = list(samples[start : start + batch_size])
        out = pipe.segment_batch([s.expression for s in chunk], [s.image for s in chunk], num_inference_steps=steps,
                                 generator=seeded_generators([seed] * len(chunk)), trajectory_every=1)
        for sample, trajectory in zip(chunk, out.trajectories, strict=True):
            step_ids, timesteps = [p.step for p in trajectory], [p.timestep for p in trajectory]
            counts.append([iou_counts(p.mask, sample.mask) for p in trajectory])
    return step_ids, timesteps, np.asarray(counts, dtype=np.int64)


def curve(step_ids: list[int], timesteps: list[int], counts: np.ndarray, num_timesteps: int) -> TimestepCurve:
    """Mean IoU, its 95 % band, oIoU and c_t per step."""
    from addp_agent.train.contribution import estimate_contribution

    ious = np.vectorize(iou_from_counts, otypes=[float])(counts[..., 0], counts[..., 1])
    n = ious.shape[0]
    mean = ious.mean(axis=0)
    std = ious.std(axis=0, ddof=1) if n > 1 else np.zeros_like(mean)
    half = 1.96 * std / np.sqrt(n)
    sums = counts.sum(axis=0)
    oiou = [iou_from_counts(int(i), int(u)) for i, u in sums]
    distinct = len(set(timesteps)) == len(timesteps) >= 2
    c = estimate_contribution(timesteps, mean, num_timesteps) if distinct else np.ones(len(timesteps))
    return TimestepCurve(steps=step_ids, timesteps=timesteps, miou=mean.tolist(), ci_low=(mean - half).tolist(),
                         ci_high=(mean + half).tolist(), std=std.tolist(), oiou=oiou,
                         contribution=[float(x) for x in c], n=n)


OUTPUT_FILES = ("iou_vs_timestep.csv", "iou_vs_timestep.json", "iou_vs_timestep.png", "contribution.json")


def write_outputs(result: TimestepCurve, out: Path, meta: dict[str, Any]) -> list[Path]:
    """``iou_vs_timestep.csv``/``.json``/``.png`` and ``contribution.json`` (for ``--timesteps estimated``)."""
    from addp_agent.train.contribution import write_contribution

    out.mkdir(parents=True, exist_ok=True)
    table = out / "iou_vs_timestep.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "timestep", "mIoU", "ci_low", "ci_high", "std", "oIoU", "contribution"])
        for row in zip(result.steps, result.timesteps, result.miou, result.ci_low, result.ci_high, result.std,
                       result.oiou, result.contribution, strict=True):
            writer.writerow([row[0], row[1], *(f"{v:.6f}" for v in row[2:])])
    document = out / "iou_vs_timestep.json"
    document.write_text(json.dumps({**meta, **result.model_dump()}, indent=2))
    contribution = write_contribution(out / "contribution.json", result.timesteps, result.contribution,
                                      source="addp analyze-timesteps", n=result.n, **meta)
    return [table, document, contribution, plot(result, out / "iou_vs_timestep.png")]


def plot(result: TimestepCurve, path: Path) -> Path:
    """IoU (%) against the timestep, noisiest on the left, with the 95 % band (like the paper's Fig. 1a)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(result.timesteps)
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    ax.fill_between(t, 100 * np.asarray(result.ci_low), 100 * np.asarray(result.ci_high), alpha=0.25,
                    label="95 % band")
    ax.plot(t, 100 * np.asarray(result.miou), marker="o", markersize=3, label="mIoU")
    ax.plot(t, 100 * np.asarray(result.oiou), linestyle="--", label="oIoU")
    ax.invert_xaxis()
    ax.set_xlabel("timestep t (denoising →)")
    ax.set_ylabel("IoU (%) of decoded x̂₀")
    ax.set_title(f"IoU vs. timestep ({result.n} samples)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
