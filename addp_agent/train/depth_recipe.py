"""The ADDP depth recipe as pure functions (official Marigold trainer with ADDP's changes; docs/depth.md).

1. Normalise metric depth per image: d' = 2·(d − d₂)/(d₉₈ − d₂) − 1, clipped to [−1, 1], with d₂, d₉₈ the 2 %/98 %
   quantiles over the valid pixels (Marigold's ``ScaleShiftDepthNormalizer``).
2. Blur augmentation (ADDP): map d' to [0, 1], blur with a 31-px Gaussian of σ = 10·(t+1)/T·U(0,1), map back.
3. Noise the *augmented* sample, regress the *clean* one: x_t = √ᾱ_t·z_aug + √(1−ᾱ_t)·ε, target
   v = √ᾱ_t·ε − √(1−ᾱ_t)·z_clean (v-prediction, Marigold's), or z_clean (x₀-prediction, the option).
4. Timesteps t ~ the ``depth`` preset [1,1,3,7,13,14,8,4,22,33] over ten 100-step bins (train/timesteps.py).
5. Noise: Marigold's annealed multi-resolution noise (strength 0.9·t/T), or plain Gaussian.
6. Loss: mean squared error over the valid elements of the diffusion sample (pixel models: the valid pixels; latent
   models: the latent pixels whose whole VAE patch is valid).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from addp_agent.train.augment import DEPTH_INTENSITY, depth_blur_sigmas, gaussian_blur

QUANTILE = 0.02
MULTIRES_STRENGTH = 0.9
Parameterization = Literal["v_prediction", "sample"]


def normalize_depth(depth: np.ndarray, valid: np.ndarray, quantile: float = QUANTILE) -> tuple[np.ndarray, np.ndarray]:
    """Marigold's per-image normalisation to [−1, 1] (near = −1); returns (normalised float32, valid ∧ d > 0).

    Quantiles are linear-interpolated (``torch.quantile``'s rule). A flat map (d₉₈ = d₂) becomes all −1.
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(depth) & (depth > 0)
    if not valid.any():
        return np.full(depth.shape, -1.0, dtype=np.float32), valid
    low, high = np.quantile(depth[valid], [quantile, 1.0 - quantile])
    span = max(high - low, 1e-12)
    normalised = np.where(np.isfinite(depth), (depth - low) / span * 2.0 - 1.0, 1.0)
    return np.clip(normalised, -1.0, 1.0).astype(np.float32), valid


def blur_depth(normalised: torch.Tensor, t: torch.Tensor, num_timesteps: int = 1000,
               intensity: float = DEPTH_INTENSITY,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ADDP's augmentation of (B, 1, H, W) normalised depth: [0, 1], 31-px blur of σ(t), back to [−1, 1].

    Returns (augmented, σ per sample).
    """
    sigmas = depth_blur_sigmas(t, num_timesteps, intensity, generator)
    unit = ((normalised + 1.0) / 2.0).clamp(0.0, 1.0)
    return gaussian_blur(unit, sigmas) * 2.0 - 1.0, sigmas


def training_pair(alphas_cumprod: torch.Tensor, clean: torch.Tensor, augmented: torch.Tensor, noise: torch.Tensor,
                  t: torch.Tensor, parameterization: Parameterization = "v_prediction"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy input built from the augmented sample, target built from the clean one) for timesteps ``t``."""
    alpha = alphas_cumprod.to(clean.device, torch.float32)[t].view(-1, *([1] * (clean.dim() - 1)))
    noisy = alpha.sqrt() * augmented + (1.0 - alpha).sqrt() * noise
    if parameterization == "v_prediction":
        target = alpha.sqrt() * noise - (1.0 - alpha).sqrt() * clean
    elif parameterization == "sample":
        target = clean
    else:
        raise ValueError(f"unknown parameterization {parameterization!r}; use 'v_prediction' or 'sample'")
    return noisy.to(clean.dtype), target.to(clean.dtype)


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ mask·(prediction − target)² / Σ mask (0 when nothing is valid)."""
    weight = mask.to(torch.float32).expand_as(prediction)
    squared = (prediction.float() - target.float()) ** 2
    return (squared * weight).sum() / weight.sum().clamp_min(1.0)


def pixel_loss_mask(valid: torch.Tensor, patch: int) -> torch.Tensor:
    """Valid pixels (B, 1, H, W) packed like the depth: (B, p², H/p, W/p)."""
    return F.pixel_unshuffle(valid.float(), patch) > 0.5


def latent_loss_mask(valid: torch.Tensor, factor: int, channels: int) -> torch.Tensor:
    """Latent pixels whose whole factor×factor patch is valid (Marigold), repeated over the latent channels."""
    invalid = F.max_pool2d((~valid).float(), factor)
    return (invalid < 0.5).expand(-1, channels, -1, -1)


def multi_resolution_noise(shape: tuple[int, ...], strength: torch.Tensor | float,
                           generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                           ) -> torch.Tensor:
    """Marigold's multi-resolution noise ("original" strategy), normalised to unit std over the whole tensor.

    ε = N(0,1) + Σ_i s^i · upsample(N(0,1) at size_i), size_i = size_{i−1} / r_i^i with r_i ~ U(2, 4), until 1×1;
    ``strength`` s is a float or one value per sample (annealed: 0.9·t/T).
    """
    batch, channels, height, width = shape
    draw_device = generator.device if generator is not None else torch.device(device)
    s = torch.as_tensor(strength, dtype=torch.float32).to(device)
    s = s.view(-1, 1, 1, 1) if s.dim() else s
    noise = torch.randn(shape, generator=generator, device=draw_device).to(device)
    h, w = height, width
    for i in range(10):
        r = float(torch.rand(1, generator=generator, device=draw_device)) * 2 + 2
        h, w = max(1, int(h / r**i)), max(1, int(w / r**i))
        coarse = torch.randn(batch, channels, h, w, generator=generator, device=draw_device).to(device)
        noise = noise + F.interpolate(coarse, size=(height, width), mode="bilinear") * s**i
        if h == 1 or w == 1:
            break
    return noise / noise.std()
