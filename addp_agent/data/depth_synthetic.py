"""A small synthetic depth world with analytic depth: a ground plane, a back wall and boxes, ray-cast in numpy.

For tests and quick training smoke runs (``synthetic:N[:SEED[:SIZE]]``); Scenes-3D (``scenes-gen:``) is the real
benchmark. A pinhole camera at height h ∈ [1, 2] m, pitched down by 8–25°, looks at a checkerboard ground (y = 0),
a wall at z ∈ [6, 12] m and 1–4 axis-aligned boxes standing on the ground. With the ray through pixel (u, v) written
as d = ((u + ½ − c_x)/f, (v + ½ − c_y)/f, 1) in camera coordinates, a hit at ray parameter t has z-depth exactly t.
Boxes are shaded by face (top 1.0, front 0.8, side 0.6) and everything fades with distance, so the image carries
depth cues. 2 % of the pixels are marked invalid (sensor drop-outs), to exercise valid masks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from addp_agent.data.depth_sample import DepthSample
from addp_agent.errors import UserError
from addp_agent.limits import MAX_GENERATED

SPLITS = {"train": 0, "val": 1, "test": 2}


def _box_hits(origin: np.ndarray, rays: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: entry t (inf where missed) and the axis (0 x, 1 y, 2 z) of the entry face, per ray (N, 3)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (low - origin) / rays
        t2 = (high - origin) / rays
    near = np.where(np.isnan(t1), -np.inf, np.minimum(t1, t2))
    far = np.where(np.isnan(t1), np.inf, np.maximum(t1, t2))
    entry, leave = near.max(axis=1), far.min(axis=1)
    hit = (entry <= leave) & (entry > 1e-6)
    return np.where(hit, entry, np.inf), near.argmax(axis=1)


def render_scene(rng: np.random.Generator, size: int) -> DepthSample:
    """One random scene as a :class:`DepthSample` (sample_id and split meta are set by the caller)."""
    pitch = np.deg2rad(rng.uniform(8, 25))
    height = rng.uniform(1.0, 2.0)
    focal = size * rng.uniform(0.9, 1.3)
    wall_z = rng.uniform(6, 12)
    forward = np.array([0.0, -np.sin(pitch), np.cos(pitch)])
    down = np.array([0.0, -np.cos(pitch), -np.sin(pitch)])
    right = np.array([1.0, 0.0, 0.0])
    origin = np.array([0.0, height, 0.0])
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    cam = np.stack([(u + 0.5 - size / 2) / focal, (v + 0.5 - size / 2) / focal], axis=-1).reshape(-1, 2)
    rays = cam[:, :1] * right + cam[:, 1:] * down + forward  # camera z component 1: t is the z-depth

    depth = np.full(len(rays), np.inf)
    color = np.zeros((len(rays), 3))
    with np.errstate(divide="ignore"):
        t_ground = np.where(rays[:, 1] < 0, -height / rays[:, 1], np.inf)
        t_wall = np.where(rays[:, 2] > 0, wall_z / rays[:, 2], np.inf)
    ground_colors = rng.uniform(0.25, 0.9, (2, 3))
    wall_color = rng.uniform(0.3, 0.9, 3)
    use = t_ground < t_wall
    point = origin + np.where(use, t_ground, 0.0)[:, None] * rays
    tiles = (np.floor(point[:, 0] / 0.5) + np.floor(point[:, 2] / 0.5)).astype(np.int64) % 2
    depth = np.where(use, t_ground, t_wall)
    color[use] = ground_colors[tiles[use]]
    wall_y = (origin + t_wall[:, None] * rays)[:, 1]
    color[~use] = wall_color * (0.7 + 0.3 * np.clip(wall_y / 4, 0, 1))[~use, None]

    boxes = int(rng.integers(1, 5))
    for _ in range(boxes):
        width, tall, deep = rng.uniform(0.4, 1.4, 3)
        x = rng.uniform(-2.5, 2.5)
        z = rng.uniform(2.0, wall_z - 1.0)
        low, high = np.array([x - width / 2, 0.0, z]), np.array([x + width / 2, tall, z + deep])
        t_box, axis = _box_hits(origin, rays, low, high)
        closer = t_box < depth
        shade = np.array([0.6, 1.0, 0.8])[axis]
        color[closer] = rng.uniform(0.2, 1.0, 3) * shade[closer, None]
        depth = np.where(closer, t_box, depth)

    color = color * np.exp(-depth / 40.0)[:, None] + 0.05
    image = (np.clip(color, 0, 1) * 255).round().astype(np.uint8).reshape(size, size, 3)
    depth_map = depth.reshape(size, size).astype(np.float32)
    valid = rng.random((size, size)) >= 0.02
    intrinsics = np.array([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]], dtype=np.float64)
    return DepthSample(sample_id="", image=image, depth=depth_map, valid=valid, intrinsics=intrinsics,
                       meta={"boxes": boxes, "pitch_deg": float(np.rad2deg(pitch)), "camera_height": float(height)})


class SyntheticDepth:
    """``n`` scenes of one split; sample i depends only on (seed, split, i)."""

    def __init__(self, split: str, n: int, seed: int = 0, size: int = 64):
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        if not 1 <= n <= MAX_GENERATED or not 16 <= size <= 1024:
            raise UserError(f"synthetic depth needs 1 ≤ n ≤ {MAX_GENERATED} and 16 ≤ size ≤ 1024, got n={n}, "
                            f"size={size}")
        self.split, self.n, self.seed, self.size = split, n, seed, size

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int) -> DepthSample:
        sample = render_scene(np.random.default_rng([self.seed, SPLITS[self.split], index]), self.size)
        sample.sample_id = f"synthetic-{self.split}-{self.seed}-{index:06d}"
        sample.meta["split"] = self.split
        return sample

    def __iter__(self) -> Iterator[DepthSample]:
        return (self.sample(i) for i in range(self.n))
