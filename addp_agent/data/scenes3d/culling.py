"""Screen rectangles that bound where a camera ray can meet an object, or where the object can cast its shadow.

Both are conservative. An object lies inside its box (the cube itself; a vertical box around the other shapes), so
its pixels lie inside the projection of the box's 8 corners. A point the object shades lies between the object and
the object's shadow on the floor (light rays go down to z = 0), so inside the hull of the corners and their
projections along the light onto the floor. Rectangles are padded by a pixel; every (pixel, object) pair inside
gets the exact test, so culling never changes a result.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from addp_agent.data.scenes3d.sampling import Scene, SceneObject

SHAPE_CODES = {"sphere": 0, "cube": 1, "cylinder": 2, "cone": 3}

_SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
_PAD = 1e-3


def corners(objects: tuple[SceneObject, ...]) -> np.ndarray:
    """(K, 8, 3) corners of boxes that hold the objects (yawed with a cube)."""
    half = np.array([[o.radius + _PAD, o.radius + _PAD, o.half_height + _PAD] for o in objects])
    local = _SIGNS[None] * half[:, None, :]
    yaw = np.array([o.yaw if o.shape == "cube" else 0.0 for o in objects])[:, None]
    c, s = np.cos(yaw), np.sin(yaw)
    rotated = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1], local[..., 2]],
                       axis=-1)
    return rotated + np.array([o.centre for o in objects])[:, None, :]


def _rects(scene: Scene, points: np.ndarray) -> np.ndarray:
    """(K, 4) [x0, y0, x1, y1) of each object's points (K, M, 3); the whole image when one is behind the camera."""
    camera = scene.camera
    cam = (points - camera.position) @ camera.rotation
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera.fx * cam[..., 0] / cam[..., 2] + camera.cx
        v = camera.fy * cam[..., 1] / cam[..., 2] + camera.cy
    out = np.stack([np.floor(u.min(1)) - 1, np.floor(v.min(1)) - 1, np.ceil(u.max(1)) + 1, np.ceil(v.max(1)) + 1], 1)
    behind = (cam[..., 2] <= 1e-6).any(axis=1)
    out[behind] = [0, 0, camera.width, camera.height]
    out = np.clip(out, 0, [camera.width, camera.height, camera.width, camera.height])
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])
    return out.astype(np.int64)


def object_rects(scenes: list[Scene], shadows: bool) -> np.ndarray:
    """(R, 7) int64 rows [scene, object, x0, y0, x1, y1, shape code) (x1, y1 exclusive), one per object, ordered
    by shape code (so each shape's pairs come out as one contiguous run)."""
    rows = []
    for b, scene in enumerate(scenes):
        points = corners(scene.objects)
        if shadows:
            light = scene.light
            floor = points - light * (points[..., 2:3] + _PAD) / light[2]
            points = np.concatenate([points, floor], axis=1)
        k = len(scene.objects)
        codes = np.array([SHAPE_CODES[o.shape] for o in scene.objects])[:, None]
        rows.append(np.concatenate([np.full((k, 1), b), np.arange(k)[:, None], _rects(scene, points), codes], axis=1))
    table = np.concatenate(rows).astype(np.int64)
    return table[np.argsort(table[:, 6], kind="stable")]


@dataclass
class Pairs:
    """(scene, flat pixel, object) triples; ``groups`` = (shape code, start, stop) runs covering them in order."""

    scene: torch.Tensor
    pixel: torch.Tensor
    obj: torch.Tensor
    groups: list[tuple[int, int, int]]

    def subset(self, keep: torch.Tensor) -> Pairs:
        """The pairs where ``keep`` is True (order, hence the shape runs, preserved)."""
        groups, position = [], 0
        for code, start, stop in self.groups:
            count = int(keep[start:stop].sum())
            if count:
                groups.append((code, position, position + count))
            position += count
        return Pairs(self.scene[keep], self.pixel[keep], self.obj[keep], groups)


def rect_pairs(rects: np.ndarray, width: int, device: torch.device | str) -> Pairs:
    """Every (scene, flat pixel, object) triple inside the rectangles, grouped by shape."""
    counts_np = (rects[:, 4] - rects[:, 2]) * (rects[:, 5] - rects[:, 3])
    stops = np.cumsum(counts_np)
    groups = []
    for code in np.unique(rects[:, 6]):
        rows = np.flatnonzero(rects[:, 6] == code)
        start, stop = int(stops[rows[0]] - counts_np[rows[0]]), int(stops[rows[-1]])
        if stop > start:
            groups.append((int(code), start, stop))
    r = torch.as_tensor(rects, device=device)
    w = r[:, 4] - r[:, 2]
    counts = torch.as_tensor(counts_np, device=device)
    rid = torch.repeat_interleave(torch.arange(len(r), device=device), counts)
    local = torch.arange(rid.numel(), device=device) - (torch.cumsum(counts, 0) - counts)[rid]
    x = r[rid, 2] + local % w[rid]
    y = r[rid, 3] + torch.div(local, w[rid], rounding_mode="floor")
    return Pairs(r[rid, 0], y * width + x, r[rid, 1], groups)
