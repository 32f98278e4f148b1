"""Render a batch of scenes: RGB, per-pixel object index, metric z-depth, visible and unoccluded pixel counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from addp_agent.data.scenes3d.camera import pixel_rays
from addp_agent.data.scenes3d.config import COLORS, FLOORS
from addp_agent.data.scenes3d.culling import object_rects, rect_pairs
from addp_agent.data.scenes3d.raycast import cast_primary, cast_shadows, pack_objects
from addp_agent.data.scenes3d.sampling import Scene
from addp_agent.data.scenes3d.shading import floor_albedo, shade

BATCH_PIXELS = 16 * 128 * 128  # pixels rendered in one batch (measured fastest on CPU: tensors stay in cache)


@dataclass
class Rendered:
    """One scene's pixels. ``ids``: object index per pixel, -1 floor, -2 nothing (never in view by construction)."""

    rgb: np.ndarray  # uint8 (H, W, 3)
    ids: np.ndarray  # int16 (H, W)
    depth: np.ndarray  # float32 (H, W), metres along the optical axis; inf where nothing is hit
    visible: np.ndarray  # int64 (K,) visible pixels per object
    coverage: np.ndarray  # int64 (K,) pixels each object would cover alone (in frame)

    def mask(self, k: int) -> np.ndarray:
        return self.ids == k


def _linear(rgb: tuple[int, int, int]) -> list[float]:
    return [(c / 255.0) ** 2 for c in rgb]


def _render_batch(scenes: list[Scene], device: torch.device | str) -> list[Rendered]:
    size = scenes[0].camera.width
    origins, dirs = pixel_rays([s.camera for s in scenes], device)
    objects = pack_objects(scenes, device)
    hits = cast_primary(origins, dirs, objects, rect_pairs(object_rects(scenes, False), size, device))
    reach = hits.depth.clamp_max(1e6)
    points = tuple(origins[:, c : c + 1] + reach * dirs[c] for c in range(3))

    f64 = {"dtype": torch.float64, "device": device}
    light = torch.tensor(np.stack([s.light for s in scenes]), **f64).float()
    width = objects.shape[1]
    albedos = torch.tensor([[_linear(COLORS[o.color]) for o in s.objects] + [[0.0] * 3] * (width - len(s.objects))
                            for s in scenes], **f64).float()
    metals = torch.tensor([[o.material == "metal" for o in s.objects] + [False] * (width - len(s.objects))
                           for s in scenes], dtype=torch.bool, device=device)
    floors = torch.tensor([_linear(FLOORS[s.floor]) for s in scenes], **f64).float()
    texture = torch.tensor([[s.tile, *s.texture] for s in scenes], **f64).float()

    on_object = hits.obj >= 0
    index = hits.obj.clamp_min(0)
    floor = floor_albedo(points[0], points[1], hits.depth, floors, texture)
    albedo = tuple(torch.where(on_object, torch.gather(albedos[..., c], 1, index), floor[c]) for c in range(3))
    metal = on_object & torch.gather(metals, 1, index)
    nx, ny, nz = hits.normal
    lit = (hits.obj > -2) & (nx * light[:, 0:1] + ny * light[:, 1:2] + nz * light[:, 2:3] > 0)
    shadow = cast_shadows(points, hits.normal, light, objects, lit,
                          rect_pairs(object_rects(scenes, True), size, device))
    rgb = shade(dirs, hits.normal, albedo, metal, light, shadow, hits.obj == -2).cpu().numpy()
    ids = hits.obj.to(torch.int16).cpu().numpy()
    depth = hits.depth.cpu().numpy()
    visible, coverage = hits.visible.cpu().numpy(), hits.coverage.cpu().numpy()
    out = []
    for i, scene in enumerate(scenes):
        k = len(scene.objects)
        out.append(Rendered(rgb=rgb[i].reshape(size, size, 3), ids=ids[i].reshape(size, size),
                            depth=depth[i].reshape(size, size), visible=visible[i, :k], coverage=coverage[i, :k]))
    return out


def render(scenes: list[Scene], device: torch.device | str = "cpu") -> list[Rendered]:
    """Render scenes of one image size (in batches of at most ``BATCH_PIXELS`` pixels)."""
    if not scenes:
        return []
    size = scenes[0].camera.width
    if any(s.camera.width != size or s.camera.height != size for s in scenes):
        raise ValueError("render() needs scenes of one image size")
    step = max(1, BATCH_PIXELS // (size * size))
    out: list[Rendered] = []
    for start in range(0, len(scenes), step):
        out += _render_batch(scenes[start : start + step], device)
    return out
