"""The one sample type every RIS source (Shapes-Ref, Scenes-3D, REFER, CRIS, gRefCOCO, CLEVR-Ref+) yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Instance:
    """Another annotated object in the image (what a simulated critic may name)."""

    mask: np.ndarray  # bool (H, W)
    name: str  # category name, or the object's own unique description when the source has one
    instance_id: str = ""


@dataclass
class RISSample:
    """One (image, referring expression, target mask) triple plus what evaluation and critics need.

    ``image`` is RGB uint8 (H, W, 3); ``mask`` is bool (H, W) at the image's size. Generalized RIS (gRefCOCO):
    ``n_targets`` is 0 for a no-target expression (``mask`` all False) and > 1 for several targets (``mask`` is their
    union); ``target_masks`` holds one mask per target (filled with ``[mask]`` for a one-target sample when empty).
    ``caption`` describes the whole image, as a captioner would, when the source knows one.
    """

    sample_id: str
    image: np.ndarray
    expression: str
    mask: np.ndarray
    image_id: str = ""
    ref_id: str = ""
    others: list[Instance] = field(default_factory=list)
    distractors: list[int] = field(default_factory=list)  # indices into ``others``, most confusable first
    family: str = ""  # expression family (Shapes-Ref: attribute / position / relation / ordinal)
    program: list[dict[str, Any]] | None = None  # the expression's functional program, when known
    confusable: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    n_targets: int = 1
    target_masks: list[np.ndarray] = field(default_factory=list)
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.target_masks and self.n_targets == 1:
            self.target_masks = [self.mask]
