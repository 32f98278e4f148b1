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


def floor_albedo(x: torch.Tensor, y: torch.Tensor, depth: torch.Tensor, base: torch.Tensor, texture: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear floor albedo channels (B, P) at ground points ``x``, ``y``: per-tile tones plus a faint checker,
    fading with depth. ``base`` (B, 3) linear; ``texture`` (B, 4): tile size, tone contrast, checker contrast,
    offset."""
    tile, tone_c, checker_c, offset = (texture[:, i : i + 1] for i in range(4))
    ix = torch.floor((x + offset) / tile).long()
    iy = torch.floor((y + offset) / tile).long()
    tone = (((ix * 73856093) ^ (iy * 19349663)) & 1023).float() / 1023.0 * 2.0 - 1.0
    parity = ((ix + iy) & 1).float() - 0.5
    scaled = depth / FADE_DISTANCE
    factor = 1.0 + (tone_c * tone + checker_c * parity) / (1.0 + scaled * scaled)
    return base[:, 0:1] * factor, base[:, 1:2] * factor, base[:, 2:3] * factor


def shade(dirs: tuple[torch.Tensor, ...], normal: tuple[torch.Tensor, ...], albedo: tuple[torch.Tensor, ...],
          metal: torch.Tensor, light: torch.Tensor, shadow: torch.Tensor, sky: torch.Tensor) -> torch.Tensor:
    """sRGB uint8 (B, P, 3) from per-pixel components (each (B, P)) of the view rays, unit normals and linear
    albedo, plus metal, shadow and sky flags."""
    dx, dy, dz = dirs
    nx, ny, nz = normal
    lx, ly, lz = (light[:, i : i + 1] for i in range(3))
    scale = -1.0 / torch.sqrt(dx * dx + dy * dy + dz * dz)
    vx, vy, vz = dx * scale, dy * scale, dz * scale  # unit vector towards the camera
    n_dot_l = (nx * lx + ny * ly + nz * lz).clamp_min(0.0) * (~shadow)
    hx, hy, hz = vx + lx, vy + ly, vz + lz
    power = ((nx * hx + ny * hy + nz * hz) / torch.sqrt(hx * hx + hy * hy + hz * hz)).clamp_min(0.0)
    for _ in range(RUBBER["squarings"]):
        power = power * power
    rubber_spec = power
    for _ in range(METAL["squarings"] - RUBBER["squarings"]):
        power = power * power
    facing = n_dot_l > 0
    spec = torch.where(metal, METAL["ks"] * power, RUBBER["ks"] * rubber_spec) * facing
    reflected_z = 2.0 * (vx * nx + vy * ny + vz * nz) * nz - vz
    env = torch.where(metal, METAL["env"] * (0.35 + 0.65 * reflected_z.clamp(0.0, 1.0)), 0.0)
    light_amount = AMBIENT + torch.where(metal, METAL["kd"], RUBBER["kd"]) * n_dot_l + env
    channels = []
    for albedo_c, sky_c in zip(albedo, SKY, strict=True):
        color = torch.where(sky, sky_c, albedo_c * light_amount + spec)
        channels.append(torch.round(torch.sqrt(color.clamp(0.0, 1.0)) * 255.0).to(torch.uint8))
    return torch.stack(channels, dim=-1)
