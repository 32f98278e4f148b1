"""Scenes-3D renderer against geometry computed independently here (float64 NumPy, implicit shapes)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from addp_agent.data.scenes3d import preset_config
from addp_agent.data.scenes3d.camera import Camera, look_at
from addp_agent.data.scenes3d.config import COLORS
from addp_agent.data.scenes3d.render import render
from addp_agent.data.scenes3d.sampling import Scene, SceneObject, sample_scene

LIGHT = np.array([0.3, 0.2, 0.93]) / np.linalg.norm([0.3, 0.2, 0.93])


def scene_of(objects, camera) -> Scene:
    return Scene(objects=tuple(objects), camera=camera, light=LIGHT, floor="grey", tile=1.0, texture=(0.05, 0.03, 0.0))


def centred_camera(position, target, size=65) -> Camera:
    """A camera whose principal point is the centre of pixel (size // 2, size // 2)."""
    base = look_at(position, target, 40.0, size, size)
    return Camera(base.position, base.rotation, base.fx, base.fy, size // 2 + 0.5, size // 2 + 0.5, size, size)


def rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Float64 unit ray directions (H, W, 3) and the camera-z of each direction."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width] + 0.5
    local = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], -1)
    directions = local @ camera.rotation.T
    norm = np.linalg.norm(directions, axis=-1, keepdims=True)
    return directions / norm, 1.0 / norm[..., 0]


def points_from_depth(camera: Camera, depth: np.ndarray) -> np.ndarray:
    unit, z_per_metre = rays(camera)
    return camera.position + unit * (depth / z_per_metre)[..., None]


@pytest.mark.parametrize("size_name", ["small", "large"])
def test_sphere_centre_pixel_depth_is_distance_minus_radius(size_name):
    sphere = SceneObject("sphere", "blue", "rubber", size_name, 0.4, -0.7, 0.0)
    for position in ([9.0, 4.0, 6.0], [-5.0, 11.0, 3.0], [0.4, -0.7 - 14.0, 2.5]):
        camera = centred_camera(position, sphere.centre)
        rendered = render([scene_of([sphere], camera)])[0]
        centre = camera.height // 2
        distance = float(np.linalg.norm(np.asarray(position) - sphere.centre))
        assert rendered.ids[centre, centre] == 0
        assert abs(float(rendered.depth[centre, centre]) - (distance - sphere.radius)) < 1e-4


def test_cube_faces_are_planar_and_the_floor_depth_is_z_not_ray_length():
    cube = SceneObject("cube", "green", "metal", "large", 0.2, 0.3, 0.6)
    camera = look_at([6.0, -5.0, 4.5], cube.centre, 40.0, 128, 128)
    rendered = render([scene_of([cube], camera)])[0]
    points = points_from_depth(camera, rendered.depth.astype(np.float64))
    c, s = math.cos(cube.yaw), math.sin(cube.yaw)
    offset = points - cube.centre
    local = np.stack([c * offset[..., 0] + s * offset[..., 1], -s * offset[..., 0] + c * offset[..., 1],
                      offset[..., 2]], -1)
    on_cube = rendered.ids == 0
    faces = np.abs(local[on_cube]).argmax(axis=1)
    seen = set()
    for axis in range(3):
        for sign in (-1, 1):
            face = (faces == axis) & (np.sign(local[on_cube][:, axis]) == sign)
            if face.sum() < 30:
                continue
            seen.add((axis, sign))
            # every pixel of the face lies on its plane (depth read back along the pixel's ray)
            assert np.abs(local[on_cube][face][:, axis] - sign * cube.radius).max() < 2e-4
    assert len(seen) == 3  # three faces in view from this corner
    floor = rendered.ids == -1
    unit, z_per_metre = rays(camera)
    t = -camera.position[2] / unit[..., 2]
    assert np.abs(rendered.depth[floor] - (t * z_per_metre)[floor]).max() < 1e-4 * t[floor].max()


def _inside(obj: SceneObject, p: np.ndarray, margin: float) -> np.ndarray:
    """Points at least ``margin`` inside the object (independent implicit definitions)."""
    d = p - obj.centre
    r, half = obj.radius, obj.half_height
    if obj.shape == "sphere":
        return np.linalg.norm(d, axis=-1) < r - margin
    if obj.shape == "cube":
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        x, y = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
        return np.maximum(np.maximum(np.abs(x), np.abs(y)), np.abs(d[..., 2])) < r - margin
    radial = np.hypot(d[..., 0], d[..., 1])
    vertical = np.abs(d[..., 2]) < half - margin
    if obj.shape == "cylinder":
        return vertical & (radial < r - margin)
    below_apex = half - d[..., 2]  # cone: apex at the top of the box
    return vertical & (radial < r * below_apex / (2 * half) - margin)


def _on_surface(obj: SceneObject, p: np.ndarray, tolerance: float) -> np.ndarray:
    return ~_inside(obj, p, tolerance) & _inside(obj, p, -tolerance)


@pytest.mark.parametrize("preset", ["default", "hard"])
def test_every_mask_pixel_is_the_nearest_surface_along_its_ray(preset):
    config = preset_config(preset, size=64)
    rng = random.Random(11)
    scenes = [s for s in (sample_scene(rng, config) for _ in range(12)) if s is not None][:8]
    for scene, rendered in zip(scenes, render(scenes), strict=True):
        camera = scene.camera
        unit, z_per_metre = rays(camera)
        distance = rendered.depth.astype(np.float64) / z_per_metre  # along the ray
        hit = points_from_depth(camera, rendered.depth.astype(np.float64))
        for k, obj in enumerate(scene.objects):
            mask = rendered.ids == k
            assert mask.sum() == rendered.visible[k]  # (raw scenes: an object may be hidden completely)
            assert _on_surface(obj, hit[mask], 2e-3).all()  # the depth lands on this object's surface
        # nothing is in front: sample each ray that passes near an object from the camera to just before its hit
        fractions = np.linspace(0.0, 1.0, 600, endpoint=False)[1:]
        for k, obj in enumerate(scene.objects):
            to_centre = obj.centre - camera.position
            along_axis = unit @ to_centre
            passes = np.linalg.norm(to_centre - unit * along_axis[..., None], axis=-1) < obj.bound_radius
            along = distance[passes][:, None] * fractions  # (rays near the object, samples)
            samples = camera.position + unit[passes][:, None, :] * along[..., None]
            blocked = (_inside(obj, samples, 2e-3) & (along < distance[passes][:, None] - 2e-3)).any(axis=-1)
            assert passes.sum() >= rendered.visible[k] and not blocked.any(), f"object {k} hides a pixel"
        # the visible share never exceeds the unoccluded coverage, and the floor is everywhere else
        assert (rendered.visible <= rendered.coverage).all()
        assert (rendered.ids >= -1).all()


def test_rendered_colours_stay_clear_of_the_red_paint():
    """The RIS model paints its answer pure red; no rendered pixel comes within 100 (RGB) of it."""
    config = preset_config("hard", size=64)
    rng = random.Random(3)
    scenes = [s for s in (sample_scene(rng, config) for _ in range(40)) if s is not None]
    worst = min(float(np.linalg.norm(r.rgb.reshape(-1, 3).astype(float) - [255, 0, 0], axis=1).min())
                for r in render(scenes))
    assert worst >= 100, worst
    assert "red" not in COLORS
