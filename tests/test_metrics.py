"""RIS metrics against hand-computed values, empty-mask conventions and exact shard merging."""

from __future__ import annotations

import json

import numpy as np
import pytest

from addp_agent.errors import DataError
from addp_agent.metrics import RISMetrics, iou_counts


def _mask(cells: list[tuple[int, int]], shape=(4, 4)) -> np.ndarray:
    m = np.zeros(shape, bool)
    for r, c in cells:
        m[r, c] = True
    return m


def test_iou_counts_by_hand() -> None:
    pred = _mask([(0, 0), (0, 1), (1, 0)])
    gt = _mask([(0, 1), (1, 0), (1, 1), (2, 2)])
    assert iou_counts(pred, gt) == (2, 5)
    with pytest.raises(ValueError, match="differ in size"):
        iou_counts(pred, np.zeros((3, 3), bool))


def test_hand_computed_metrics() -> None:
    m = RISMetrics()
    assert m.add(3, 4) == 0.75
    assert m.add(1, 10) == 0.1
    assert m.add(9, 10) == 0.9
    assert m.add(0, 0) == 1.0  # empty prediction and empty ground truth
    assert m.update(np.zeros((4, 4), bool), _mask([(1, 1)])) == 0.0  # missed target
    d = m.to_dict()
    assert d["n"] == 5
    assert d["mIoU"] == pytest.approx((0.75 + 0.1 + 0.9 + 1.0 + 0.0) / 5)
    assert d["oIoU"] == pytest.approx(13 / 25)  # (3+1+9+0+0) / (4+10+10+0+1)
    assert d["P@0.5"] == 3 / 5 and d["P@0.7"] == 3 / 5 and d["P@0.8"] == 2 / 5
    assert d["P@0.9"] == 2 / 5  # 0.9 >= 0.9 counts (exact integer comparison)
    assert RISMetrics().to_dict() == {"n": 0, "mIoU": None, "oIoU": None, "P@0.5": None, "P@0.6": None,
                                      "P@0.7": None, "P@0.8": None, "P@0.9": None}
    empty = RISMetrics()
    empty.add(0, 0)
    assert empty.to_dict()["oIoU"] == 1.0
    with pytest.raises(ValueError):
        m.add(5, 4)


def test_threshold_edges_are_exact() -> None:
    m = RISMetrics()
    m.add(3, 5)  # 0.6 exactly
    m.add(7, 10)  # 0.7 exactly
    m.add(699_999, 1_000_000)  # just under 0.7
    d = m.to_dict()
    assert d["P@0.6"] == 1.0 and d["P@0.7"] == 1 / 3 and d["P@0.8"] == 0.0


def test_merged_shards_equal_one_pass(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pairs = [(rng.random((16, 16)) < 0.3, rng.random((16, 16)) < 0.3) for _ in range(60)]
    whole = RISMetrics()
    for pred, gt in pairs:
        whole.update(pred, gt)
    shards = [RISMetrics() for _ in range(3)]
    for i, (pred, gt) in enumerate(pairs):
        shards[i % 3].update(pred, gt)
    for k, shard in enumerate(shards):  # through JSON files, merged in a different order
        shard.save(tmp_path / f"shard{k}.json")
    merged = RISMetrics()
    for k in (2, 0, 1):
        merged.merge(RISMetrics.load(tmp_path / f"shard{k}.json"))
    assert merged.to_dict() == whole.to_dict()  # bit-identical, not approximately equal
    assert merged.state() == whole.state()
    json.dumps(merged.state())
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="bad.json"):
        RISMetrics.load(tmp_path / "bad.json")
