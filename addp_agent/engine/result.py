"""The result of one segmentation round and its exports (PNG, COCO RLE, bbox, area, JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from addp_agent.engine.pipeline import ADDPPipelineOutput, TrajectoryPoint
from addp_agent.masks import area, bbox_xywh, encode_rle, mask_to_png_bytes, overlay


@dataclass
class SegmentationResult:
    """One (image, expression) answer: the mask at the input's size and everything needed to reproduce it."""

    expression: str
    mask: np.ndarray  # bool (H, W)
    painted: np.ndarray  # uint8 (h, w, 3) at the model's resolution
    soft: np.ndarray  # float32 (H, W) in [0, 1]
    confidence: float
    corrections: list[str] = field(default_factory=list)
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    trajectory: list[TrajectoryPoint] | None = None

    @property
    def bbox(self) -> list[int]:
        return bbox_xywh(self.mask)

    @property
    def area(self) -> int:
        return area(self.mask)

    @property
    def area_fraction(self) -> float:
        return self.area / max(1, self.mask.size)

    def rle(self) -> dict[str, Any]:
        return encode_rle(self.mask)

    def png_bytes(self) -> bytes:
        return mask_to_png_bytes(self.mask)

    def overlay(self, image: np.ndarray) -> np.ndarray:
        return overlay(image, self.mask)

    def to_json(self) -> dict[str, Any]:
        """Everything but the pixel arrays (the mask travels as RLE)."""
        return {
            "expression": self.expression, "mask_rle": self.rle(), "bbox": self.bbox, "area": self.area,
            "area_fraction": round(self.area_fraction, 6), "confidence": round(self.confidence, 4),
            "corrections": list(self.corrections), "seed": self.seed, "settings": dict(self.settings),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "trajectory": None if self.trajectory is None else [
                {"step": p.step, "timestep": p.timestep, "area": area(p.mask), "confidence": round(p.confidence, 4),
                 "mask_rle": encode_rle(p.mask)} for p in self.trajectory],
        }

    def save(self, folder: str | Path, image: np.ndarray, name: str = "") -> None:
        """Write mask.png (L, 0/255), overlay.png and painted.png into ``folder``."""
        out = Path(folder)
        (out / f"{name}mask.png").write_bytes(self.png_bytes())
        Image.fromarray(self.overlay(image)).save(out / f"{name}overlay.png")
        Image.fromarray(self.painted).save(out / f"{name}painted.png")


def results_from_output(output: ADDPPipelineOutput, prompts: list[str], corrections: list[list[str]],
                        seed: int | None, settings: dict[str, Any]) -> list[SegmentationResult]:
    """Split a batched pipeline output (``output_type='np'``) into one result per sample."""
    painted = (np.clip(np.asarray(output.images), 0, 1) * 255).round().astype(np.uint8)
    results = []
    for k, prompt in enumerate(prompts):
        results.append(SegmentationResult(
            expression=prompt, mask=output.masks[k], painted=painted[k], soft=output.soft_masks[k],
            confidence=output.confidences[k], corrections=list(corrections[k]), seed=seed, settings=dict(settings),
            timings=dict(output.timings),
            trajectory=output.trajectories[k] if output.trajectories is not None else None))
    return results
