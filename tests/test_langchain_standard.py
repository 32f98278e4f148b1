"""LangChain's own standard suites (``langchain-tests``) for every tool, and ``ToolMessage.status`` on errors."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests
from PIL import Image

from addp_agent.data.shapes import generate_sample
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools
from addp_agent.tools.inputs import ImagePolicy
from addp_agent.tools.langchain_tools import langchain_tools

pytestmark = pytest.mark.usefixtures("one_thread")


def _png_b64() -> str:
    buffer = io.BytesIO()
    Image.fromarray(generate_sample("val", 5).image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def lc(pipe, depth_pipe, tmp_path_factory) -> dict[str, Any]:
    """Every tool over one tiny segmentation and one tiny depth model, and a live mask_id for the tools that need
    one."""
    folder = tmp_path_factory.mktemp("lc-allowed")
    tools = SegmentationTools(pipeline=pipe, policy=ImagePolicy.create([folder]), depth_pipeline=depth_pipe)
    image = _png_b64()
    first = tools.call("segment", {"image": image, "expression": "the red shape", "steps": 2})
    assert not first.is_error, first.text()
    mask_id = first.result.mask_id
    examples = {"segment": {"image": image, "expression": "the second shape from the top", "steps": 2},
                "refine": {"mask_id": mask_id, "correction": "the blue shape"},
                "get_mask": {"mask_id": mask_id, "format": "rle"},
                "trajectory": {"mask_id": mask_id},
                "estimate_depth": {"image": image, "depth_steps": 1},
                "depth_of": {"mask_id": mask_id, "depth_steps": 1},
                "compare_depth": {"mask_id_a": mask_id, "expression_b": "the blue shape", "image": image,
                                  "segment_steps": 1, "depth_steps": 1}}
    return {"tools": {t.name: t for t in langchain_tools(tools)}, "examples": examples, "mask_id": mask_id}


class _OneTool:
    """Binds a standard suite to one of our tools (``tool_name``), built once per module."""

    tool_name = ""
    _lc: dict[str, Any] = {}

    @pytest.fixture(autouse=True)
    def _bind(self, lc: dict[str, Any]) -> None:
        type(self)._lc = lc

    @property
    def tool_constructor(self) -> BaseTool:
        return self._lc["tools"][self.tool_name]

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return dict(self._lc["examples"][self.tool_name])


for _name in TOOL_SPECS:
    for _suite in (ToolsUnitTests, ToolsIntegrationTests):
        _title = "".join(part.title() for part in _name.split("_"))
        _class = f"Test{_title}{_suite.__name__}"
        globals()[_class] = type(_class, (_OneTool, _suite), {"tool_name": _name})


@pytest.mark.parametrize(("name", "args", "code"), [
    ("segment", {"image": "x.png"}, "invalid_arguments"),
    ("segment", {"image": "missing.png", "expression": "the cup"}, "bad_input"),
    ("segment", {"image": "/etc/passwd", "expression": "the cup"}, "refused"),
    ("segment", {"image": "https://example.com/a.png", "expression": "the cup"}, "refused"),
    ("segment", {"image": "VALID", "expression": "the cup", "critic": "vlm"}, "critic_unavailable"),
    ("get_mask", {"mask_id": "m-000000000000-r1"}, "not_found"),
    ("trajectory", {"mask_id": "m-000000000000-r9"}, "not_found"),
])
def test_tool_message_status_is_error_for_every_structured_error(lc, name, args, code):
    """not_found, refused, bad_input … are errors to LangChain too, not only validation errors (sync and async)."""
    tool = lc["tools"][name]
    if args.get("image") == "VALID":
        args = {**args, "image": lc["examples"]["segment"]["image"]}
    call = {"type": "tool_call", "id": "c1", "name": name, "args": args}
    for message in (tool.invoke(call), _run_async(tool.ainvoke(call))):
        assert isinstance(message, ToolMessage) and message.status == "error", message
        assert json.loads(message.content)["error"] == code


def test_tool_message_status_is_success_with_an_artifact(lc):
    message = lc["tools"]["get_mask"].invoke({"type": "tool_call", "id": "c2", "name": "get_mask",
                                               "args": {"mask_id": lc["mask_id"]}})
    assert message.status == "success" and message.artifact["result"]["mask_id"] == lc["mask_id"]


def _run_async(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)
