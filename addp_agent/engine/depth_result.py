"""The depth of one image and its exports: depth.npy (float32), depth.png (16-bit), depth_colored.png, JSON stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.pipelines.marigold.marigold_image_processing import MarigoldImageProcessor
from PIL import Image

from addp_agent.domain import DomainVerdict


@dataclass
class DepthEstimate:
    """Relative depth at the input's size: float32 (H, W) in [0, 1], 0 = near, 1 = far (affine-invariant)."""

    depth: np.ndarray
    uncertainty: np.ndarray | None = None  # (H, W), same units as ``depth``; ensembles only
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    domain: DomainVerdict = field(default_factory=DomainVerdict)  # was the image inside the model's domain

    @property
    def warning(self) -> str | None:
        """What an interface must tell the user (an image outside the model's domain), or ``None``."""
        return self.domain.warning("depth map")

    def stats(self) -> dict[str, float]:
        """min, max, median and mean of the depth map (and the mean uncertainty when there is one)."""
        values = {"min": float(self.depth.min()), "max": float(self.depth.max()),
                  "median": float(np.median(self.depth)), "mean": float(self.depth.mean())}
        if self.uncertainty is not None:
            values["mean_uncertainty"] = float(self.uncertainty.mean())
        return {k: round(v, 6) for k, v in values.items()}

    def png16(self) -> Image.Image:
        """16-bit grey image with value ⌊depth·65535⌋ (Marigold's 16-bit export)."""
        return Image.fromarray((np.clip(self.depth, 0.0, 1.0) * 65535).astype(np.uint16))

    def colored(self) -> Any:
        """PIL RGB image, Spectral colour map: near red, far blue (as Marigold's visualisation)."""
        return MarigoldImageProcessor.visualize_depth(self.depth)[0]

    def to_json(self) -> dict[str, Any]:
        return {**self.stats(), "height": int(self.depth.shape[0]), "width": int(self.depth.shape[1]),
                "convention": "relative depth in [0, 1], 0 = near, 1 = far (affine-invariant)", "seed": self.seed,
                "settings": dict(self.settings), "timings": {k: round(v, 4) for k, v in self.timings.items()},
                **self.domain.to_json(), "warning": self.warning}

    def save(self, folder: str | Path) -> list[Path]:
        """Write depth.npy, depth.png, depth_colored.png (and uncertainty.npy for ensembles) into ``folder``."""
        out = Path(folder)
        files = [out / "depth.npy", out / "depth.png", out / "depth_colored.png"]
        np.save(files[0], self.depth.astype(np.float32))
        self.png16().save(files[1])
        self.colored().save(files[2])
        if self.uncertainty is not None:
            files.append(out / "uncertainty.npy")
            np.save(files[-1], self.uncertainty.astype(np.float32))
        return files
