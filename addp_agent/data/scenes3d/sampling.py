"""Random scenes: camera, light, floor and 3-10 non-overlapping objects resting on the ground, all in view."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from addp_agent.data.scenes3d.camera import Camera, orbit
from addp_agent.data.scenes3d.config import FLOORS, SIZES, ScenesConfig

ATTRS = ("size", "color", "material", "shape")
# dimensions per unit scale s: (radius or half-edge, half-height)
_DIMS = {"sphere": (1.0, 1.0), "cube": (0.8, 0.8), "cylinder": (0.85, 0.85), "cone": (0.95, 0.95)}


@dataclass(frozen=True)
class SceneObject:
    """An object on the ground: ``radius`` is the sphere/cylinder/cone radius or the cube's half-edge."""

    shape: str
    color: str
    material: str
    size: str
    x: float
    y: float
    yaw: float  # radians about the vertical axis (only visible on cubes)

    @property
    def radius(self) -> float:
        return SIZES[self.size] * _DIMS[self.shape][0]

    @property
    def half_height(self) -> float:
        return SIZES[self.size] * _DIMS[self.shape][1]

    @property
    def centre(self) -> np.ndarray:
        """Centre of the bounding box (the object rests on z = 0)."""
        return np.array([self.x, self.y, self.half_height])

    @property
    def bound_radius(self) -> float:
        """Radius of a sphere about :attr:`centre` that encloses the object."""
        if self.shape == "sphere":
            return self.radius
        if self.shape == "cube":
            return self.radius * math.sqrt(3.0)
        return math.hypot(self.radius, self.half_height)

    @property
    def footprint(self) -> float:
        """Radius of a disc on the ground that encloses the object."""
        return self.radius * (math.sqrt(2.0) if self.shape == "cube" else 1.0)

    def attrs(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRS}


@dataclass(frozen=True)
class Scene:
    """Everything the renderer needs. ``light`` points from the scene towards the (directional) light."""

    objects: tuple[SceneObject, ...]
    camera: Camera
    light: np.ndarray  # (3,) unit
    floor: str
    tile: float  # metres per floor tile
    texture: tuple[float, float, float]  # tile-tone contrast, checker contrast, texture offset


def _light(rng: random.Random) -> np.ndarray:
    azimuth, elevation = math.radians(rng.uniform(0, 360)), math.radians(rng.uniform(35, 65))
    return np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                     math.sin(elevation)])


def _in_view(obj: SceneObject, camera: Camera, frame: tuple) -> bool:
    """The object's bounding sphere projects fully inside the image (1 px border); ``frame`` = camera position and
    rotation columns as floats (plain Python is faster than NumPy for one point)."""
    (px, py, pz), right, down, forward = frame
    dx, dy, dz = obj.x - px, obj.y - py, obj.half_height - pz
    z = dx * forward[0] + dy * forward[1] + dz * forward[2]
    bound = obj.bound_radius
    if z <= bound + 0.5:
        return False
    u = camera.fx * (dx * right[0] + dy * right[1] + dz * right[2]) / z + camera.cx
    v = camera.fy * (dx * down[0] + dy * down[1] + dz * down[2]) / z + camera.cy
    r = camera.fx * bound / math.sqrt(max(z * z - bound * bound, 1e-9))
    return r + 1 <= u <= camera.width - 1 - r and r + 1 <= v <= camera.height - 1 - r


def _attributes(rng: random.Random, cfg: ScenesConfig, placed: list[SceneObject]) -> dict[str, str]:
    values = {"shape": rng.choice(cfg.shapes), "color": rng.choice(cfg.colors),
              "material": rng.choice(cfg.materials), "size": rng.choice(cfg.sizes)}
    if placed and rng.random() < cfg.lookalike:  # a look-alike: copy 3 of the 4 attributes of a placed object
        model = rng.choice(placed)
        changed = rng.choice(ATTRS)
        values = {a: (values[a] if a == changed else getattr(model, a)) for a in ATTRS}
    return values


def sample_scene(rng: random.Random, cfg: ScenesConfig) -> Scene | None:
    """One scene, or ``None`` when an object found no free spot in view within 50 tries."""
    camera = orbit(rng.uniform(0, 360), rng.uniform(*cfg.elevation_deg), rng.uniform(*cfg.distance),
                   (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 0.0), cfg.fov_deg, cfg.size)
    light = _light(rng)
    floor = rng.choice(sorted(FLOORS))
    tile = rng.uniform(0.8, 1.6)
    texture = (rng.uniform(0.03, 0.09), rng.uniform(0.0, 0.06), rng.uniform(0.0, 100.0))
    count = rng.randint(cfg.min_objects, cfg.max_objects)
    frame = (tuple(camera.position.tolist()), *(tuple(camera.rotation[:, i].tolist()) for i in range(3)))
    placed: list[SceneObject] = []
    for _ in range(count):
        values = _attributes(rng, cfg, placed)
        for _ in range(50):
            obj = SceneObject(x=rng.uniform(-cfg.area, cfg.area), y=rng.uniform(-cfg.area, cfg.area),
                              yaw=rng.uniform(0.0, math.pi / 2), **values)
            clear = all(math.hypot(obj.x - o.x, obj.y - o.y) >= obj.footprint + o.footprint + cfg.min_gap
                        for o in placed)
            if clear and _in_view(obj, camera, frame):
                placed.append(obj)
                break
        else:
            return None
    return Scene(objects=tuple(placed), camera=camera, light=light, floor=floor, tile=tile, texture=texture)


def object_facts(scene: Scene) -> list[dict]:
    """JSON-safe facts per object: attributes, pose, camera-frame coordinates and projected centre."""
    camera = scene.camera
    right, forward = camera.ground_axes()
    centres = np.array([o.centre for o in scene.objects])
    offsets = centres - camera.position
    projected = camera.project(centres)
    along_right, along_forward = offsets @ right, offsets @ forward
    distances = np.sqrt((offsets * offsets).sum(axis=1))
    facts = []
    for k, obj in enumerate(scene.objects):
        u, v, z = projected[k]
        facts.append({"id": k, **obj.attrs(), "x": round(obj.x, 6), "y": round(obj.y, 6),
                      "z": round(obj.half_height, 6), "yaw": round(obj.yaw, 6), "radius": round(obj.radius, 6),
                      "height": round(2 * obj.half_height, 6), "right": float(along_right[k]),
                      "forward": float(along_forward[k]), "distance": float(distances[k]),
                      "u": float(u), "v": float(v), "depth": float(z)})
    return facts
