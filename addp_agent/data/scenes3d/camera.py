"""Pinhole camera (OpenCV convention: x right, y down, z forward) and its per-pixel rays.

Rays are returned un-normalised with camera-frame z component 1, so a hit at ray parameter ``t`` lies at metric
z-depth ``t`` (distance along the optical axis, not along the ray).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Camera:
    """``rotation`` maps camera to world (columns: right, down, forward); ``position`` is the centre in the world."""

    position: np.ndarray  # (3,) float64
    rotation: np.ndarray  # (3, 3) float64
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def intrinsics(self) -> np.ndarray:
        """3×3 matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def extrinsics(self) -> np.ndarray:
        """4×4 world-to-camera matrix [R | t] (OpenCV convention)."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.rotation.T
        matrix[:3, 3] = -self.rotation.T @ self.position
        return matrix

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) in camera coordinates."""
        return (np.asarray(points, dtype=np.float64) - self.position) @ self.rotation

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) to (u, v, z): pixel coordinates (pixel centres at +0.5) and z-depth."""
        cam = self.to_camera(points)
        z = cam[:, 2]
        return np.stack([self.fx * cam[:, 0] / z + self.cx, self.fy * cam[:, 1] / z + self.cy, z], axis=1)

    def ground_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera right and forward projected onto the ground plane, normalised (CLEVR's left/behind axes, negated)."""
        right = self.rotation[:, 0].copy()
        forward = self.rotation[:, 2].copy()
        right[2] = forward[2] = 0.0
        return right / np.linalg.norm(right), forward / np.linalg.norm(forward)


def look_at(position, target, fov_deg: float, width: int, height: int) -> Camera:
    """A camera at ``position`` looking at ``target`` with no roll (world z up); ``fov_deg`` spans the width."""
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    focal = (width / 2) / math.tan(math.radians(fov_deg) / 2)
    return Camera(position=position, rotation=np.stack([right, down, forward], axis=1), fx=focal, fy=focal,
                  cx=width / 2, cy=height / 2, width=width, height=height)


def orbit(azimuth_deg: float, elevation_deg: float, distance: float, target, fov_deg: float, size: int) -> Camera:
    """A camera on a sphere around ``target`` (azimuth about z, elevation above the ground)."""
    azimuth, elevation = math.radians(azimuth_deg), math.radians(elevation_deg)
    offset = distance * np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                                  math.sin(elevation)])
    return look_at(np.asarray(target, dtype=np.float64) + offset, target, fov_deg, size, size)


def pixel_rays(cameras: list[Camera], device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Origins (B, 3) and direction components x, y, z (each (B, H·W), row-major pixels, camera-z 1), float32.

    Only element-wise arithmetic, so a scene's rays are bit-identical whatever else is in the batch.
    """
    width, height = cameras[0].width, cameras[0].height
    params = torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in cameras], dtype=torch.float64, device=device)
    rot = torch.tensor(np.stack([c.rotation.reshape(-1) for c in cameras]), dtype=torch.float64,
                       device=device).float()
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=device),
                          torch.arange(width, dtype=torch.float64, device=device), indexing="ij")
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    if bool((params == params[:1]).all()):
        params = params[:1]  # one pixel grid serves the whole batch
    a = ((u + 0.5 - params[:, 2:3]) / params[:, 0:1]).float()  # camera-frame x / z
    b = ((v + 0.5 - params[:, 3:4]) / params[:, 1:2]).float()  # camera-frame y / z
    dirs = tuple(rot[:, 3 * i : 3 * i + 1] * a + rot[:, 3 * i + 1 : 3 * i + 2] * b + rot[:, 3 * i + 2 : 3 * i + 3]
                 for i in range(3))
    origins = torch.tensor(np.stack([c.position for c in cameras]), dtype=torch.float64, device=device)
    return origins.float(), dirs  # type: ignore[return-value]
