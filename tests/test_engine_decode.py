"""Paint → mask decoding: the official threshold rule, soft map, confidence, original size."""

import numpy as np
import pytest

from addp_agent.engine.decode import MaskDecoding, decode_paint, mask_confidence, red_distance, soft_score
from addp_agent.errors import UserError


def test_red_distance_and_threshold_rule():
    pixels = np.array([[[255, 0, 0], [215, 30, 0], [205, 30, 0], [0, 0, 0]]], dtype=np.uint8)
    assert red_distance(pixels)[0].tolist() == pytest.approx([0.0, 50.0, 58.309518, 255.0])
    decoded = decode_paint(pixels)
    assert decoded.mask[0].tolist() == [True, False, False, False]  # strictly < 50, as evaluate.py
    assert decoded.soft[0].tolist() == pytest.approx([1.0, 0.5, 1 - 58.309518 / 100, 0.0], abs=1e-5)
    assert decode_paint(pixels, threshold=60).mask[0].tolist() == [True, True, True, False]


def test_soft_is_above_half_exactly_on_the_mask():
    rng = np.random.default_rng(0)
    painted = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    painted[5:10, 5:10] = (250, 10, 5)
    decoded = decode_paint(painted)
    assert np.array_equal(decoded.soft > 0.5, decoded.mask)
    assert decoded.mask[5:10, 5:10].all()


def test_confidence_is_one_for_clean_paint_and_zero_for_nothing():
    assert mask_confidence(soft_score(np.full((4, 4), 255.0))) == 0.0
    clean = np.zeros((4, 4, 3), dtype=np.uint8)
    clean[:2] = (255, 0, 0)
    assert decode_paint(clean).confidence == pytest.approx(1.0)
    faint = np.full((4, 4, 3), (215, 30, 0), dtype=np.uint8)  # exactly at the threshold: undecided
    assert decode_paint(faint).confidence == pytest.approx(0.0, abs=1e-6)


def test_mask_is_returned_at_the_requested_original_size():
    painted = np.zeros((32, 32, 3), dtype=np.uint8)
    painted[:, :16] = (255, 0, 0)
    decoded = decode_paint(painted, size=(48, 80))
    assert decoded.mask.shape == (48, 80)
    assert decoded.mask[:, :36].all() and not decoded.mask[:, 44:].any()
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        decode_paint(np.zeros((4, 4)))


def test_paper_rule_decodes_at_512_style_fixed_size_with_strict_threshold():
    """MaskDecoding(size, 50): LANCZOS to size² whatever the input's size, then RGB distance to red < 50.

    Hand-computed: (230, 30, 20) is √(25² + 30² + 20²) ≈ 43.87 from red (mask), (215, 30, 0) exactly 50 (not mask);
    LANCZOS keeps uniform regions exact more than 3 source pixels away from the edge (columns 0–10 and 21–31 at 2×).
    """
    painted = np.zeros((16, 16, 3), dtype=np.uint8)
    painted[:, :8] = (230, 30, 20)
    painted[:, 8:] = (215, 30, 0)
    decoded = MaskDecoding(size=32, threshold=50).decode(painted, input_size=(48, 80))
    assert decoded.mask.shape == (32, 32)
    assert decoded.mask[:, :11].all() and not decoded.mask[:, 21:].any()
    assert MaskDecoding(size=32, threshold=51).decode(painted, (48, 80)).mask[:, 21:].all()  # 50 < 51
    assert MaskDecoding().decode(painted, (48, 80)).mask.shape == (48, 80)  # default: the input's size


def test_reference_resizes_ground_truth_nearest_to_the_decode_size():
    gt = np.array([[1, 0], [0, 0]], dtype=bool)
    assert MaskDecoding(size=4).reference(gt).tolist() == [[True, True, False, False], [True, True, False, False],
                                                           [False] * 4, [False] * 4]
    assert MaskDecoding().reference(gt).tolist() == gt.tolist()  # decoding at the input's size: unchanged
    assert MaskDecoding(size=512).reference(np.ones((3, 5), dtype=bool)).shape == (512, 512)


