"""Shapes-Ref generator: determinism, split streams, exact uniqueness, families, colours, masks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from addp_agent.data.shapes import FAMILIES, PALETTE, ShapesRef, ShapesRefConfig, generate_sample
from addp_agent.data.shapes_programs import description_program, evaluate, render
from addp_agent.data.shapes_scene import RED_LIKE_DISTANCE, red_distance


def _same(a, b) -> bool:
    return (a.sample_id == b.sample_id and a.expression == b.expression and a.program == b.program
            and np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
            and [o.name for o in a.others] == [o.name for o in b.others])


def test_deterministic_and_split_streams_disjoint() -> None:
    a, b = generate_sample("train", 17, seed=0), generate_sample("train", 17, seed=0)
    assert _same(a, b) and a.sample_id == "shapes-train-000017"
    splits = ("train", "val", "test")
    images = {generate_sample(split, i, 0).image.tobytes() for split in splits for i in range(20)}
    assert len(images) == 60  # no scene is shared between splits or indices
    other_seed = generate_sample("val", 3, seed=1).image
    assert not np.array_equal(generate_sample("val", 3, seed=0).image, other_seed)


def _check(sample, side: int) -> None:
    objects = sample.meta["objects"]
    target = sample.meta["target"]
    assert evaluate(sample.program, objects, side) == [target]
    assert render(sample.program) == sample.expression
    assert sample.expression.startswith("the ") and sample.expression == sample.expression.lower()
    assert sample.image.dtype == np.uint8 and sample.image.shape == (side, side, 3)
    assert sample.mask.dtype == bool and sample.mask.any()
    for other in sample.others:  # masks are disjoint from the target's and each has a unique name
        assert other.mask.any() and not (other.mask & sample.mask).any()
    names = [o.name for o in sample.others] + [sample.meta["target_description"]]
    assert len(set(names)) == len(names)
    keep = [j for j in range(len(objects)) if j != target]
    for j, name in zip([*keep, target], names, strict=True):  # each name selects exactly its object
        program = description_program(j, objects, side)
        assert evaluate(program, objects, side) == [j] and render(program) == name
    assert sample.confusable == bool(sample.distractors)
    assert all(0 <= k < len(sample.others) for k in sample.distractors)


def _uniqueness_and_families(n: int) -> Counter:
    families: Counter = Counter()
    for sample in ShapesRef("test", n, seed=0):
        _check(sample, 64)
        families[sample.family] += 1
    return families


def test_every_expression_has_one_referent_500() -> None:
    families = _uniqueness_and_families(500)
    assert set(families) == set(FAMILIES)
    assert all(abs(count / 500 - 0.25) < 0.06 for count in families.values()), families


@pytest.mark.slow
def test_every_expression_has_one_referent_10000() -> None:
    families = _uniqueness_and_families(10_000)
    assert all(abs(count / 10_000 - 0.25) < 0.015 for count in families.values()), families


def test_other_descriptions_select_their_object() -> None:
    for i in range(40):
        sample = generate_sample("val", i, 0)
        objects = sample.meta["objects"]
        keep = [j for j in range(len(objects)) if j != sample.meta["target"]]
        for j, other in zip(keep, sample.others, strict=True):
            program = description_program(j, objects, 64)
            assert evaluate(program, objects, 64) == [j] and render(program) == other.name
            assert np.array_equal(other.mask, _object_mask(objects[j], 64))  # no overlap: full shape


def _object_mask(obj: dict, side: int) -> np.ndarray:
    from addp_agent.data.shapes_scene import stamp

    x, y, d, _ = obj["bbox"]
    mask = np.zeros((side, side), bool)
    mask[y : y + d, x : x + d] = stamp(obj["shape"], d)
    return mask


def test_colours_far_from_red_and_image_has_no_red_like_pixels() -> None:
    cfg = ShapesRefConfig(background="noise")
    assert len(cfg.colors) >= 6 and all(red_distance(PALETTE[c]) >= RED_LIKE_DISTANCE for c in cfg.colors)
    for i in range(20):
        image = generate_sample("train", i, 0, cfg).image.astype(np.int32)
        distance = np.sqrt(((image - np.array([255, 0, 0])) ** 2).sum(-1))
        assert distance.min() >= RED_LIKE_DISTANCE
    for red_like in ("red", "pink"):
        with pytest.raises(ValidationError, match="red-like"):
            ShapesRefConfig(colors=("green", red_like, "blue"))
    assert "red" in ShapesRefConfig(colors=("green", "red"), allow_red_like=True).colors


def test_overlap_masks_are_visible_parts_and_sizes_scale() -> None:
    cfg = ShapesRefConfig(size=128, overlap=True, background="texture")
    overlapped = 0
    for i in range(30):
        sample = generate_sample("train", i, 0, cfg)
        _check(sample, 128)
        objects = sample.meta["objects"]
        full = _object_mask(objects[sample.meta["target"]], 128)
        assert not (sample.mask & ~full).any() and sample.mask.sum() >= 0.6 * full.sum()
        overlapped += int(sample.mask.sum() < full.sum())
        sizes = {o["size"]: o["bbox"][2] for o in objects}
        assert 16 <= sizes.get("small", 16) <= 24 and 32 <= sizes.get("large", 32) <= 44
    assert overlapped > 0


def test_config_validation_and_sequence_api() -> None:
    with pytest.raises(ValidationError):
        ShapesRefConfig(min_objects=5, max_objects=3)
    with pytest.raises(ValidationError):
        ShapesRefConfig(family_weights={"jokes": 1.0})
    only_ordinal = ShapesRefConfig(family_weights={"ordinal": 1.0})
    assert {generate_sample("val", i, 0, only_ordinal).family for i in range(10)} == {"ordinal"}
    ds = ShapesRef("val", 5, seed=2, cache=True)
    assert len(ds) == 5 and ds[-1].sample_id == "shapes-val-000004" and ds[4] is ds[4]
    assert [s.sample_id for s in ds[1:3]] == ["shapes-val-000001", "shapes-val-000002"]
    with pytest.raises(IndexError):
        ds[5]
