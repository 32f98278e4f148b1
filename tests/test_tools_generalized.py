"""Generalized RIS through the tools: "not found" said plainly, several targets as instances, the correction form."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.shapes import generate_sample
from addp_agent.errors import UserError
from addp_agent.masks import decode_rle
from addp_agent.models.calibration import Calibration, FoundCalibration
from addp_agent.models.registry import DEFAULT_MODEL_DIR, load_pipeline
from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy

SHAPES_MODEL = DEFAULT_MODEL_DIR.parent / "shapes_ref_small"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    images = tmp_path_factory.mktemp("images")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(images / "noise.png")
    Image.fromarray(generate_sample("val", 95).image).save(images / "shapes95.png")
    return images


def strict_copy(red_dir, target):
    """The reddened tiny model with a found rule no painting reaches."""
    shutil.copytree(red_dir, target)
    Calibration(found=FoundCalibration(statistic="area_fraction", threshold=2.0, n_acc=1.0, t_acc=0.0, data="d",
                                       split="val", steps=1, n=2, n_no_target=1, n_target=1, uncalibrated_n_acc=0.0,
                                       uncalibrated_t_acc=1.0)).save(target)
    return target


def test_not_found_is_said_plainly_and_the_mask_is_empty(red_dir, folder, tmp_path):
    pipe = load_pipeline(str(strict_copy(red_dir, tmp_path / "strict")), device="cpu", progress=False)
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]))
    out = tools.call("segment", {"image": "noise.png", "expression": "the purple cone", "steps": 1})
    assert not out.is_error, out.text()
    result = out.result
    assert result.found is False and result.instance_count == 0 and result.instances == []
    assert result.area_percent == 0.0 and result.bbox == [0, 0, 0, 0] and result.history[0].found is False
    assert "'the purple cone' was not found in the 40x48 image" in out.text() and "mask is empty" in out.text()
    mask = tools.call("get_mask", {"mask_id": result.mask_id}).result
    assert not decode_rle(mask.rle).any()
    plain = SegmentationTools(pipeline=load_pipeline(str(red_dir), device="cpu", progress=False),
                              policy=ImagePolicy.create([folder]))
    painted = plain.call("segment", {"image": "noise.png", "expression": "the purple cone", "steps": 1})
    assert painted.result.found and painted.result.instance_count >= 1 and "found: covers" in painted.text()


def test_several_regions_are_listed_as_instances(folder):
    """The bundled Shapes-Ref model paints two separate regions for this scene and expression (fixed seed)."""
    pipe = load_pipeline(str(SHAPES_MODEL), device="cpu", progress=False)
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]))
    expression = generate_sample("val", 95).expression
    out = tools.call("segment", {"image": "shapes95.png", "expression": expression, "seed": 0})
    result = out.result
    assert result.found and result.instance_count == 2 == len(result.instances)
    first, second = result.instances
    assert first.area_percent >= second.area_percent > 0
    assert 0.9 * result.area_percent <= first.area_percent + second.area_percent <= result.area_percent  # + specks
    assert "in 2 separate regions" in out.text() and str(first.bbox) in out.text()


def test_the_server_chooses_the_correction_form(red_pipe, folder):
    paper = SegmentationTools(pipeline=red_pipe, policy=ImagePolicy.create([folder]), correction_mode="paper")
    out = paper.call("segment", {"image": "noise.png", "expression": "the cube", "steps": 2,
                                 "corrections": ["the sphere"]})
    session, _ = paper.store.lookup(out.result.mask_id)
    assert session.settings["correction_mode"] == "paper" and session.rounds[0].result.settings[
        "correction_mode"] == "paper"
    with pytest.raises(UserError, match="correction_mode must be one of additive, replace, paper"):
        SegmentationTools(pipeline=red_pipe, correction_mode="sideways")  # type: ignore[arg-type]
