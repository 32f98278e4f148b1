"""Pure statistics of a relative depth map (0 = near) and of the depth inside masks, and the closer-of-two rule.

The rule of :func:`compare_regions`, for masks A and B on one depth map d with decoder confidences c_A, c_B:

    δ = P(d_a < d_b) − P(d_a > d_b)          over all pairs (a ∈ A, b ∈ B) of pixels (Cliff's delta)
    closer = A if δ > 0, B if δ < 0, neither if δ = 0
    separation = |δ|                          0: the two depth distributions overlap completely; 1: disjoint
    confidence = separation · min(c_A, c_B)   the weaker mask bounds the answer

δ comes from the Mann–Whitney U statistic (``scipy.stats.mannwhitneyu``), U_A = #(d_a > d_b) + ½·#(d_a = d_b), as
δ = 1 − 2·U_A / (|A|·|B|): exact, in O(n log n) instead of |A|·|B| comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import mannwhitneyu

PERCENTILES = (5, 10, 25, 50, 75, 90, 95)


def map_stats(depth: np.ndarray) -> dict[str, float]:
    """min, max, mean, median and the percentiles p5 … p95 of a depth map (rounded to 1e-6)."""
    values = np.asarray(depth, dtype=np.float64).ravel()
    points = np.percentile(values, PERCENTILES)
    stats = {"min": values.min(), "max": values.max(), "mean": values.mean(), "median": points[3],
             **{f"p{q}": p for q, p in zip(PERCENTILES, points, strict=True) if q != 50}}
    return {k: round(float(v), 6) for k, v in stats.items()}


def range_fraction(value: float, low: float, high: float) -> float:
    """Where ``value`` lies in [low, high], 0 to 1 (0 when the range is empty)."""
    return 0.0 if high <= low else round(min(1.0, max(0.0, (value - low) / (high - low))), 6)


def region_stats(depth: np.ndarray, mask: np.ndarray) -> dict[str, float] | None:
    """median, p10, p90, mean and the median's :func:`range_fraction` of the depth inside ``mask``; None if empty."""
    inside = np.asarray(depth, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    if inside.size == 0:
        return None
    p10, median, p90 = np.percentile(inside, (10, 50, 90))
    return {"median": round(float(median), 6), "p10": round(float(p10), 6), "p90": round(float(p90), 6),
            "mean": round(float(inside.mean()), 6),
            "range_fraction": range_fraction(float(median), float(depth.min()), float(depth.max()))}


def nearer_delta(a: np.ndarray, b: np.ndarray) -> float:
    """Cliff's delta P(a < b) − P(a > b) over all pairs: +1 when every value of ``a`` is below (nearer than) every
    value of ``b``, −1 for the reverse, 0 for interchangeable samples. Both must be non-empty."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    if a.min() > b.max() or a.max() < b.min():  # disjoint: no ranking needed (and no ties to halve)
        return 1.0 if a.max() < b.min() else -1.0
    u_a = mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").statistic
    return float(1.0 - 2.0 * u_a / (a.size * b.size))


@dataclass(frozen=True)
class Comparison:
    closer: Literal["a", "b", "neither"]
    delta: float  # Cliff's delta, > 0: A nearer
    separation: float
    confidence: float


def compare_regions(depth: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, confidence_a: float,
                    confidence_b: float) -> Comparison:
    """Which of two non-empty masks is nearer on ``depth`` (0 = near), by the rule in the module docstring."""
    depth = np.asarray(depth)
    delta = nearer_delta(depth[np.asarray(mask_a, dtype=bool)], depth[np.asarray(mask_b, dtype=bool)])
    closer: Literal["a", "b", "neither"] = "a" if delta > 0 else "b" if delta < 0 else "neither"
    separation = round(abs(delta), 6)
    weakest = min(max(0.0, min(1.0, float(confidence_a))), max(0.0, min(1.0, float(confidence_b))))
    return Comparison(closer, round(delta, 6), separation, round(separation * weakest, 6))
