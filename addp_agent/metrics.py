"""RIS metrics: per-sample IoU, mIoU, oIoU (sum I / sum U) and precision@{0.5..0.9}, mergeable exactly.

Conventions (see docs/shapes-ref.md):

- ``I = |pred & gt|``, ``U = |pred | gt|``, ``IoU = I / U``; when ``U == 0`` (empty prediction and empty
  ground truth) the sample's IoU is 1.0 (LISA's convention); an empty prediction for a non-empty target
  (or the reverse) has IoU 0.0.
- ``mIoU`` = mean per-sample IoU; ``oIoU`` = ``sum I / sum U`` (1.0 if every union is empty);
  ``P@t`` = share of samples with ``IoU >= t``, compared exactly in integers (``I * 10 >= t10 * U``).
- All values are fractions in [0, 1] (multiply by 100 for the usual tables); ``None`` when ``n == 0``.

State is integers plus the exact rational sum of per-sample float IoUs, so merging shards in any order
gives bit-identical results to one pass over all samples.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.errors import DataError
from addp_agent.masks import as_bool_mask

THRESHOLDS = (5, 6, 7, 8, 9)  # tenths: P@0.5 ... P@0.9


def iou_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int]:
    """``(intersection, union)`` pixel counts of two same-sized masks."""
    p, g = as_bool_mask(pred), as_bool_mask(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in size")
    return int(np.count_nonzero(p & g)), int(np.count_nonzero(p | g))


def iou_from_counts(intersection: int, union: int) -> float:
    """Per-sample IoU with the empty-union convention (1.0)."""
    return 1.0 if union == 0 else intersection / union


class RISMetrics:
    """Accumulator of RIS metrics; ``merge`` and ``from_state`` make shards combine exactly."""

    def __init__(self) -> None:
        self.n = 0
        self.intersection = 0
        self.union = 0
        self.iou_sum = Fraction(0)  # exact sum of the per-sample float IoUs
        self.hits = dict.fromkeys(THRESHOLDS, 0)

    def add(self, intersection: int, union: int) -> float:
        """Record one sample from its counts; returns its IoU."""
        if not 0 <= intersection <= union:
            raise ValueError(f"need 0 <= intersection <= union, got {intersection}, {union}")
        iou = iou_from_counts(intersection, union)
        self.n += 1
        self.intersection += intersection
        self.union += union
        self.iou_sum += Fraction(iou)
        for t in THRESHOLDS:
            if union == 0 or intersection * 10 >= t * union:
                self.hits[t] += 1
        return iou

    def update(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """Record one (prediction, ground truth) pair; returns its IoU."""
        return self.add(*iou_counts(pred, gt))

    def merge(self, other: RISMetrics) -> RISMetrics:
        """Add another shard's counts into this one (in place) and return self."""
        self.n += other.n
        self.intersection += other.intersection
        self.union += other.union
        self.iou_sum += other.iou_sum
        for t in THRESHOLDS:
            self.hits[t] += other.hits[t]
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"n", "mIoU", "oIoU", "P@0.5", ..., "P@0.9"}`` as fractions in [0, 1]."""
        out: dict[str, Any] = {"n": self.n}
        if self.n == 0:
            return out | {"mIoU": None, "oIoU": None} | {f"P@0.{t}": None for t in THRESHOLDS}
        out["mIoU"] = float(self.iou_sum / self.n)
        out["oIoU"] = iou_from_counts(self.intersection, self.union)
        out |= {f"P@0.{t}": self.hits[t] / self.n for t in THRESHOLDS}
        return out

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (integers only)."""
        return {"n": self.n, "intersection": self.intersection, "union": self.union,
                "iou_sum": [self.iou_sum.numerator, self.iou_sum.denominator],
                "hits": {str(t): self.hits[t] for t in THRESHOLDS}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RISMetrics:
        """Rebuild an accumulator from :meth:`state`."""
        metrics = cls()
        try:
            metrics.n, metrics.intersection, metrics.union = (int(state[k]) for k in ("n", "intersection",
                                                                                      "union"))
            numerator, denominator = state["iou_sum"]
            metrics.iou_sum = Fraction(int(numerator), int(denominator))
            metrics.hits = {t: int(state["hits"][str(t)]) for t in THRESHOLDS}
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            raise ValueError(f"not a RISMetrics state: {error!r}") from None
        return metrics

    def save(self, path: str | Path) -> None:
        """Write the state as JSON."""
        Path(path).write_text(json.dumps(self.state()))

    @classmethod
    def load(cls, path: str | Path) -> RISMetrics:
        """Read a state written by :meth:`save`."""
        try:
            return cls.from_state(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as error:
            raise DataError(f"{path}: cannot read metrics state: {error}") from None
