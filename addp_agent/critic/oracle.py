"""The oracle critic for automated evaluation: it reads the ground truth and names the annotated instance hit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from addp_agent.critic.base import Critique, CritiqueRequest
from addp_agent.data.sample import Instance, RISSample
from addp_agent.errors import UserError
from addp_agent.masks import as_bool_mask, mask_iou


class OracleCritic:
    """Reads the ground truth. Accepts when IoU with it ≥ ``accept_iou``.

    Otherwise it names the annotated instance (its description or category) that holds most of the false-positive
    area, skipping instances already used as corrections, when false positives outweigh misses *or* the mask painted
    that object (it covers at least ``object_share`` of it). So a mask on a smaller wrong object is named even though
    more target pixels are missed than wrong pixels painted. When the error is a miss with no wrongly painted object,
    it says a negative prompt cannot fix it (no correction).
    """

    name = "oracle"

    def __init__(self, gt_mask: np.ndarray, instances: Sequence[Instance] = (), accept_iou: float = 0.9,
                 object_share: float = 0.5) -> None:
        self.gt = as_bool_mask(gt_mask)
        self.instances = list(instances)
        self.accept_iou = accept_iou
        self.object_share = object_share

    @classmethod
    def from_sample(cls, sample: RISSample, accept_iou: float = 0.9) -> OracleCritic:
        return cls(sample.mask, sample.others, accept_iou)

    def critique(self, request: CritiqueRequest) -> Critique:
        mask = as_bool_mask(request.mask)
        if mask.shape != self.gt.shape:
            raise UserError(f"mask {mask.shape} and ground truth {self.gt.shape} differ in size")
        iou = mask_iou(mask, self.gt)
        if iou >= self.accept_iou:
            return Critique(verdict="accept", problem="", correction=None, confidence=1.0)
        false_pos = mask & ~self.gt
        fp, fn = int(false_pos.sum()), int((self.gt & ~mask).sum())
        tried = {c.lower() for c in request.corrections}
        overlaps = [(int((false_pos & inst.mask).sum()), int(inst.mask.sum()), inst.name) for inst in self.instances
                    if inst.name.lower() not in tried]
        hit, size, name = max(overlaps, default=(0, 0, ""))
        painted = hit > 0 and (fp >= fn or hit >= self.object_share * size)
        if painted:
            return Critique(verdict="revise", confidence=1.0, correction=name,
                            problem=f"the mask covers {name} ({hit / fp:.0%} of the false-positive area, "
                                    f"{hit / max(1, size):.0%} of that object; IoU {iou:.2f})")
        if fp == 0 or fn > fp:
            share = fn / max(1, int(self.gt.sum()))
            return Critique(verdict="revise", confidence=1.0, correction=None,
                            problem=f"the mask misses {share:.0%} of the target (IoU {iou:.2f}); a negative prompt "
                                    "cannot fix a miss")
        return Critique(verdict="revise", confidence=1.0, correction=None,
                        problem=f"{fp} false-positive pixels lie on unannotated background or on objects "
                                f"already named (IoU {iou:.2f})")


SimulatedCritic = OracleCritic  # the oracle's old name, kept for existing code
