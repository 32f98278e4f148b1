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
