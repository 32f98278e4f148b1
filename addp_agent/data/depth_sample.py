"""The one sample type every depth source (Scenes-3D, NYUv2, KITTI, exported depth folders) yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class DepthSample:
    """One RGB image with metric ground-truth depth.

    ``image`` is RGB uint8 (H, W, 3); ``depth`` is float32 (H, W) metric z-depth (distance along the camera's
    optical axis, not ray length); ``valid`` is bool (H, W): the pixels evaluation and training may use (inside the
    source's valid range and crop). ``intrinsics`` is the 3×3 pinhole matrix K when the source knows it.
    """

    sample_id: str
    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    intrinsics: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3), got {self.image.dtype} {self.image.shape}")
        if self.depth.shape != self.image.shape[:2] or self.valid.shape != self.image.shape[:2]:
            raise ValueError(f"depth {self.depth.shape} and valid {self.valid.shape} must match the image's "
                             f"{self.image.shape[:2]}")
