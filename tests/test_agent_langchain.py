"""LangChain adapter: StructuredTools driven by a small tool-calling chat model, sync and async."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import numpy as np
import pytest
import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from addp_agent.data.shapes import generate_sample
from addp_agent.masks import decode_rle
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools
from addp_agent.tools.langchain_tools import langchain_tools


class ToolCallingModel(BaseChatModel):
    """Calls segment, then refine on the mask_id it reads in the tool's text, then answers."""

    image: str

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-caller"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ToolCallingModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        seen = [m for m in messages if isinstance(m, ToolMessage)]
        if not seen:
            call = {"name": "segment", "args": {"image": self.image, "expression": "the second shape from the top",
                                                "steps": 3}, "id": "call_1", "type": "tool_call"}
        elif len(seen) == 1:
            mask_id = re.search(r"m-[0-9a-f]{12}-r\d+", seen[0].content).group(0)
            call = {"name": "refine", "args": {"mask_id": mask_id, "correction": "the blue shape"}, "id": "call_2",
                    "type": "tool_call"}
        else:
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="done"))])
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="", tool_calls=[call]))])


@pytest.fixture(scope="module")
def lc_tools(tiny_pixel_dir):
    from addp_agent.engine import ADDPPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield langchain_tools(SegmentationTools(pipeline=ADDPPipeline.from_pretrained(tiny_pixel_dir)))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image_b64():
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(generate_sample("val", 5).image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _check_transcript(messages):
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_messages] == ["segment", "refine"] and messages[-1].content == "done"
    first, second = (m.artifact for m in tool_messages)
    assert second["result"]["corrections"] == ["the blue shape"] and second["result"]["rounds"] == 2
    assert np.array_equal(decode_rle(second["rle"]), second["mask"])
    assert second["overlay_png"].startswith(b"\x89PNG")
    assert "mask_id" in tool_messages[0].content and "rle" not in tool_messages[0].content  # short text only


def test_agent_loop_sync(lc_tools, image_b64):
    by_name = {t.name: t for t in lc_tools}
    model = ToolCallingModel(image=image_b64).bind_tools(lc_tools)
    messages: list[Any] = [HumanMessage("segment the second shape from the top")]
    while True:
        reply = model.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        messages += [by_name[call["name"]].invoke(call) for call in reply.tool_calls]
    _check_transcript(messages)


def test_agent_loop_async(lc_tools, image_b64):
    by_name = {t.name: t for t in lc_tools}
    model = ToolCallingModel(image=image_b64)

    async def loop():
        messages: list[Any] = [HumanMessage("segment the second shape from the top")]
        while True:
            reply = await model.ainvoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                return messages
            messages += await asyncio.gather(*(by_name[c["name"]].ainvoke(c) for c in reply.tool_calls))

    _check_transcript(asyncio.run(loop()))


@pytest.mark.parametrize(("name", "args", "code"), [
    ("segment", {"image": "x.png"}, "invalid_arguments"),
    ("refine", {"mask_id": "nope", "correction": "x"}, "invalid_arguments"),
    ("get_mask", {"mask_id": "m-000000000000-r1"}, "not_found"),
    ("segment", {"image": "x.png", "expression": "the cup"}, "refused"),
])
def test_bad_calls_give_structured_error_messages(lc_tools, name, args, code):
    tool = {t.name: t for t in lc_tools}[name]
    message = tool.invoke({"type": "tool_call", "id": "c", "name": name, "args": args})
    assert isinstance(message, ToolMessage) and json.loads(message.content)["error"] == code


def test_tool_schemas_are_the_pydantic_models(lc_tools):
    for tool in lc_tools:
        assert tool.args_schema is TOOL_SPECS[tool.name].args and tool.response_format == "content_and_artifact"
        assert convert_to_openai_tool(tool)["function"]["name"] == tool.name
