"""OpenAI function calling: tool definitions (Chat Completions and Responses, strict mode) and a dispatcher.

Tool results go back as JSON text; the overlay image cannot ride in a tool message, so
:func:`overlay_message` builds a follow-up user message with the image for vision models.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from addp_agent.strict_schema import strict_json_schema
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools, ToolOutput


def _parameters(name: str) -> dict[str, Any]:
    schema = strict_json_schema(TOOL_SPECS[name].args)
    schema.pop("description", None)  # the description lives on the function
    return schema


def chat_completions_tools() -> list[dict[str, Any]]:
    """``tools=`` for ``client.chat.completions.create`` (nested ``function`` objects, strict)."""
    return [{"type": "function", "function": {"name": name, "description": spec.description,
                                              "parameters": _parameters(name), "strict": True}}
            for name, spec in TOOL_SPECS.items()]


def responses_tools() -> list[dict[str, Any]]:
    """``tools=`` for ``client.responses.create`` (flat function definitions, strict)."""
    return [{"type": "function", "name": name, "description": spec.description, "parameters": _parameters(name),
             "strict": True} for name, spec in TOOL_SPECS.items()]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def run_tool_call(tools: SegmentationTools, call: Any) -> ToolOutput:
    """Run a Chat Completions ``tool_call`` or a Responses ``function_call`` item (SDK object or dict)."""
    function = _get(call, "function")
    name = _get(function, "name") if function is not None else _get(call, "name")
    arguments = _get(function, "arguments") if function is not None else _get(call, "arguments")
    return tools.call(str(name or ""), arguments if arguments is not None else "{}")


def chat_tool_message(tools: SegmentationTools, tool_call: Any) -> tuple[dict[str, Any], ToolOutput]:
    """The ``{"role": "tool", ...}`` message answering a Chat Completions tool call, and the raw output."""
    output = run_tool_call(tools, tool_call)
    return {"role": "tool", "tool_call_id": _get(tool_call, "id"), "content": output.json()}, output


def responses_output_item(tools: SegmentationTools, item: Any) -> tuple[dict[str, Any], ToolOutput]:
    """The ``function_call_output`` item answering a Responses ``function_call``, and the raw output."""
    output = run_tool_call(tools, item)
    return {"type": "function_call_output", "call_id": _get(item, "call_id"), "output": output.json()}, output


def overlay_message(output: ToolOutput) -> dict[str, Any] | None:
    """A user message showing the overlay (or depth map) to a vision model (Chat Completions format), if any."""
    if output.overlay_png is None:
        return None
    url = "data:image/png;base64," + base64.b64encode(output.overlay_png).decode("ascii")
    mask = json.loads(output.json()).get("mask_id", "")
    caption = output.caption or f"Overlay of {mask}: the predicted mask is red with a white outline."
    return {"role": "user", "content": [
        {"type": "text", "text": caption},
        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}]}
