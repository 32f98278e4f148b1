"""Generalized RIS metrics (gRefCOCO / ReLA): gIoU, cIoU, N-acc and T-acc, mergeable exactly.

Definitions of ReLA's ``refer_evaluation.py``, per sample with ``I = |P ∧ G|`` and ``U = |P ∨ G|``:

- a sample **with targets** (G non-empty): predicted "not found" → ``I := 0`` (U keeps the predicted mask),
  IoU 0; otherwise IoU = I / U (0 if U = 0). ΣI += I, ΣU += U.
- a sample **without a target**: predicted "not found" → IoU 1, adds nothing to ΣI / ΣU; predicted "found" →
  IoU 0 and ΣU += U (= |P|).
- ``gIoU`` = mean per-sample IoU; ``cIoU`` = ΣI / ΣU (``None`` while ΣU = 0);
  ``N-acc`` = no-target samples predicted "not found" / no-target samples; ``T-acc`` = samples with targets
  predicted "found" / samples with targets (``None`` without such samples).

All values are fractions in [0, 1] (ReLA's tables print gIoU and cIoU × 100). The state is integers plus the exact
rational sum of the IoUs, so shards merge bit for bit in any order.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any


class GeneralizedMetrics:
    """Accumulator of gIoU, cIoU, N-acc and T-acc; ``merge`` and ``from_state`` combine shards exactly."""

    FIELDS = ("n", "intersection", "union", "no_target", "no_target_hits", "targeted", "targeted_hits")

    def __init__(self) -> None:
        self.n = 0
        self.intersection = 0
        self.union = 0
        self.iou_sum = Fraction(0)
        self.no_target = 0  # samples without a target …
        self.no_target_hits = 0  # … answered "not found" (ReLA's TP)
        self.targeted = 0  # samples with one or more targets …
        self.targeted_hits = 0  # … answered "found" (ReLA's TN)

    def add(self, intersection: int, union: int, targets: int, found: bool) -> Fraction:
        """Record one sample from its counts, its number of ground-truth targets and whether the prediction found
        something; returns its IoU (exact)."""
        if not 0 <= intersection <= union or targets < 0:
            raise ValueError(f"need 0 <= intersection <= union and targets >= 0, got {intersection}, {union}, "
                             f"{targets}")
        self.n += 1
        if targets == 0:
            self.no_target += 1
            if not found:
                self.no_target_hits += 1
                iou = Fraction(1)
            else:
                self.union += union
                iou = Fraction(0)
        else:
            self.targeted += 1
            self.targeted_hits += bool(found)
            kept = intersection if found else 0
            iou = Fraction(kept, union) if union else Fraction(0)
            self.intersection += kept
            self.union += union
        self.iou_sum += iou
        return iou

    def merge(self, other: GeneralizedMetrics) -> GeneralizedMetrics:
        """Add another shard's counts (in place); returns self."""
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.iou_sum += other.iou_sum
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"gIoU", "cIoU", "N-acc", "T-acc", "n_no_target", "n_target"}`` (fractions; ``None`` when undefined)."""
        return {"gIoU": float(self.iou_sum / self.n) if self.n else None,
                "cIoU": self.intersection / self.union if self.union else None,
                "N-acc": self.no_target_hits / self.no_target if self.no_target else None,
                "T-acc": self.targeted_hits / self.targeted if self.targeted else None,
                "n_no_target": self.no_target, "n_target": self.targeted}

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (integers only)."""
        return {**{name: getattr(self, name) for name in self.FIELDS},
                "iou_sum": [self.iou_sum.numerator, self.iou_sum.denominator]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> GeneralizedMetrics:
        """Rebuild an accumulator from :meth:`state`."""
        metrics = cls()
        try:
            for name in cls.FIELDS:
                setattr(metrics, name, int(state[name]))
            numerator, denominator = state["iou_sum"]
            metrics.iou_sum = Fraction(int(numerator), int(denominator))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            raise ValueError(f"not a GeneralizedMetrics state: {error!r}") from None
        return metrics