@pytest.mark.parametrize("size, threshold", [(0, 50.0), (512, 0.0), (512, -1.0)])
def test_bad_decoding_is_a_user_error(size, threshold):
    with pytest.raises(UserError, match="decode"):
        MaskDecoding(size=size, threshold=threshold)


def test_paint_statistics_and_found_by_hand():
    from addp_agent.engine.decode import FoundRule

    painted = np.zeros((10, 10, 3), dtype=np.uint8)
    painted[0, :4] = (255, 0, 0)  # soft 1.0
    painted[1, :2] = (230, 0, 0)  # distance 25: soft 0.75
    decoded = decode_paint(painted)
    assert decoded.found and decoded.mask.sum() == 6
    assert decoded.paint == pytest.approx({"area_fraction": 0.06, "mean_redness": (4 * 1.0 + 2 * 0.75) / 6})
    kept = decode_paint(painted, rule=FoundRule("area_fraction", 0.06))
    assert kept.found and kept.mask.sum() == 6  # at the threshold counts as found
    dropped = decode_paint(painted, rule=FoundRule("mean_redness", 0.95))
    assert not dropped.found and not dropped.mask.any()  # not found: the mask is empty …
    assert np.array_equal(dropped.soft, decoded.soft) and dropped.paint == decoded.paint  # … the paint evidence stays
    nothing = decode_paint(np.zeros((4, 4, 3), dtype=np.uint8), rule=FoundRule("area_fraction", 0.0))
    assert not nothing.found and nothing.paint == {"area_fraction": 0.0, "mean_redness": 0.0}
    with pytest.raises(ValueError, match="unknown paint statistic"):
        FoundRule("redness", 0.5)  # type: ignore[arg-type]


def test_instances_are_8_connected_components_above_the_minimum_size():
    from addp_agent.masks import connected_instances, min_instance_area

    mask = np.zeros((40, 40), dtype=bool)
    mask[2:5, 2:5] = True  # 9 px
    mask[20:30, 30:32] = True  # 20 px
    mask[10, 10] = mask[11, 11] = mask[12, 12] = mask[13, 13] = True  # diagonal: one 8-connected 4-px component
    mask[0, 39] = True  # 1 px: below the minimum
    assert min_instance_area((40, 40)) == 4 and min_instance_area((1000, 1000)) == 1000
    instances = connected_instances(mask)
    assert [int(m.sum()) for m in instances] == [20, 9, 4]
    assert instances[2][10, 10] and instances[2][13, 13]
    assert [int(m.sum()) for m in connected_instances(mask, min_area=10)] == [20]
    assert [int(m.sum()) for m in connected_instances(mask, min_area=100)] == [20]  # found: at least the largest
    assert connected_instances(np.zeros((5, 5), dtype=bool)) == []


def test_a_result_carries_found_and_its_instances():
    from addp_agent.engine.outputs import SegmentationResult

    mask = np.zeros((16, 20), dtype=bool)
    mask[1:4, 1:5] = True
    mask[10:14, 12:20] = True
    settings = {"num_inference_steps": 1, "guidance_scale": 1.0, "image_guidance_scale": 1.0,
                "correction_scale": 1.0, "correction_mode": "additive"}
    result = SegmentationResult("the cubes", mask, np.zeros((8, 8, 3), np.uint8), mask.astype(np.float32), 1.0,
                                settings, paint={"area_fraction": 0.14375, "mean_redness": 1.0})
    exported = result.to_json()
    assert exported["found"] is True
    assert exported["instances"] == [{"bbox": [12, 10, 8, 4], "area": 32, "area_fraction": 0.1},
                                     {"bbox": [1, 1, 4, 3], "area": 12, "area_fraction": 0.0375}]
    assert exported["paint"] == {"area_fraction": 0.14375, "mean_redness": 1.0}
    missing = SegmentationResult("the cone", np.zeros((16, 20), bool), result.painted, result.soft, 0.0, settings,
                                 found=False)
    assert missing.to_json()["found"] is False and missing.instances == [] and missing.to_json()["area"] == 0
