"""LangChain tools: ``StructuredTool``s with ``response_format="content_and_artifact"``, sync and async.

The content is a short text for the model; the artifact carries what code needs: the result as a dict, the mask
array, its COCO RLE and the overlay PNG. Every failure (bad arguments, ``not_found``, ``refused``, ``bad_input`` …)
comes back as a ``ToolMessage`` with ``status="error"`` whose content is the JSON :class:`ToolError` (no artifact).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from addp_agent.extras import extra_imports
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools, ToolOutput, invalid_arguments

with extra_imports("agent"):
    from langchain_core.tools import StructuredTool, ToolException


def _content_and_artifact(output: ToolOutput) -> tuple[str, dict[str, Any]]:
    """The (content, artifact) pair of a result; a :class:`ToolError` is raised as a ``ToolException`` instead, so
    LangChain marks the message ``status="error"``."""
    if output.is_error:
        raise ToolException(output.json())
    return output.text(), {"result": output.data(), **(output.artifact or {})}


def _validation_error(error: ValidationError) -> str:
    return invalid_arguments(error).model_dump_json()


def langchain_tools(tools: SegmentationTools) -> list[StructuredTool]:
    """One ``StructuredTool`` per tool, sharing ``tools`` (its model and sessions)."""
    made = []
    for name, spec in TOOL_SPECS.items():
        def run(_name: str = name, **kwargs: Any) -> tuple[str, dict[str, Any]]:
            return _content_and_artifact(tools.call(_name, kwargs))

        async def arun(_name: str = name, **kwargs: Any) -> tuple[str, dict[str, Any]]:
            return _content_and_artifact(await asyncio.to_thread(tools.call, _name, kwargs))

        made.append(StructuredTool.from_function(
            func=run, coroutine=arun, name=name, description=spec.description, args_schema=spec.args,
            response_format="content_and_artifact", handle_validation_error=_validation_error,
            handle_tool_error=True))
    return made
