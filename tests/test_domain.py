"""The domain check: in-domain synthetic images pass, natural images (package photos, procedural textures, crops and
resizes) are flagged, at the issue's rates, for a check fitted here and for the one shipped with the bundled model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from addp_agent.data.natural import TEXTURES, natural_images, package_photos
from addp_agent.data.sources import load_source
from addp_agent.domain import FEATURES, DomainCheck, DomainVerdict, fit_domain, image_features, rates, with_resized
from addp_agent.errors import ModelLoadError
from addp_agent.models.calibration import Calibration
from addp_agent.models.registry import DEFAULT_MODEL_DIR


def images(spec: str, split: str) -> list[np.ndarray]:
    return [s.image for s in load_source(spec, split)]


@pytest.fixture(scope="module")
def natural() -> list[np.ndarray]:
    return list(natural_images(120, seed=11))


@pytest.fixture(scope="module")
def shapes_check() -> DomainCheck:
    return fit_domain("synthetic-shapes", 64, with_resized(images("shapes-gen:1000:0:64", "train"), 64),
                      with_resized(images("shapes-gen:300:0:64", "val"), 64, 1), "train", "val")


def test_the_natural_set_mixes_package_photos_and_textures(natural):
    assert len(package_photos()) >= 3  # grace_hopper.jpg, the present, the MRI slice, the shaded relief maps
    sides = {image.shape[0] for image in natural}
    assert min(sides) >= 48 and max(sides) <= 512 and len(sides) > 50
    assert all(image.dtype == np.uint8 and image.shape[2] == 3 for image in natural)
    again = list(natural_images(4, seed=11))
    assert all(np.array_equal(a, b) for a, b in zip(again, natural[:4], strict=True))
    assert set(TEXTURES) == {"clouds", "marble", "wood", "noisy_gradient"}


def test_a_fitted_check_meets_the_rates_on_an_unseen_seed(shapes_check, natural):
    unseen = images("shapes-gen:200:1:64", "test") + images("shapes-gen:40:1:128", "test")  # also rendered at 2×
    measured = rates(shapes_check, unseen, natural)
    assert measured["false_alarm_rate"] <= 0.01
    assert measured["detection_rate"] >= 0.95


def test_the_bundled_model_ships_its_domain_and_meets_the_rates(natural):
    check = Calibration.load(DEFAULT_MODEL_DIR).domain
    assert check is not None and check.name == "synthetic-shapes" and check.resolution == 64
    unseen = images("shapes-gen:200:3:64", "test") + images("shapes-gen:40:3:128", "test")
    measured = rates(check, unseen, natural)
    assert measured["false_alarm_rate"] <= 0.01 and measured["detection_rate"] >= 0.95
    assert check.measured["false_alarm_rate"] <= 0.01 and check.measured["detection_rate"] >= 0.95


def test_verdicts_scores_and_warnings(shapes_check):
    from addp_agent.data.natural import package_photos

    hopper = package_photos()[0]
    verdict = shapes_check.check(hopper)
    assert verdict.in_domain is False and verdict.score > 1
    assert "synthetic-shapes" in verdict.warning() and "--model" in verdict.warning()
    inside = shapes_check.check(images("shapes-gen:1:5:64", "test")[0])
    assert inside.in_domain and inside.score <= 1 and inside.warning() is None
    assert DomainVerdict().to_json() == {"domain": "open", "in_domain": None, "domain_score": None}
    assert DomainVerdict().warning() is None


def test_features_read_what_they_say():
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[:32] = (255, 0, 0)
    palette = np.zeros(16**3, bool)
    palette[0] = True  # black only
    values = dict(zip(FEATURES, image_features(flat, palette), strict=True))
    assert values["palette_coverage"] == pytest.approx(0.5) and values["top_colours"] == 1.0
    assert values["colour_count"] == 1.0 and values["noise"] == 0.0  # log2(2 colours)
    assert values["saturation_mean"] == pytest.approx(0.5)
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    noisy_values = dict(zip(FEATURES, image_features(noisy, palette), strict=True))
    assert noisy_values["noise"] > 50 and noisy_values["flat_fraction"] < 0.01


def test_the_check_survives_a_json_round_trip_and_bad_sections_are_refused(shapes_check, tmp_path):
    Calibration(domain=shapes_check).save(tmp_path)
    loaded = Calibration.load(tmp_path).domain
    hopper = package_photos()[0]
    assert loaded.check(hopper).score == pytest.approx(shapes_check.check(hopper).score, rel=1e-3)
    document = json.loads((tmp_path / "calibration.json").read_text())
    for broken in ({"threshold": None}, {"features": ["noise"]}, {"scale": [0.0] * len(FEATURES)},
                   {"references": [[0.0]]}, {"palette": [4096]}):
        (tmp_path / "calibration.json").write_text(json.dumps({**document, "domain": {**document["domain"],
                                                                                     **broken}}))
        with pytest.raises(ModelLoadError, match="unreadable calibration"):
            Calibration.load(tmp_path)


@pytest.mark.slow
def test_a_scenes3d_check_meets_the_rates(natural):
    check = fit_domain("synthetic-scenes3d", 64, with_resized(images("scenes-gen:300:0:64", "train"), 64),
                       with_resized(images("scenes-gen:100:0:64", "val"), 64, 1), "train", "val")
    unseen = images("scenes-gen:150:1:64:default:generalized", "test")
    measured = rates(check, unseen, natural)
    assert measured["false_alarm_rate"] <= 0.01 and measured["detection_rate"] >= 0.95
