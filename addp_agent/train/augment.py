"""Diffusion-tailored augmentation of the ground-truth target (ADDP, official RIS and depth recipes).

The target is corrupted with an intensity that grows with t, then noised; the loss still regresses the clean
target. RIS: s = 0.2·t/T — colour jitter of the red paint (brightness, contrast, saturation ±s), random affine
of the mask (±50·s°, translate ±s, scale 1±s), random erasing (p 0.5, area ≤ s). Depth: Gaussian blur with a
31-px kernel and σ = 10·(t+1)/T·U(0,1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RIS_INTENSITY = 0.2
DEPTH_INTENSITY = 10.0
RED = torch.tensor([1.0, 0.0, 0.0])


def ris_intensity(t: torch.Tensor, num_timesteps: int = 1000, intensity: float = RIS_INTENSITY) -> torch.Tensor:
    """s = intensity · t / T per sample."""
    return intensity * t.to(torch.float32) / num_timesteps


def _rand(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None,
          like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws from ``generator`` (on its own device), placed on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), generator=generator, device=device).to(like.device)


def _uniform(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * _rand(low.shape, generator, low)


def jitter_paint(strength: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Colour-jittered pure red per sample, (B, 3) in [0, 1] (brightness, contrast, saturation of a flat fill)."""
    one = torch.ones_like(strength)
    brightness = _uniform((one - strength).clamp_min(0), one + strength, generator)
    contrast = _uniform((one - strength).clamp_min(0), one + strength, generator)
    saturation = _uniform((one - strength).clamp_min(0), one + strength, generator)
    color = (RED.to(strength.device)[None] * brightness[:, None]).clamp(0, 1)
    grey = (0.299 * color[:, 0] + 0.587 * color[:, 1] + 0.114 * color[:, 2])[:, None]
    color = (contrast[:, None] * color + (1 - contrast[:, None]) * grey).clamp(0, 1)  # flat fill: mean = grey
    grey = (0.299 * color[:, 0] + 0.587 * color[:, 1] + 0.114 * color[:, 2])[:, None]
    return (saturation[:, None] * color + (1 - saturation[:, None]) * grey).clamp(0, 1)


def affine_masks(masks: torch.Tensor, strength: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random rotation (±50·s°), translation (±s of the size) and scale (1±s) of (B, H, W) masks, nearest."""
    batch = masks.shape[0]
    angle = _uniform(-50 * strength, 50 * strength, generator) * math.pi / 180
    tx = _uniform(-strength, strength, generator) * 2  # grid units: the image spans [-1, 1]
    ty = _uniform(-strength, strength, generator) * 2
    scale = _uniform(1 - strength, 1 + strength, generator)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # M = (R·S)⁻¹ maps output → input
    shift_x, shift_y = -(cos * tx - sin * ty), -(sin * tx + cos * ty)  # input = M·(out − T)
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, (batch, 1, *masks.shape[1:]), align_corners=False)
    warped = F.grid_sample(masks[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped[:, 0] > 0.5


def erase_masks(masks: torch.Tensor, strength: torch.Tensor, generator: torch.Generator | None = None,
                probability: float = 0.5) -> torch.Tensor:
    """RandomErasing(p, scale=(0, s), ratio=(0.5, 2)) of a rectangle from each mask (value 0)."""
    batch, height, width = masks.shape
    like = strength.float()
    apply = _rand((batch,), generator, like) < probability
    area = _rand((batch,), generator, like) * strength * height * width
    log_ratio = _uniform(torch.full((batch,), math.log(0.5), device=like.device),
                         torch.full((batch,), math.log(2.0), device=like.device), generator)
    ratio = torch.exp(log_ratio)
    h = torch.sqrt(area * ratio).round().long().clamp(0, height)
    w = torch.sqrt(area / ratio).round().long().clamp(0, width)
    top = (_rand((batch,), generator, like) * (height - h + 1).float()).long()
    left = (_rand((batch,), generator, like) * (width - w + 1).float()).long()
    rows = torch.arange(height, device=masks.device)[None, :, None]
    cols = torch.arange(width, device=masks.device)[None, None, :]
    top, left, h, w, apply = (x.to(masks.device)[:, None, None] for x in (top, left, h, w, apply))
    box = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & apply
    return masks & ~box


def paint(images: torch.Tensor, masks: torch.Tensor, colors: torch.Tensor | None = None) -> torch.Tensor:
    """Paint targets: (B, 3, H, W) images in [0, 1], masks (B, H, W) → image with the mask filled by colour."""
    if colors is None:
        colors = RED.to(images.device)[None].expand(images.shape[0], 3)
    m = masks[:, None].to(images.dtype)
    return images * (1 - m) + colors[:, :, None, None].to(images.dtype) * m


def augment_ris_targets(images: torch.Tensor, masks: torch.Tensor, t: torch.Tensor, num_timesteps: int = 1000,
                        intensity: float = RIS_INTENSITY, generator: torch.Generator | None = None) -> torch.Tensor:
    """The augmented painted target x'_0 for each sample at its timestep t (images in [0, 1])."""
    strength = ris_intensity(t, num_timesteps, intensity)
    moved = erase_masks(affine_masks(masks, strength, generator), strength, generator)
    return paint(images, moved, jitter_paint(strength, generator))


def gaussian_kernels(sigmas: torch.Tensor, size: int = 31) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels, (B, size), one per σ (σ → 0 gives the identity)."""
    x = torch.arange(size, dtype=torch.float32, device=sigmas.device) - (size - 1) / 2
    kernels = torch.exp(-(x[None] ** 2) / (2 * sigmas.float().clamp_min(1e-6)[:, None] ** 2))
    return kernels / kernels.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, size: int = 31) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) images, σ per sample, reflected borders (OpenCV's default
    BORDER_REFLECT_101), in two grouped convolutions for the whole batch."""
    batch, channels, height, width = images.shape
    half = size // 2
    mode = "reflect" if min(height, width) > half else "replicate"
    kernels = gaussian_kernels(sigmas.to(images.device), size).to(images.dtype).repeat_interleave(channels, dim=0)
    x = F.pad(images.reshape(1, batch * channels, height, width), (half, half, half, half), mode=mode)
    x = F.conv2d(x, kernels.view(-1, 1, 1, size), groups=batch * channels)
    x = F.conv2d(x, kernels.view(-1, 1, size, 1), groups=batch * channels)
    return x.reshape(batch, channels, height, width)


def depth_blur_sigmas(t: torch.Tensor, num_timesteps: int = 1000, intensity: float = DEPTH_INTENSITY,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """σ = intensity·(t+1)/T·U(0,1) per sample (the official ADDP depth recipe)."""
    return intensity * (t.float() + 1) / num_timesteps * _rand(t.shape, generator, t.float())


def augment_depth_targets(depth: torch.Tensor, t: torch.Tensor, num_timesteps: int = 1000,
                          intensity: float = DEPTH_INTENSITY, generator: torch.Generator | None = None) -> torch.Tensor:
    """Blur (B, 1, H, W) depth maps with a 31-px Gaussian, σ = intensity·(t+1)/T·U(0,1) per sample."""
    return gaussian_blur(depth, depth_blur_sigmas(t, num_timesteps, intensity, generator))
