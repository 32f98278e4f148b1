"""Depth metrics against hand-computed numbers; least-squares alignment; exact merging."""

import math

import numpy as np
import pytest

from addp_agent.depth_metrics import DEPTH_KEYS, DepthMetrics, align_scale_shift, depth_errors, evaluate_depth


def test_metrics_by_hand():
    # pred (1, 2) against gt (1, 4): errors 0 and 2, ratios 1 and 2
    m = depth_errors(np.array([1.0, 2.0]), np.array([1.0, 4.0]), np.array([True, True]))
    assert m["abs_rel"] == pytest.approx((0 / 1 + 2 / 4) / 2)  # 0.25
    assert m["sq_rel"] == pytest.approx((0 / 1 + 4 / 4) / 2)  # 0.5
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 4) / 2))
    assert m["rmse_log"] == pytest.approx(math.sqrt((0 + math.log(0.5) ** 2) / 2))  # ln 2 / √2
    assert m["delta1"] == m["delta2"] == m["delta3"] == 0.5  # 2 ≥ 1.25³ = 1.953


def test_delta_thresholds_are_strict_and_symmetric():
    gt = np.ones(4)
    pred = np.array([1.2, 1 / 1.3, 1.5, 1.9])  # ratios 1.2, 1.3, 1.5, 1.9
    m = depth_errors(pred, gt, np.ones(4, bool))
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.25, 0.75, 1.0)


def test_invalid_pixels_are_ignored():
    m = depth_errors(np.array([1.0, 100.0]), np.array([1.0, 2.0]), np.array([True, False]))
    assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0


def test_least_squares_alignment_by_hand():
    # p = (0, 1, 2), d = (1, 3, 6): s = cov/var = 5/2, t = mean d − s·mean p = 10/3 − 5/2
    aligned, scale, shift = align_scale_shift(np.array([[0.0, 1.0, 2.0]]), np.array([[1.0, 3.0, 6.0]]),
                                              np.ones((1, 3), bool))
    assert scale == pytest.approx(2.5) and shift == pytest.approx(10 / 3 - 2.5)
    np.testing.assert_allclose(aligned, [[5 / 6, 10 / 3, 35 / 6]])


def test_alignment_uses_only_valid_pixels_and_applies_everywhere():
    pred = np.array([[1.0, 2.0, 3.0, 50.0]])
    gt = np.array([[4.0, 6.0, 8.0, 1.0]])  # gt = 2·p + 2 on the valid pixels; the last pixel is invalid
    valid = np.array([[True, True, True, False]])
    aligned, scale, shift = align_scale_shift(pred, gt, valid)
    assert (scale, shift) == pytest.approx((2.0, 2.0))
    assert aligned[0, 3] == pytest.approx(102.0)


def test_affine_copy_of_the_truth_scores_perfectly_and_relative_depth_in_01_too():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 10, (20, 30))
    valid = rng.random((20, 30)) > 0.2
    relative = (gt - gt.min()) / (gt.max() - gt.min())  # what the pipeline predicts: [0, 1], 0 = near
    m = evaluate_depth(relative, gt, valid, 1e-3, 10)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-9) and m["delta1"] == 1.0
    assert m["scale"] == pytest.approx(gt.max() - gt.min()) and m["shift"] == pytest.approx(gt.min())


def test_clipping_to_the_depth_range_after_alignment():
    pred = np.array([0.0, 1.0, 2.0, 3.0])
    gt = np.array([1.0, 2.0, 3.0, 4.0])
    unclipped = evaluate_depth(pred, gt, np.ones(4, bool), min_depth=1e-3, max_depth=10)
    clipped = evaluate_depth(pred, gt, np.ones(4, bool), min_depth=1e-3, max_depth=3.5)
    assert unclipped["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert clipped["abs_rel"] == pytest.approx(0.5 / 4 / 4)  # the last pixel clipped from 4 to 3.5


def test_alignment_fit_on_a_downsample():
    rng = np.random.default_rng(1)
    pred = rng.random((64, 64))
    gt = 3 * pred + 1
    _, scale, shift = align_scale_shift(pred, gt, np.ones((64, 64), bool), max_res=16)
    assert (scale, shift) == pytest.approx((3.0, 1.0))


def test_too_few_valid_pixels_is_an_error():
    with pytest.raises(ValueError, match="valid pixels"):
        evaluate_depth(np.ones((2, 2)), np.ones((2, 2)), np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="differ in size"):
        evaluate_depth(np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 3), bool))


def test_mean_over_images_and_exact_merge(tmp_path):
    rng = np.random.default_rng(2)
    pairs = [(rng.random((8, 8)), rng.uniform(1, 5, (8, 8))) for _ in range(7)]
    whole, first, second = DepthMetrics(), DepthMetrics(), DepthMetrics()
    per_image = [whole.update(p, g, np.ones((8, 8), bool)) for p, g in pairs]
    for k, (p, g) in enumerate(pairs):
        (first if k < 3 else second).update(p, g, np.ones((8, 8), bool))
    merged = second.merge(first).to_dict()
    assert merged == whole.to_dict()
    assert set(DEPTH_KEYS) <= set(merged) and merged["n"] == 7
    assert merged["abs_rel"] == pytest.approx(np.mean([m["abs_rel"] for m in per_image]))
    whole.save(tmp_path / "state.json")
    assert DepthMetrics.load(tmp_path / "state.json").to_dict() == whole.to_dict()
    assert DepthMetrics().to_dict()["abs_rel"] is None
