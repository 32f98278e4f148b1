"""Reliability bins, ECE and the Platt-scaling confidence map, on hand-computed and simulated cases."""

from __future__ import annotations

import numpy as np
import pytest

from addp_agent.reliability import (
    ConfidenceMap,
    expected_calibration_error,
    fit_confidence_map,
    reliability_bins,
)


def test_ece_by_hand():
    confidences = [0.95, 0.95, 0.15, 0.15]
    correct = [True, False, False, False]
    # bin 9: mean 0.95, accuracy 0.5 → 0.45; bin 1: mean 0.15, accuracy 0 → 0.15; weighted: (2·0.45 + 2·0.15) / 4
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.3)
    bins = reliability_bins(confidences, correct)
    assert [(b["low"], b["count"], b["accuracy"]) for b in bins] == [(0.1, 2, 0.0), (0.9, 2, 0.5)]
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0  # 1.0 falls in the last bin


def test_the_fit_recovers_a_known_map_and_calibrates():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.02, 0.98, 4000)
    truth = ConfidenceMap(slope=2.5, bias=-0.7)
    correct = rng.random(4000) < truth.apply(raw)
    fitted = fit_confidence_map(raw, correct)
    assert fitted.slope == pytest.approx(2.5, abs=0.3) and fitted.bias == pytest.approx(-0.7, abs=0.2)
    assert expected_calibration_error(raw, correct) > 0.1
    assert expected_calibration_error(fitted.apply(raw), correct) < 0.03


def test_the_map_is_increasing_and_matches_its_scalar_form():
    mapping = ConfidenceMap(slope=4.0, bias=1.0)
    values = np.linspace(0, 1, 11)
    mapped = mapping.apply(values)
    assert np.all(np.diff(mapped) > 0)
    assert mapping(0.3) == pytest.approx(mapped[3])
    assert fit_confidence_map([0.9, 0.8], [True, True]).slope >= 0.01  # all right: still a valid, increasing map
    with pytest.raises(ValueError):
        fit_confidence_map([], [])
