"""Guidance: pure functions that combine the branch predictions of one batched UNet call.

Branches (all conditioned on the noisy sample x_t):
  ε_t  = ε(x_t | image, D)       text + image
  ε_i  = ε(x_t | image, ∅)       image only (null prompt)
  ε_u  = ε(x_t | 0, ∅)           unconditional
  ε_ck = ε(x_t | image, D⁻_k)    image + correctional prompt k

InstructPix2Pix dual guidance, written ε̂(X) for text X (image condition kept):
  ε̂(D) = ε_u + s_I(ε_i − ε_u) + s_T(ε_t − ε_i)
ADDP correctional guidance, three forms (weights w_k ≥ 0 per sample and correction, W = Σ_k w_k):
  additive: ε = ε̂(D) + Σ_k w_k (ε_t − ε_ck)
  replace:  ε = ε_u + s_I(ε_i − ε_u) + s_T(ε_t − ε̄_c),   ε̄_c = Σ_k w_k ε_ck / W
            (D⁻ takes the null prompt's place in the text term; a sample without corrections keeps ε_i. This is
            the paper's form with w = s_T − 1 only when ε_i = ε̄_c, which a trained model does not give.)
  paper:    ε = (1 + W) ε̂(D) − Σ_k w_k ε̂(D⁻_k),   ε̂(D⁻_k) = ε_u + s_I(ε_i − ε_u) + s_T(ε_ck − ε_i)
              = ε̂(D) + s_T Σ_k w_k (ε_t − ε_ck)
            (the paper's (1+w)·ε(D) − w·ε(D⁻) applied to the dual-guided predictions of D and D⁻, the image
            condition kept in both; at s_T = s_I = 1, with one correction, it is exactly (1+w)·ε_t − w·ε_c.)
"""

from __future__ import annotations

from typing import Literal

import torch

CorrectionMode = Literal["additive", "replace", "paper"]
CORRECTION_MODES: tuple[str, ...] = ("additive", "replace", "paper")


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
    if mode in ("additive", "paper"):
        scale = 1.0 if mode == "additive" else text_scale
        guided = dual_guidance(eps_text, eps_image, eps_uncond, text_scale, image_scale)
        for k, eps_c in enumerate(eps_corrections):
            guided = guided + scale * _per_sample(weights[:, k], eps_c) * (eps_text - eps_c)
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
    raise ValueError(f"unknown correction mode {mode!r}; use one of {', '.join(CORRECTION_MODES)}")
