"""Does a confidence mean what it says? Reliability bins, expected calibration error, and a fitted map.

The decoder's confidence (:func:`addp_agent.engine.decode.mask_confidence`, the paint's decisiveness) is a score,
not a probability. :class:`ConfidenceMap` turns it into the probability that the mask is right (IoU ≥ 0.5 with the
ground truth; for a no-target expression: nothing found) by Platt scaling on the score's logit:
``p = σ(a·logit(c) + b)``, fitted by maximum likelihood on validation rounds. With ``a > 0`` the map is strictly
increasing, so rounds keep their order (the agent's best-round choice is unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EPS = 1e-4
N_BINS = 10


def _logit(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values, EPS, 1 - EPS)
    return np.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class ConfidenceMap:
    """``p = σ(slope·logit(c) + bias)``: a decoder confidence ``c`` → the probability that the mask is right."""

    slope: float
    bias: float

    def __call__(self, confidence: float) -> float:
        z = self.slope * float(_logit(np.asarray(confidence))) + self.bias
        return float(1.0 / (1.0 + np.exp(-z)))

    def apply(self, confidences: Sequence[float]) -> np.ndarray:
        z = self.slope * _logit(np.asarray(confidences, dtype=np.float64)) + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def fit_confidence_map(confidences: Sequence[float], correct: Sequence[bool], l2: float = 1e-3,
                       iterations: int = 100) -> ConfidenceMap:
    """Platt scaling by Newton's method on the (slightly L2-regularised) log-likelihood; the slope is kept ≥ 0.01
    so the map stays increasing. Needs at least one round."""
    x = _logit(np.asarray(confidences, dtype=np.float64))
    y = np.asarray(correct, dtype=np.float64)
    if x.size == 0:
        raise ValueError("fitting a confidence map needs at least one round")
    features = np.stack([x, np.ones_like(x)], axis=1)
    weights = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(features @ weights)))
        gradient = features.T @ (p - y) + l2 * weights
        hessian = (features * (p * (1 - p))[:, None]).T @ features + l2 * np.eye(2)
        update = np.linalg.solve(hessian, gradient)
        weights = weights - update
        if np.abs(update).max() < 1e-10:
            break
    return ConfidenceMap(slope=float(max(weights[0], 0.01)), bias=float(weights[1]))


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool],
                     n_bins: int = N_BINS) -> list[dict[str, float]]:
    """Equal-width bins over [0, 1]: each non-empty bin's count, mean confidence and accuracy."""
    c, y = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    index = np.minimum((c * n_bins).astype(int), n_bins - 1)
    return [{"low": b / n_bins, "high": (b + 1) / n_bins, "count": int((index == b).sum()),
             "confidence": float(c[index == b].mean()), "accuracy": float(y[index == b].mean())}
            for b in range(n_bins) if (index == b).any()]


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS) -> float:
    """ECE: the count-weighted mean of |accuracy − mean confidence| over equal-width bins."""
    bins = reliability_bins(confidences, correct, n_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / max(1, total))
