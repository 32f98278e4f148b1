"""One set of limits: the tools (hence OpenAI, LangChain and MCP), the command line and the engine accept and refuse
the same values (addp_agent/limits.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from addp_agent.cli.segment import SegmentOptions
from addp_agent.errors import UserError
from addp_agent.limits import MAX_CORRECTION_CHARS, MAX_CORRECTIONS, MAX_SEED, check_sampler_settings
from addp_agent.tools.functions import SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.schemas import RefineArgs, SegmentArgs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("images")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path / "s.png")
    return path


@pytest.fixture()
def tools(pipe, folder):
    return SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]))


BASE = {"image": "s.png", "expression": "the circle"}


@pytest.mark.parametrize(("name", "arguments"), [
    ("steps-as-text-5", {"steps": "5"}),
    ("steps-true", {"steps": True}),
    ("steps-5.0", {"steps": 5.0}),
    ("steps-101", {"steps": 101}),
    ("seed-minus-5", {"seed": -5}),
    ("seed-as-text", {"seed": "1"}),
    ("seed-2-to-the-31", {"seed": MAX_SEED + 1}),
    ("max-rounds-true", {"max_rounds": True}),
    ("correction-of-201-characters", {"corrections": ["a" * 201]}),
    ("nine-corrections", {"corrections": [f"thing {k}" for k in range(9)]}),
    ("empty-correction", {"corrections": [""]}),
    ("expression-of-301-characters", {"expression": "a" * 301}),
])
def test_segment_argument_is_invalid(name, arguments, tools):
    out = tools.call("segment", {**BASE, **arguments})
    assert out.result.error == "invalid_arguments", name
    as_json = tools.call("segment", json.dumps({**BASE, **arguments}))  # the same over JSON (OpenAI, MCP)
    assert as_json.result.error == "invalid_arguments", name


def test_refine_beyond_the_corrections_limit_is_bad_input(tools):
    mask_id = tools.call("segment", {**BASE, "steps": 1, "corrections": [f"c{k}" for k in range(MAX_CORRECTIONS)]})
    assert not mask_id.is_error
    out = tools.call("refine", {"mask_id": mask_id.result.mask_id, "correction": "one more"})
    assert out.result.error == "bad_input" and "corrections" in out.result.message


def test_correction_of_201_characters_is_refused_in_refine_as_in_segment(tools):
    refine = tools.call("refine", {"mask_id": "m-0123456789ab-r1", "correction": "a" * (MAX_CORRECTION_CHARS + 1)})
    assert refine.result.error == "invalid_arguments"


def test_tools_and_command_line_share_the_bounds():
    """The same annotated types: equal schemas for what both take (the tools cap steps lower, for cost)."""
    tool = SegmentArgs.model_json_schema()["properties"]
    cli = SegmentOptions.model_json_schema()["properties"]
    bounds = {key: cli["seed"][key] for key in ("type", "minimum", "maximum")}
    assert tool["seed"]["anyOf"][0] == bounds == {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
    assert tool["corrections"]["anyOf"][0] == cli["correction"]["anyOf"][0]
    assert tool["steps"]["anyOf"][0]["minimum"] == cli["steps"]["anyOf"][0]["minimum"] == 1
    assert RefineArgs.model_json_schema()["properties"]["correction"]["maxLength"] == MAX_CORRECTION_CHARS


@pytest.mark.parametrize(("name", "settings"), [
    ("guidance-nan", {"guidance_scale": math.nan}),
    ("image-guidance-inf", {"image_guidance_scale": math.inf}),
    ("correction-scale-minus-1", {"correction_scale": -1.0}),
    ("steps-0", {"num_inference_steps": 0}),  # not the model's default
    ("steps-1001", {"num_inference_steps": 1001}),
    ("mode-sideways", {"correction_mode": "sideways"}),
])
def test_engine_refuses_what_the_command_line_refuses(name, settings, pipe):
    with pytest.raises(UserError):
        check_sampler_settings({**pipe.resolve_settings(), **settings})
    with pytest.raises(UserError):
        pipe.segment(np.zeros((16, 16, 3), np.uint8), "x", **settings)


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 500.0, math.nan])
def test_engine_refuses_a_threshold_outside_the_colour_cube(threshold, pipe):
    with pytest.raises(UserError, match="threshold"):
        pipe.segment(np.zeros((16, 16, 3), np.uint8), "x", num_inference_steps=1, threshold=threshold)
