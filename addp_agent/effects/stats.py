"""Seed-to-seed spread and paired differences: pure functions over per-seed numbers.

``spread`` summarises one metric of one variant over its seeds: mean, sample SD (n − 1), min, max. ``paired``
summarises ``variant − baseline`` over the seeds both finished: the same numbers for the differences, plus the
95 % confidence interval of their mean (Student t, n − 1 degrees of freedom) and whether every seed moved the same
way. Runs of the same seed index share their initial weights and random stream, hence the pairing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel


class Spread(BaseModel):
    n: int
    mean: float
    sd: float | None  # sample SD (n − 1); None for one value
    min: float
    max: float


class Paired(Spread):
    seeds: list[int]  # the seed indices paired
    ci_low: float | None  # 95 % CI of the mean difference (None for one pair)
    ci_high: float | None
    same_sign: bool  # every difference on the same side of 0 (and none 0)


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Spread(n=n, mean=mean, sd=sd, min=min(values), max=max(values))


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t critical value (``level`` coverage) for ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def paired(variant: Mapping[int, float], baseline: Mapping[int, float]) -> Paired | None:
    """``variant[k] − baseline[k]`` over the seed indices k both have; None when they share none."""
    seeds = sorted(set(variant) & set(baseline))
    if not seeds:
        return None
    diffs = [variant[k] - baseline[k] for k in seeds]
    base = spread(diffs)
    low = high = None
    if base.sd is not None:
        half = t_quantile(base.n - 1) * base.sd / math.sqrt(base.n)
        low, high = base.mean - half, base.mean + half
    same = all(d > 0 for d in diffs) or all(d < 0 for d in diffs)
    return Paired(**base.model_dump(), seeds=seeds, ci_low=low, ci_high=high, same_sign=same)


def verdict(diff: Paired, higher_is_better: bool) -> str:
    """Plain words for one paired difference."""
    if diff.ci_low is None or diff.ci_high is None:
        return "one seed: no spread to judge it by"
    if diff.ci_low <= 0 <= diff.ci_high:
        return "not distinguishable from seed noise (95 % CI contains 0)"
    better = (diff.mean > 0) == higher_is_better
    return f"{'better' if better else 'worse'} than baseline beyond seed noise (95 % CI excludes 0)"
