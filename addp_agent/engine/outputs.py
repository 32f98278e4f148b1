"""What the pipeline returns: the batched output (the diffusers convention) and one sample's result with its exports.

:class:`ADDPPipelineOutput` carries everything the call resolved (cleaned prompts, each sample's corrections, the
settings with every default filled in), so a caller never recomputes them; :meth:`ADDPPipelineOutput.results`
splits it into one :class:`SegmentationResult` per sample (PNG, COCO RLE, bbox, area, JSON). A result says whether
the target was found (generalized RIS: a no-target expression is answered with ``found=False`` and an empty mask) and
splits its mask into instances (connected components, several targets). It also says whether the image looked
inside the model's domain (:class:`addp_agent.domain.DomainVerdict`; a warning, the result is still returned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.utils import BaseOutput
from PIL import Image

from addp_agent.domain import DomainVerdict
from addp_agent.engine.state import DenoiseSettings, DenoiseState
from addp_agent.masks import area, bbox_xywh, connected_instances, encode_rle, mask_to_png_bytes, overlay


@dataclass
class TrajectoryPoint:
    """The decoded x̂₀ prediction after one denoising step."""

    step: int  # 0-based index of the step that produced it
    timestep: int
    mask: np.ndarray  # bool, at the input image's size
    confidence: float


@dataclass
class MaskInstance:
    """One connected component of a result's mask (one target of several)."""

    mask: np.ndarray  # bool (H, W), at the input's size

    @cached_property
    def bbox(self) -> list[int]:
        return bbox_xywh(self.mask)

    @cached_property
    def area(self) -> int:
        return area(self.mask)

    def to_json(self) -> dict[str, Any]:
        return {"bbox": self.bbox, "area": self.area, "area_fraction": round(self.area / max(1, self.mask.size), 6)}


@dataclass
class SegmentationResult:
    """One (image, expression) answer: the mask at the input's size and everything needed to reproduce it."""

    expression: str
    mask: np.ndarray  # bool (H, W)
    painted: np.ndarray  # uint8 (h, w, 3) at the size the model painted at
    soft: np.ndarray  # float32 (H, W) in [0, 1]
    confidence: float
    settings: DenoiseSettings  # what the round ran with, every default filled in
    corrections: list[str] = field(default_factory=list)
    seed: int | None = None
    timings: dict[str, float] = field(default_factory=dict)  # this sample's share of the call's time
    trajectory: list[TrajectoryPoint] | None = None
    found: bool = True  # False: nothing (or, for a calibrated model, too little) was painted; ``mask`` is empty
    paint: dict[str, float] = field(default_factory=dict)  # the paint statistics the found rule read (decode.py)
    raw_confidence: float | None = None  # the decoder's score, when ``confidence`` is the model's calibrated map of it
    domain: DomainVerdict = field(default_factory=DomainVerdict)  # was the image inside the model's domain

    @property
    def warning(self) -> str | None:
        """What an interface must tell the user about this result (an out-of-domain image), or ``None``."""
        return self.domain.warning()

    @cached_property
    def instances(self) -> list[MaskInstance]:
        """The mask's connected components above the minimum instance size (``masks.min_instance_area``), at the
        input's size, largest first; empty when not found."""
        return [MaskInstance(m) for m in connected_instances(self.mask)] if self.found else []

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

    def mask_json(self) -> dict[str, Any]:
        """The mask and what it says: found, COCO RLE, bbox, area, area fraction, confidence (calibrated when the
        model has a map; the decoder's score beside it), instances, paint statistics, domain check and warning."""
        return {"found": self.found, "mask_rle": self.rle(), "bbox": self.bbox, "area": self.area,
                "area_fraction": round(self.area_fraction, 6), "confidence": round(self.confidence, 4),
                "raw_confidence": None if self.raw_confidence is None else round(self.raw_confidence, 4),
                "instances": [instance.to_json() for instance in self.instances],
                "paint": {k: round(v, 6) for k, v in self.paint.items()}, **self.domain.to_json(),
                "warning": self.warning}

    def to_json(self) -> dict[str, Any]:
        """Everything but the pixel arrays (the mask travels as RLE)."""
        return {
            "expression": self.expression, **self.mask_json(), "corrections": list(self.corrections),
            "seed": self.seed, "settings": dict(self.settings),
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


@dataclass
class ADDPPipelineOutput(BaseOutput):
    """Painted images and ``nsfw_content_detected`` (diffusers' ``StableDiffusionPipelineOutput`` fields), decoded
    masks, optional trajectories and a resumable state, plus what the call ran with: the cleaned prompts, each
    sample's cleaned corrections and the resolved settings."""

    images: Any
    masks: list[np.ndarray]
    soft_masks: list[np.ndarray]
    confidences: list[float]
    trajectories: list[list[TrajectoryPoint]] | None
    state: DenoiseState | None
    timings: dict[str, float]
    prompts: list[str]
    corrections: list[list[str]]
    settings: DenoiseSettings
    nsfw_content_detected: list[bool] | None = None  # only when a safety checker is loaded
    found: list[bool] = field(default_factory=list)  # per sample: was the target found (its mask is empty if not)
    paint: list[dict[str, float]] = field(default_factory=list)  # per sample: the paint statistics (decode.py)
    raw_confidences: list[float | None] = field(default_factory=list)  # per sample: the decoder's own score
    domain: list[DomainVerdict] = field(default_factory=list)  # per sample: the domain check of its image

    def results(self, seeds: int | Sequence[int | None] | None = None) -> list[SegmentationResult]:
        """One result per sample of an ``output_type='np'`` call; ``seeds`` (one, or one per sample) is recorded as
        what seeded each sample, and each result's timings are its share of the call's."""
        n = len(self.prompts)
        per_sample = list(seeds) if isinstance(seeds, Sequence) else [seeds] * n
        painted = (np.clip(np.asarray(self.images), 0, 1) * 255).round().astype(np.uint8)
        share = {name: seconds / n for name, seconds in self.timings.items()}
        return [SegmentationResult(
            expression=prompt, mask=self.masks[k], painted=painted[k], soft=self.soft_masks[k],
            confidence=self.confidences[k], corrections=list(self.corrections[k]), seed=per_sample[k],
            settings=DenoiseSettings(**self.settings), timings=dict(share),
            trajectory=self.trajectories[k] if self.trajectories is not None else None,
            found=self.found[k] if self.found else bool(self.masks[k].any()),
            paint=dict(self.paint[k]) if self.paint else {},
            raw_confidence=self.raw_confidences[k] if self.raw_confidences else None,
            domain=self.domain[k] if self.domain else DomainVerdict())
            for k, prompt in enumerate(self.prompts)]
