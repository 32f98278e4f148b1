"""gIoU, cIoU, N-acc and T-acc (ReLA's definitions) against hand-computed values, and exact shard merging."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from addp_agent.generalized_metrics import GeneralizedMetrics

# (I, U, ground-truth targets, found) and the IoU ReLA gives each
SAMPLES = [
    ((0, 0, 0, False), Fraction(1)),  # no target, answered "not found": IoU 1, nothing added to ΣI / ΣU
    ((0, 10, 0, True), Fraction(0)),  # no target but 10 px painted: IoU 0, ΣU += 10
    ((30, 40, 1, True), Fraction(3, 4)),
    ((0, 20, 1, False), Fraction(0)),  # a target missed with an empty mask: ΣU += 20
    ((5, 25, 1, False), Fraction(0)),  # "not found" with paint left on the target: I := 0, U kept: ΣU += 25
    ((50, 60, 2, True), Fraction(5, 6)),  # two targets, both painted
]


def test_hand_computed_values() -> None:
    metrics = GeneralizedMetrics()
    assert [metrics.add(*sample) for sample, _ in SAMPLES] == [iou for _, iou in SAMPLES]
    result = metrics.to_dict()
    assert result["gIoU"] == pytest.approx((1 + 0.75 + 5 / 6) / 6)
    assert result["cIoU"] == pytest.approx((30 + 50) / (10 + 40 + 20 + 25 + 60))  # 80 / 155
    assert result["N-acc"] == 1 / 2 and result["T-acc"] == 2 / 4
    assert (result["n_no_target"], result["n_target"]) == (2, 4)


def test_undefined_values_are_none() -> None:
    empty = GeneralizedMetrics().to_dict()
    assert empty["gIoU"] is None and empty["cIoU"] is None and empty["N-acc"] is None and empty["T-acc"] is None
    only_correct_no_target = GeneralizedMetrics()
    only_correct_no_target.add(0, 0, 0, False)
    result = only_correct_no_target.to_dict()
    assert result["gIoU"] == 1.0 and result["cIoU"] is None and result["N-acc"] == 1.0 and result["T-acc"] is None
    targeted_only = GeneralizedMetrics()
    targeted_only.add(0, 0, 1, True)  # a target whose ground truth and prediction are both empty: ReLA gives 0
    assert targeted_only.to_dict()["gIoU"] == 0.0


def test_shards_merge_exactly_in_any_order_and_through_json() -> None:
    whole = GeneralizedMetrics()
    for sample, _ in SAMPLES:
        whole.add(*sample)
    first, second = GeneralizedMetrics(), GeneralizedMetrics()
    for k, (sample, _) in enumerate(SAMPLES):
        (first if k % 2 else second).add(*sample)
    restored = GeneralizedMetrics.from_state(json.loads(json.dumps(second.state())))
    merged = restored.merge(first)
    assert merged.state() == whole.state() and merged.to_dict() == whole.to_dict()


def test_bad_counts_and_states_are_refused() -> None:
    metrics = GeneralizedMetrics()
    for bad in [(5, 4, 1, True), (-1, 4, 1, True), (1, 4, -1, True)]:
        with pytest.raises(ValueError, match="intersection <= union"):
            metrics.add(*bad)
    assert metrics.n == 0
    with pytest.raises(ValueError, match="not a GeneralizedMetrics state"):
        GeneralizedMetrics.from_state({"n": 1})
