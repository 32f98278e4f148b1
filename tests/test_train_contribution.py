"""estimate_contribution: c_t from an IoU-vs-timestep curve, its JSON file, and the measured curve."""

from __future__ import annotations

import numpy as np
import pytest

from addp_agent.errors import UserError
from addp_agent.train.contribution import estimate_contribution, measure_iou_curve, write_contribution
from addp_agent.train.timesteps import timestep_probabilities

DDIM10 = [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]


def test_gain_per_timestep_with_floor():
    iou = [0.5, 0.6, 0.6, 0.58, 0.57, 0.57, 0.56, 0.56, 0.55, 0.55]
    c = estimate_contribution(DDIM10, iou)
    # first step: gain 0.5 over t 1000 → 901 (99 steps); second: 0.1 over 100 steps
    assert c[0] == 1.0
    assert c[1] == pytest.approx((0.1 / 100) / (0.5 / 99))
    np.testing.assert_allclose(c[2:], 0.1)  # flat or falling steps get the floor


def test_paper_figure_curve_concentrates_on_the_first_step():
    t = [980, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    iou = [53.0, 63.1, 63.7, 63.6, 63.4, 63.2, 63.0, 62.7, 62.4, 62.1, 61.7]
    c = estimate_contribution(t, iou)
    assert c[0] == 1.0 and np.all(c[1:] == pytest.approx(0.1))
    np.testing.assert_allclose(estimate_contribution(t, np.array(iou) / 100), c)  # scale-free
    np.testing.assert_allclose(estimate_contribution(t[::-1], iou[::-1]), c[::-1])  # order-free
    np.testing.assert_allclose(estimate_contribution(t, iou, floor=0.01)[1], (10.1 / 80) / (53 / 20))


def test_curve_without_gain_is_uniform():
    np.testing.assert_allclose(estimate_contribution(DDIM10, [0.0] * 10), 1.0)


@pytest.mark.parametrize("t, iou, floor", [
    ([1, 2], [0.1], 0.1), ([5], [0.1], 0.1), ([1, 1], [0.1, 0.2], 0.1), ([1, 2], [0.1, float("nan")], 0.1),
    ([1, 1000], [0.1, 0.2], 0.1), ([1, 2], [0.1, 0.2], 0.0),
])
def test_bad_curves_are_user_errors(t, iou, floor):
    with pytest.raises(UserError):
        estimate_contribution(t, iou, floor=floor)


def test_written_file_drives_the_estimated_sampler(tmp_path):
    c = estimate_contribution(DDIM10, [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6])
    path = write_contribution(tmp_path / "sub" / "c.json", DDIM10, c, source="test")
    probs = timestep_probabilities("estimated", estimated_path=path)
    assert probs[950] / probs[1] == pytest.approx(1 / 0.1**2)  # t above 901 keeps the edge value
    assert probs[901] == pytest.approx(probs.max()) and probs[1] == pytest.approx(probs.min())
    assert probs[:2].sum() > 0


def test_measure_iou_curve_records_every_step(tiny_pixel):
    from addp_agent.data.shapes import ShapesRef, ShapesRefConfig

    samples = list(ShapesRef("val", 3, config=ShapesRefConfig(size=32)))
    curve, counts = measure_iou_curve(tiny_pixel, samples, num_inference_steps=4, batch_size=2)
    assert curve.n == 3 and len(counts) == 3
    assert len(curve.timesteps) == len(curve.miou) == len(curve.oiou) == 4
    assert curve.timesteps == sorted(curve.timesteps, reverse=True)
    assert all(0 <= v <= 1 for v in curve.miou + curve.oiou)
    assert all(0 <= i <= u for i, u in counts)
    with pytest.raises(UserError):
        measure_iou_curve(tiny_pixel, [], num_inference_steps=2)
