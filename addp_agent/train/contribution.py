"""Estimated contribution factors c_t from a measured IoU-vs-timestep curve (ADDP §3, "estimated" sampler).

Estimator (see docs/training.md): the x̂₀ decoded after the denoising step at timestep t_k has IoU_k; the step's
contribution is its IoU gain per unit timestep, c_k = (IoU_k − IoU_{k−1}) / (t_{k−1} − t_k), with IoU_0 = 0 at
t_0 = T (pure noise predicts nothing). Steps whose gain is below ``floor`` × the largest gain (including steps
that lower IoU) get that floor, so every timestep keeps some training mass; c is scaled to max 1. Training then
draws t ~ Multinomial(c_t²) after linear interpolation over 0..T−1 (:func:`timesteps.load_estimated`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from addp_agent.errors import UserError

DEFAULT_FLOOR = 0.1  # c_min / c_max = 0.1 → c² ratio 1:100, the dynamic range of the official RIS preset (1:95)


class IoUCurve(BaseModel):
    """Per-step IoU of the decoded x̂₀ over a set of samples, and the final masks' metrics."""

    timesteps: list[int]  # denoising order: noisiest first
    miou: list[float]
    oiou: list[float]
    n: int


def estimate_contribution(timesteps: Sequence[float], iou_curve: Sequence[float], num_timesteps: int = 1000,
                          floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """c_t at each given timestep from the IoU of the x̂₀ decoded there (any order; see the module docstring)."""
    t = np.asarray(timesteps, dtype=np.float64)
    iou = np.asarray(iou_curve, dtype=np.float64)
    if t.ndim != 1 or t.shape != iou.shape or t.size < 2:
        raise UserError(f"need ≥ 2 (timestep, IoU) pairs of equal length, got {t.size} and {iou.size}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(iou))):
        raise UserError("timesteps and IoU values must be finite")
    if len(np.unique(t)) != t.size or t.min() < 0 or t.max() >= num_timesteps:
        raise UserError(f"timesteps must be distinct and in [0, {num_timesteps})")
    if not 0 < floor <= 1:
        raise UserError(f"floor must be in (0, 1], got {floor}")
    order = np.argsort(-t)  # denoising order
    t_sorted, iou_sorted = t[order], iou[order]
    spans = -np.diff(np.concatenate([[float(num_timesteps)], t_sorted]))
    gains = np.diff(np.concatenate([[0.0], iou_sorted])) / spans
    top = gains.max()
    c_sorted = np.ones_like(gains) if top <= 0 else np.maximum(gains, floor * top) / top
    c = np.empty_like(c_sorted)
    c[order] = c_sorted
    return c


def write_contribution(path: str | Path, timesteps: Sequence[float], contribution: Sequence[float],
                       **extra: object) -> Path:
    """Write ``{"timesteps": [...], "contribution": [...]}`` (plus ``extra`` keys) for ``--timesteps estimated``."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    data = {"timesteps": [int(t) for t in timesteps], "contribution": [float(c) for c in contribution], **extra}
    file.write_text(json.dumps(data, indent=2))
    return file


def measure_iou_curve(pipe, samples: Sequence, num_inference_steps: int = 10, batch_size: int = 32,
                      seed: int = 0) -> tuple[IoUCurve, list[tuple[int, int]]]:
    """Run the engine with a trajectory at every step over ``samples``; the curve and each final mask's counts."""
    import torch

    from addp_agent.metrics import RISMetrics, iou_counts

    if not samples:
        raise UserError("no samples to measure an IoU curve on")
    per_step: list[RISMetrics] = []
    timesteps: list[int] = []
    counts: list[tuple[int, int]] = []
    for start in range(0, len(samples), batch_size):
        chunk = [samples[i] for i in range(start, min(start + batch_size, len(samples)))]
        out = pipe.segment_batch([s.expression for s in chunk], [s.image for s in chunk],
                                 num_inference_steps=num_inference_steps,
                                 generator=torch.Generator().manual_seed(seed + start), trajectory_every=1)
        for sample, mask, trajectory in zip(chunk, out.masks, out.trajectories, strict=True):
            if not per_step:
                per_step = [RISMetrics() for _ in trajectory]
                timesteps = [p.timestep for p in trajectory]
            for metrics, point in zip(per_step, trajectory, strict=True):
                metrics.update(point.mask, sample.mask)
            counts.append(iou_counts(mask, sample.mask))
    results = [m.to_dict() for m in per_step]
    curve = IoUCurve(timesteps=timesteps, miou=[r["mIoU"] for r in results], oiou=[r["oIoU"] for r in results],
                     n=len(samples))
    return curve, counts
