"""Ensembles of affine-invariant depth predictions (Marigold): align the members, reduce, rescale to [0, 1].

Members d_1..d_E (each (1, H, W), values in [0, 1]) are affine-invariant, so each gets a scale s_i and shift t_i
(scale-only models: t_i = 0). The parameters minimise

    cost(s, t) = Σ_{i<j} RMS(a_i − a_j) + λ·(|min m| + |1 − max m|),   a_i = s_i·d_i + t_i,   m = reduce(a)

with BFGS (scipy, numerical gradients) from s_i = 1/(max d_i − min d_i), t_i = −s_i·min d_i, on members shrunk
(nearest) to ``max_res`` on the longer side. The reduction is the per-pixel median (uncertainty: the median absolute
deviation) or mean (uncertainty: the standard deviation). The result m is rescaled to [0, 1] by its min and max
(scale-only: by its max) and the uncertainty by the same range.

The arithmetic follows diffusers' ``MarigoldDepthPipeline.ensemble_depth`` step for step, so the two give the same
numbers (the stock-parity test checks it).
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
import torch

Reduction = Literal["median", "mean"]


def reduce_members(aligned: torch.Tensor, reduction: Reduction = "median",
                   with_uncertainty: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-pixel median (and MAD) or mean (and std) of (E, 1, H, W) aligned members → (1, 1, H, W) each."""
    if reduction == "median":
        center = aligned.median(dim=0, keepdim=True).values
        spread = (aligned - center).abs().median(dim=0, keepdim=True).values if with_uncertainty else None
    elif reduction == "mean":
        center = aligned.mean(dim=0, keepdim=True)
        spread = aligned.std(dim=0, keepdim=True) if with_uncertainty else None
    else:
        raise ValueError(f"unknown reduction {reduction!r}; use 'median' or 'mean'")
    return center, spread


def initial_params(members: torch.Tensor, shift_invariant: bool) -> np.ndarray:
    """Scales (then shifts) that map each member's range onto [0, 1]: the optimiser's start, float64."""
    flat = members.reshape(members.shape[0], -1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    if shift_invariant:
        scale = 1.0 / (high - low).clamp(min=1e-6)
        params = torch.cat((scale, -scale * low))
    else:
        params = 1.0 / high.clamp(min=1e-6)
    return params.cpu().numpy().astype(np.float64)


def apply_params(members: torch.Tensor, params: np.ndarray, shift_invariant: bool) -> torch.Tensor:
    """a_i = s_i·d_i (+ t_i) for (E, 1, H, W) members."""
    count = members.shape[0]
    scale = torch.from_numpy(params[:count]).to(members).view(count, 1, 1, 1)
    if not shift_invariant:
        return members * scale
    shift = torch.from_numpy(params[count:]).to(members).view(count, 1, 1, 1)
    return members * scale + shift


def alignment_cost(params: np.ndarray, members: torch.Tensor, shift_invariant: bool, reduction: Reduction,
                   regularizer_strength: float) -> float:
    """Pairwise RMS disagreement of the aligned members plus the pull of their reduction towards [0, 1]."""
    aligned = apply_params(members, params, shift_invariant)
    cost = 0.0
    for i, j in combinations(range(members.shape[0]), 2):
        cost += ((aligned[i] - aligned[j]) ** 2).mean().sqrt().item()
    if regularizer_strength > 0:
        center, _ = reduce_members(aligned, reduction)
        near = center.min().abs().item()
        far = (1.0 - center.max()).abs().item()
        cost += (near + far) * regularizer_strength
    return cost


def fit_params(members: torch.Tensor, shift_invariant: bool, reduction: Reduction, regularizer_strength: float,
               max_iter: int, tol: float, max_res: int | None) -> np.ndarray:
    """BFGS on :func:`alignment_cost`, on members shrunk to ``max_res`` (longer side) first."""
    from diffusers.pipelines.marigold.marigold_image_processing import MarigoldImageProcessor
    from scipy.optimize import minimize

    small = members.to(torch.float32)
    if max_res is not None and max(small.shape[2:]) > max_res:
        small = MarigoldImageProcessor.resize_to_max_edge(small, max_res, "nearest-exact")
    result = minimize(alignment_cost, initial_params(small, shift_invariant),
                      args=(small, shift_invariant, reduction, regularizer_strength), method="BFGS", tol=tol,
                      options={"maxiter": max_iter, "disp": False})
    return result.x


def ensemble_depth(members: torch.Tensor, scale_invariant: bool = True, shift_invariant: bool = True,
                   output_uncertainty: bool = False, reduction: Reduction = "median",
                   regularizer_strength: float = 0.02, max_iter: int = 2, tol: float = 1e-3,
                   max_res: int | None = 1024) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Combine (E, 1, H, W) predictions of one image into (1, 1, H, W) depth in [0, 1] and an optional uncertainty."""
    if members.dim() != 4 or members.shape[1] != 1:
        raise ValueError(f"members must be (E, 1, H, W), got {tuple(members.shape)}")
    if reduction not in ("median", "mean"):
        raise ValueError(f"unknown reduction {reduction!r}; use 'median' or 'mean'")
    if shift_invariant and not scale_invariant:
        raise ValueError("shift-only invariance is not supported")
    if scale_invariant:
        params = fit_params(members, shift_invariant, reduction, regularizer_strength, max_iter, tol, max_res)
        members = apply_params(members, params, shift_invariant)
    depth, uncertainty = reduce_members(members, reduction, output_uncertainty)
    if not scale_invariant:  # metric predictions: the reduction is the answer
        return depth, uncertainty
    low = depth.min() if shift_invariant else 0
    span = (depth.max() - low).clamp(min=1e-6)
    depth = (depth - low) / span
    if uncertainty is not None:
        uncertainty = uncertainty / span
    return depth, uncertainty
