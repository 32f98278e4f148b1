"""Shading: procedural floor texture, Lambert + Blinn-Phong specular, one directional light plus ambient, shadows.

Colours are linear (sRGB albedo squared) and shown with gamma 2 (a square root). Only element-wise arithmetic:
the specular power is repeated squaring and the floor's tile tones come from an integer hash.
"""

from __future__ import annotations

import torch

AMBIENT = 0.22
RUBBER = {"kd": 0.85, "ks": 0.10, "squarings": 4}  # shininess 16
METAL = {"kd": 0.45, "ks": 0.6, "squarings": 7, "env": 0.45}  # shininess 128, a sky-gradient reflection
SKY = (0.75, 0.8, 0.88)
FADE_DISTANCE = 25.0  # metres at which the floor texture's contrast halves


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / torch.sqrt(_dot(v, v)).clamp_min(1e-12)[..., None]


def floor_albedo(points: torch.Tensor, depth: torch.Tensor, base: torch.Tensor, texture: torch.Tensor
                 ) -> torch.Tensor:
    """Linear albedo (B, P, 3) of the floor at ``points``: per-tile tones plus a faint checker, fading with depth.

    ``base`` (B, 3) linear; ``texture`` (B, 4): tile size, tone contrast, checker contrast, offset.
    """
    tile, tone_c, checker_c, offset = (texture[:, None, i] for i in range(4))
    ix = torch.floor((points[..., 0] + offset) / tile).long()
    iy = torch.floor((points[..., 1] + offset) / tile).long()
    tone = (((ix * 73856093) ^ (iy * 19349663)) & 1023).float() / 1023.0 * 2.0 - 1.0
    parity = ((ix + iy) & 1).float() - 0.5
    fade = 1.0 / (1.0 + (depth / FADE_DISTANCE) * (depth / FADE_DISTANCE))
    factor = 1.0 + (tone_c * tone + checker_c * parity) * fade
    return base[:, None, :] * factor[..., None]


def shade(dirs: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor, metal: torch.Tensor,
          light: torch.Tensor, shadow: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """sRGB uint8 (B, P, 3) from per-pixel view rays, unit normals, linear albedo, metal flags and shadow flags."""
    view = -_unit(dirs)
    lit = (~shadow).float()
    n_dot_l = _dot(normal, light[:, None, :]).clamp_min(0.0) * lit
    half = _unit(view + light[:, None, :])
    power = _dot(normal, half).clamp_min(0.0)
    for _ in range(RUBBER["squarings"]):
        power = power * power
    rubber_spec = power
    for _ in range(METAL["squarings"] - RUBBER["squarings"]):
        power = power * power
    kd = torch.where(metal, METAL["kd"], RUBBER["kd"])
    spec = torch.where(metal, METAL["ks"] * power, RUBBER["ks"] * rubber_spec) * (n_dot_l > 0).float()
    reflected_z = -view[..., 2] + 2.0 * _dot(view, normal) * normal[..., 2]
    env = torch.where(metal, METAL["env"] * (0.35 + 0.65 * reflected_z.clamp(0.0, 1.0)), 0.0)
    color = albedo * (AMBIENT + kd * n_dot_l + env)[..., None] + spec[..., None]
    color = torch.where(sky[..., None], torch.tensor(SKY, device=color.device), color)
    return torch.round(torch.sqrt(color.clamp(0.0, 1.0)) * 255.0).to(torch.uint8)
