"""Depth metrics after least-squares scale-and-shift alignment (Marigold's protocol), as mergeable accumulators.

Per image, on the valid pixels V (ground truth inside the source's range and crop):

1. alignment: s, t = argmin Σ_V (s·p + t − d)² (float64 least squares; optionally fitted on a nearest-neighbour
   downsample to ``max_res``), applied to the whole map, then clipped to [min_depth, max_depth] and to ≥ 1e-6;
2. metrics over V: AbsRel = mean |p − d| / d; SqRel = mean (p − d)² / d; RMSE = √mean (p − d)²;
   RMSE-log = √mean (ln p − ln d)²; δk = share of pixels with max(p/d, d/p) < 1.25^k (k = 1, 2, 3).

Data-set values are the mean over images of the per-image values (not over pixels), as Marigold reports them.
Accumulators keep exact rational sums of the per-image floats, so merging shards in any order gives the same result
as one pass.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from addp_agent.errors import DataError

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")
MIN_VALID_PIXELS = 2  # a scale and a shift need two distinct points


def align_scale_shift(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                      max_res: int | None = None) -> tuple[np.ndarray, float, float]:
    """Least-squares s, t with s·pred + t ≈ gt on ``valid``; returns (s·pred + t over the whole map, s, t)."""
    pred64, gt64 = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    fit_pred, fit_gt, fit_valid = pred64, gt64, np.asarray(valid, dtype=bool)
    if max_res is not None and min(max_res / np.array(pred64.shape[-2:])) < 1:
        factor = float(min(max_res / np.array(pred64.shape[-2:])))

        def shrink(array: np.ndarray) -> np.ndarray:
            tensor = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float64)[None, None]
            return F.interpolate(tensor, scale_factor=factor, mode="nearest")[0, 0].numpy()

        fit_pred, fit_gt, fit_valid = shrink(pred64), shrink(gt64), shrink(fit_valid.astype(np.float64)) > 0.5
    p, d = fit_pred[fit_valid], fit_gt[fit_valid]
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, d, rcond=None)
    return pred64 * scale + shift, float(scale), float(shift)


def depth_errors(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """The seven metrics of one image for an already aligned, positive prediction (see the module docstring)."""
    p = np.asarray(pred, dtype=np.float64)[valid]
    d = np.asarray(gt, dtype=np.float64)[valid]
    if p.size == 0:
        raise ValueError("no valid pixels")
    diff = p - d
    ratio = np.maximum(p / d, d / p)
    return {"abs_rel": float(np.mean(np.abs(diff) / d)), "sq_rel": float(np.mean(diff**2 / d)),
            "rmse": float(np.sqrt(np.mean(diff**2))), "rmse_log": float(np.sqrt(np.mean((np.log(p) - np.log(d)) ** 2))),
            "delta1": float(np.mean(ratio < 1.25)), "delta2": float(np.mean(ratio < 1.25**2)),
            "delta3": float(np.mean(ratio < 1.25**3))}


def evaluate_depth(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, min_depth: float = 1e-3,
                   max_depth: float = float("inf"), align: bool = True,
                   max_res: int | None = None) -> dict[str, float]:
    """Align (optionally), clip to the depth range, score: the metrics plus ``scale`` and ``shift``."""
    pred, gt, valid = np.asarray(pred), np.asarray(gt), np.asarray(valid, dtype=bool)
    if pred.shape != gt.shape or valid.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape}, ground truth {gt.shape} and valid {valid.shape} differ in size")
    valid = valid & np.isfinite(gt) & (gt > 0)
    if int(valid.sum()) < MIN_VALID_PIXELS:
        raise ValueError(f"{int(valid.sum())} valid pixels; need at least {MIN_VALID_PIXELS}")
    scale, shift = 1.0, 0.0
    aligned = np.asarray(pred, dtype=np.float64)
    if align:
        aligned, scale, shift = align_scale_shift(pred, gt, valid, max_res)
    aligned = np.clip(np.clip(aligned, min_depth, max_depth), 1e-6, None)
    return {**depth_errors(aligned, gt, valid), "scale": scale, "shift": shift}


class DepthMetrics:
    """Mean per-image depth metrics; ``merge`` and ``from_state`` combine shards exactly."""

    def __init__(self) -> None:
        self.n = 0
        self.sums = dict.fromkeys(DEPTH_KEYS, Fraction(0))

    def add(self, metrics: dict[str, float]) -> dict[str, float]:
        """Record one image's metrics (from :func:`evaluate_depth`); returns them."""
        missing = [k for k in DEPTH_KEYS if k not in metrics]
        if missing:
            raise ValueError(f"metrics lack {missing}")
        if not all(np.isfinite(metrics[k]) for k in DEPTH_KEYS):
            raise ValueError(f"non-finite metrics {metrics}")
        self.n += 1
        for key in DEPTH_KEYS:
            self.sums[key] += Fraction(float(metrics[key]))
        return metrics

    def update(self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, **kwargs: Any) -> dict[str, float]:
        """Align, score and record one image (``kwargs`` as :func:`evaluate_depth`)."""
        return self.add(evaluate_depth(pred, gt, valid, **kwargs))

    def merge(self, other: DepthMetrics) -> DepthMetrics:
        self.n += other.n
        for key in DEPTH_KEYS:
            self.sums[key] += other.sums[key]
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "abs_rel", …, "delta3"}``: means over images (fractions, not %); None when empty."""
        if self.n == 0:
            return {"n": 0, **dict.fromkeys(DEPTH_KEYS)}
        return {"n": self.n, **{key: float(self.sums[key] / self.n) for key in DEPTH_KEYS}}

    def state(self) -> dict[str, Any]:
        return {"n": self.n, "sums": {k: [v.numerator, v.denominator] for k, v in self.sums.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DepthMetrics:
        metrics = cls()
        try:
            metrics.n = int(state["n"])
            metrics.sums = {k: Fraction(int(state["sums"][k][0]), int(state["sums"][k][1])) for k in DEPTH_KEYS}
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            raise ValueError(f"not a DepthMetrics state: {error!r}") from None
        return metrics

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state()))

    @classmethod
    def load(cls, path: str | Path) -> DepthMetrics:
        try:
            return cls.from_state(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as error:
            raise DataError(f"{path}: cannot read depth metrics state: {error}") from None
