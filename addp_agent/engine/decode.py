"""Decode the red paint into a mask: the official ADDP rule plus a soft map, a confidence and whether the target
was found at all (generalized RIS).

"Found" needs paint: a non-empty mask, and, for a model calibrated on validation data (``calibration.json``, see
:mod:`addp_agent.models.calibration`), a paint statistic at or above the calibrated threshold (:class:`FoundRule`).
The paint statistics of a decoded mask (:func:`paint_statistics`):

- ``area_fraction``: painted pixels / all pixels;
- ``mean_redness``: mean soft score over the painted pixels (0.5 at the red-distance threshold, 1 on pure red;
  0 when nothing is painted).

A target that is not found has an empty mask; its soft map still shows the faint paint.

:class:`MaskDecoding` is the rule as one value: the size the painted image is resized to before thresholding (the
input image's own size by default; the paper's evaluation uses 512 × 512) and the RGB distance to pure red below which
a pixel is mask (50 in the paper). Scoring at a fixed size resizes the ground truth to it with NEAREST, as the
official ``evaluate.py`` does (:meth:`MaskDecoding.reference`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image

from addp_agent.errors import UserError
from addp_agent.limits import DEFAULT_THRESHOLD, MAX_RESOLUTION

PAINT_RGB = np.array([255.0, 0.0, 0.0], dtype=np.float32)
PaintStatistic = Literal["area_fraction", "mean_redness"]
PAINT_STATISTICS: tuple[str, ...] = ("area_fraction", "mean_redness")


@dataclass(frozen=True)
class FoundRule:
    """A calibrated model's rule: the target is found when ``statistic`` ≥ ``threshold`` (and something is painted)."""

    statistic: PaintStatistic
    threshold: float

    def __post_init__(self) -> None:
        if self.statistic not in PAINT_STATISTICS:
            raise ValueError(f"unknown paint statistic {self.statistic!r}; use one of {', '.join(PAINT_STATISTICS)}")

    def found(self, statistics: dict[str, float]) -> bool:
        return statistics[self.statistic] >= self.threshold


@dataclass
class DecodedMask:
    """A decoded mask at the requested size, its soft score map, a scalar confidence, and whether the target was
    found (``mask`` is empty when it was not)."""

    mask: np.ndarray  # bool (H, W)
    soft: np.ndarray  # float32 (H, W) in [0, 1]; > 0.5 exactly where the paint is (``mask`` when found)
    confidence: float
    found: bool = True
    paint: dict[str, float] = field(default_factory=dict)  # paint_statistics() of the paint before the found rule
    raw_confidence: float | None = None  # the decoder's own score when ``confidence`` went through a fitted map


def red_distance(painted: np.ndarray) -> np.ndarray:
    """Per-pixel RGB Euclidean distance to pure red for a uint8 or [0, 255] float (H, W, 3) image."""
    return np.linalg.norm(np.asarray(painted, dtype=np.float32) - PAINT_RGB, axis=-1)


def soft_score(distance: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Linear score ``1 − d / (2τ)`` clipped to [0, 1]: 1 on pure red, 0.5 at the threshold, 0 at 2τ."""
    return np.clip(1.0 - distance / (2.0 * threshold), 0.0, 1.0).astype(np.float32)


def mask_confidence(soft: np.ndarray) -> float:
    """Mean decisiveness |2s − 1| over the pixels that are painted at all (s > 0); 0 when nothing is painted.

    1.0 means every touched pixel is either clearly red or clearly not; values near 0 mean a faint,
    ambiguous paint.
    """
    touched = soft > 0
    if not touched.any():
        return 0.0
    return float(np.abs(2.0 * soft[touched] - 1.0).mean())


def paint_statistics(mask: np.ndarray, soft: np.ndarray) -> dict[str, float]:
    """``area_fraction`` and ``mean_redness`` of a decoded mask and its soft map (see the module docstring)."""
    painted = int(np.count_nonzero(mask))
    return {"area_fraction": painted / max(1, mask.size),
            "mean_redness": float(soft[mask].mean()) if painted else 0.0}


def decode_paint(painted: np.ndarray, size: tuple[int, int] | None = None,
                 threshold: float = DEFAULT_THRESHOLD, rule: FoundRule | None = None) -> DecodedMask:
    """Decode a painted RGB image (uint8, H×W×3) into a mask.

    ``size`` = (height, width) to decode at (the input image's original size, or an evaluation size):
    the painted image is resized with LANCZOS first, as the official evaluation does. ``rule``: a calibrated
    model's found rule (``None``: found = something is painted).
    """
    image = np.asarray(painted)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"painted image must be (H, W, 3), got {image.shape}")
    if size is not None and tuple(size) != image.shape[:2]:
        resized = Image.fromarray(image.astype(np.uint8)).resize((size[1], size[0]), Image.Resampling.LANCZOS)
        image = np.asarray(resized)
    distance = red_distance(image)
    soft = soft_score(distance, threshold)
    mask = distance < threshold
    statistics = paint_statistics(mask, soft)
    found = bool(mask.any()) and (rule is None or rule.found(statistics))
    return DecodedMask(mask=mask if found else np.zeros_like(mask), soft=soft, confidence=mask_confidence(soft),
                       found=found, paint=statistics)


@dataclass(frozen=True)
class MaskDecoding:
    """How paint becomes a mask: resize the painted image (LANCZOS) to ``size`` × ``size`` (``None``: to the input
    image's own size), then keep the pixels whose RGB distance to (255, 0, 0) is below ``threshold``.

    The paper's evaluation (official ``evaluate.py``): ``MaskDecoding(size=512, threshold=50)``.
    """

    size: int | None = None
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if self.size is not None and not 1 <= self.size <= MAX_RESOLUTION:
            raise UserError(f"decode size must be 1 … {MAX_RESOLUTION} pixels, got {self.size}")
        if not self.threshold > 0:
            raise UserError(f"decode threshold must be > 0, got {self.threshold}")

    def output_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of the decoded mask for an input image of ``input_size``."""
        return (self.size, self.size) if self.size is not None else (int(input_size[0]), int(input_size[1]))

    def decode(self, painted: np.ndarray, input_size: tuple[int, int], rule: FoundRule | None = None) -> DecodedMask:
        """The mask of a painted (h, w, 3) uint8 image whose input image was ``input_size`` (``rule``: a calibrated
        model's found rule)."""
        return decode_paint(painted, size=self.output_size(input_size), threshold=self.threshold, rule=rule)

    def reference(self, mask: np.ndarray) -> np.ndarray:
        """A ground-truth mask at the size this rule decodes at (NEAREST, as ``evaluate.py``); unchanged when the rule
        decodes at the input's size."""
        mask = np.asarray(mask, dtype=bool)
        if self.size is None or mask.shape == (self.size, self.size):
            return mask
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((self.size, self.size),
                                                                       Image.Resampling.NEAREST)
        return np.asarray(resized) > 127
