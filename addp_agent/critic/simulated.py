"""A critic for automated evaluation: it sees the ground truth and names the annotated instance that was hit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from addp_agent.critic.base import Critique, CritiqueRequest
from addp_agent.data.sample import Instance, RISSample
from addp_agent.errors import UserError
from addp_agent.masks import as_bool_mask, mask_iou


class SimulatedCritic:
    """Accepts when IoU with the ground truth ≥ ``accept_iou``.

    Otherwise, when false positives dominate, it names the annotated instance covering most of the false-positive
    area (its description or category; instances already used as corrections are skipped). When the error is
    mostly a miss, it says that a negative prompt cannot fix it (no correction).
    """

    name = "simulated"

    def __init__(self, gt_mask: np.ndarray, instances: Sequence[Instance] = (), accept_iou: float = 0.9) -> None:
        self.gt = as_bool_mask(gt_mask)
        self.instances = list(instances)
        self.accept_iou = accept_iou

    @classmethod
    def from_sample(cls, sample: RISSample, accept_iou: float = 0.9) -> SimulatedCritic:
        return cls(sample.mask, sample.others, accept_iou)

    def critique(self, request: CritiqueRequest) -> Critique:
        mask = as_bool_mask(request.mask)
        if mask.shape != self.gt.shape:
            raise UserError(f"mask {mask.shape} and ground truth {self.gt.shape} differ in size")
        iou = mask_iou(mask, self.gt)
        if iou >= self.accept_iou:
            return Critique(verdict="accept", problem="", correction=None, confidence=1.0)
        false_pos = mask & ~self.gt
        missed = self.gt & ~mask
        fp, fn = int(false_pos.sum()), int(missed.sum())
        if fp == 0 or fn > fp:
            share = fn / max(1, int(self.gt.sum()))
            return Critique(verdict="revise", confidence=1.0, correction=None,
                            problem=f"the mask misses {share:.0%} of the target (IoU {iou:.2f}); a negative prompt "
                                    "cannot fix a miss")
        tried = {c.lower() for c in request.corrections}
        overlaps = [(int((false_pos & inst.mask).sum()), inst.name) for inst in self.instances
                    if inst.name.lower() not in tried]
        hit, name = max(overlaps, default=(0, ""))
        if hit == 0:
            return Critique(verdict="revise", confidence=1.0, correction=None,
                            problem=f"{fp} false-positive pixels lie on unannotated background or on objects "
                                    f"already named (IoU {iou:.2f})")
        return Critique(verdict="revise", confidence=1.0, correction=name,
                        problem=f"the mask covers {name} ({hit / fp:.0%} of the false-positive area; IoU {iou:.2f})")
