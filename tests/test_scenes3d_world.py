"""Scenes-3D world: determinism, program re-evaluation, generalized mode, specs, bulk training arrays."""

from __future__ import annotations

import numpy as np
import pytest

from addp_agent.data.scenes3d import ScenesRef, depth_samples, generate_sample, parse_spec, preset_config
from addp_agent.data.scenes3d.bulk import generate_arrays
from addp_agent.data.scenes3d.programs import evaluate
from addp_agent.data.sources import load_source
from addp_agent.errors import UserError

SMALL = {"size": 64}


def same(a, b) -> bool:
    return (a.image.tobytes() == b.image.tobytes() and a.expression == b.expression and (a.mask == b.mask).all()
            and a.program == b.program and a.caption == b.caption)


def test_same_seed_same_bytes_whatever_the_batch():
    config = preset_config("hard", mode="generalized", **SMALL)
    together = list(ScenesRef("val", 12, seed=5, config=config, batch=12))
    apart = list(ScenesRef("val", 12, seed=5, config=config, batch=5))
    assert all(same(a, b) for a, b in zip(together, apart, strict=True))
    assert same(generate_sample("val", 7, seed=5, config=config), together[7])
    other_seed = generate_sample("val", 7, seed=6, config=config)
    assert other_seed.image.tobytes() != together[7].image.tobytes()
    test_split = generate_sample("test", 7, seed=5, config=config)
    assert test_split.image.tobytes() != together[7].image.tobytes()


@pytest.mark.parametrize("preset,mode,n", [("default", "classic", 250), ("hard", "generalized", 250)])
def test_every_program_selects_exactly_its_targets(preset, mode, n):
    for sample in ScenesRef("test", n, seed=1, config=preset_config(preset, mode=mode, **SMALL)):
        check_sample(sample)


@pytest.mark.slow
@pytest.mark.parametrize("preset,mode", [("default", "classic"), ("hard", "generalized")])
def test_every_program_selects_exactly_its_targets_10k(preset, mode):
    for sample in ScenesRef("test", 5000, seed=2, config=preset_config(preset, mode=mode, **SMALL)):
        check_sample(sample)


def check_sample(sample) -> None:
    objects, targets = sample.meta["objects"], sample.meta["targets"]
    assert evaluate(sample.program, objects) == targets
    assert sample.n_targets == len(targets) == len(sample.target_masks)
    union = np.zeros_like(sample.mask)
    for k, mask in zip(targets, sample.target_masks, strict=True):
        assert mask.any() and mask.sum() == objects[k]["visible_px"]
        assert not (union & mask).any()  # visible instance masks never overlap
        union |= mask
    assert (union == sample.mask).all()
    if sample.n_targets == 0:
        assert not sample.mask.any()
    names = {o.name for o in sample.others}
    assert len(names) == len(sample.others)  # every other object has its own name
    assert all(0 <= k < len(sample.others) for k in sample.distractors)
    assert sample.confusable == bool(sample.distractors)
    assert sample.caption.split()[0] in ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def test_generalized_mode_has_no_target_and_multi_target_expressions():
    config = preset_config("default", mode="generalized", **SMALL)
    samples = list(ScenesRef("train", 120, seed=0, config=config))
    counts = [s.n_targets for s in samples]
    assert counts.count(0) >= 4 and sum(c >= 2 for c in counts) >= 4 and counts.count(1) >= 80
    for sample in samples:
        if sample.n_targets == 0:
            assert not sample.mask.any() and evaluate(sample.program, sample.meta["objects"]) == []
            # not absurd: every attribute value it names exists in the scene
            named = [n["value_inputs"][0] for n in sample.program if n["type"].startswith("filter_")]
            present = {v for o in sample.meta["objects"] for v in (o["size"], o["color"], o["material"], o["shape"])}
            assert set(named) <= present
        if sample.n_targets >= 2:
            assert sample.expression.split()[0] in ("both", "all", "the")


def test_classic_mode_always_one_target():
    samples = list(ScenesRef("train", 40, seed=0, config=preset_config("default", **SMALL)))
    assert {s.n_targets for s in samples} == {1}


def test_every_object_keeps_its_visible_pixels():
    config = preset_config("hard", **SMALL)
    for sample in ScenesRef("train", 30, seed=4, config=config):
        for obj in sample.meta["objects"]:
            assert obj["visible_px"] >= config.min_pixels
            assert obj["visible_fraction"] >= config.min_visible_fraction


def test_depth_samples_share_the_scenes():
    ris = list(ScenesRef("val", 4, seed=2, config=preset_config("default", **SMALL)))
    depth = list(depth_samples("val", 4, seed=2, size=64))
    for r, d in zip(ris, depth, strict=True):
        assert r.image.tobytes() == d.image.tobytes()
        assert d.depth.dtype == np.float32 and d.valid.all() and (d.depth > 0).all()
        assert np.allclose(d.intrinsics, r.meta["intrinsics"])


def test_specs_parse_and_reject_bad_input():
    n, seed, config = parse_spec("30:4:96:hard:generalized:max_objects=8:sizes=small,large")
    assert (n, seed, config.size, config.mode, config.max_objects, config.sizes) == (
        30, 4, 96, "generalized", 8, ("small", "large"))
    n, seed, config = parse_spec("10")
    assert (n, seed, config.size, config.mode) == (10, 0, 128, "classic")
    assert parse_spec("5:0:64:default:classic:family_weights=attribute=1,ordinal=3")[2].family_weights == {
        "attribute": 1.0, "ordinal": 3.0}
    source = load_source("scenes-gen:3:1:64:hard", "val")
    assert len(source) == 3 and source[0].image.shape == (64, 64, 3)
    bad = ["", "x", "0", "3:-1", "3:0:63", "3:0:1024", "3:0:128:medium", "3:0:128:default:fuzzy",
           "3:0:128:default:classic:max_objects=11", "3:0:128:default:classic:colour=red",
           "3:0:128:default:classic:min_objects=7:max_objects=5", "3:0:128:default:classic:colors=red,gray",
           "3:0:128:a:b:c", "3:0:128:default:classic:family_weights=attribute=nan",
           "3:0:128:default:classic:family_weights=attribute=inf", "3:0:128:default:classic:min_gap=inf",
           "3:0:128:default:classic:distance=inf,inf"]
    for rest in bad:
        with pytest.raises(UserError):
            load_source(f"scenes-gen:{rest}", "val")


def test_bulk_arrays_match_the_samples_and_ignore_worker_count():
    config = preset_config("default", mode="generalized", **SMALL)
    serial = generate_arrays("train", 6, 3, config, workers=1)
    parallel = generate_arrays("train", 6, 3, config, workers=2)
    assert all((a == b).all() for a, b in zip(serial[:2], parallel[:2], strict=True)) and serial[2] == parallel[2]
    samples = list(ScenesRef("train", 6, seed=3, config=config))
    assert all((serial[0][i] == s.image).all() and (serial[1][i] == s.mask).all() and serial[2][i] == s.expression
               for i, s in enumerate(samples))
    small = generate_arrays("train", 2, 3, config, size=32, workers=1)
    assert small[0].shape == (2, 32, 32, 3) and small[1].shape == (2, 32, 32)


def test_training_reads_a_scenes_spec(tiny_train_config):
    from addp_agent.train.loop import train

    config = tiny_train_config(data="scenes-gen:8:0:64:default:generalized", steps=2, val_every=2, val_n=2)
    model_dir = train(config, progress=False)
    assert (model_dir / "model_index.json").is_file()
