"""Guidance: pure functions that combine the branch predictions of one batched UNet call.

Branches (all conditioned on the noisy sample x_t):
  ε_t  = ε(x_t | image, D)       text + image
  ε_i  = ε(x_t | image, ∅)       image only (null prompt)
  ε_u  = ε(x_t | 0, ∅)           unconditional
  ε_ck = ε(x_t | image, D⁻_k)    image + correctional prompt k

InstructPix2Pix dual guidance:   ε = ε_u + s_I(ε_i − ε_u) + s_T(ε_t − ε_i)
ADDP correctional guidance, two forms (weights w_k ≥ 0 per sample and correction):
  additive: ε = ε_u + s_I(ε_i − ε_u) + s_T(ε_t − ε_i) + Σ_k w_k (ε_t − ε_ck)
  replace:  ε = ε_u + s_I(ε_i − ε_u) + s_T(ε_t − ε̄_c),   ε̄_c = Σ_k w_k ε_ck / Σ_k w_k
            (D⁻ takes the null prompt's place in the text term: the paper's (1+w)ε(D) − wε(D⁻) with
            w = s_T − 1, carried into the dual guidance; a sample without corrections keeps ε_i.)
"""

from __future__ import annotations

from typing import Literal

import torch

CorrectionMode = Literal["additive", "replace"]


def guidance_branches(text_scale: float, image_scale: float) -> int:
    """UNet branches per denoising step before corrections: 1 without guidance (s_T ≤ 1); 2 at s_I = 1, where
    ε_u has zero weight (ε_u + 1·(ε_i − ε_u) = ε_i) and its branch is skipped; else 3."""
    if not (text_scale > 1.0 and image_scale >= 1.0):
        return 1
    return 2 if image_scale == 1.0 else 3


def dual_guidance(eps_text: torch.Tensor, eps_image: torch.Tensor, eps_uncond: torch.Tensor,
                  text_scale: float, image_scale: float) -> torch.Tensor:
    """InstructPix2Pix's guidance, written in the same order of operations as diffusers' pipeline."""
    return eps_uncond + text_scale * (eps_text - eps_image) + image_scale * (eps_image - eps_uncond)


def _per_sample(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape (B,) weights to broadcast over a (B, C, H, W) prediction."""
    return weights.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def correctional_guidance(eps_text: torch.Tensor, eps_image: torch.Tensor, eps_uncond: torch.Tensor,
                          eps_corrections: list[torch.Tensor], weights: torch.Tensor, text_scale: float,
                          image_scale: float, mode: CorrectionMode = "additive") -> torch.Tensor:
    """Dual guidance plus correction terms; ``weights`` is (B, K), zero where a sample has no k-th correction."""
    if not eps_corrections:
        return dual_guidance(eps_text, eps_image, eps_uncond, text_scale, image_scale)
    if weights.shape[1] != len(eps_corrections):
        raise ValueError(f"{len(eps_corrections)} correction branches but weights for {weights.shape[1]}")
    if mode == "additive":
        guided = dual_guidance(eps_text, eps_image, eps_uncond, text_scale, image_scale)
        for k, eps_c in enumerate(eps_corrections):
            guided = guided + _per_sample(weights[:, k], eps_c) * (eps_text - eps_c)
        return guided
    if mode == "replace":
        total = weights.sum(dim=1)
        has_correction = total > 0
        mean_correction = torch.zeros_like(eps_image)
        for k, eps_c in enumerate(eps_corrections):
            share = torch.where(has_correction, weights[:, k] / total.clamp_min(1e-12), torch.zeros_like(total))
            mean_correction = mean_correction + _per_sample(share, eps_c) * eps_c
        negative = torch.where(_per_sample(has_correction, eps_image).bool(), mean_correction, eps_image)
        return eps_uncond + image_scale * (eps_image - eps_uncond) + text_scale * (eps_text - negative)
    raise ValueError(f"unknown correction mode {mode!r}; use 'additive' or 'replace'")
