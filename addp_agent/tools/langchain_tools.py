"""LangChain tools: ``StructuredTool``s with ``response_format="content_and_artifact"``, sync and async.

The content is a short text for the model (a JSON error object on failure); the artifact carries what code needs:
the result as a dict, the mask array, its COCO RLE and the overlay PNG.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import ValidationError

from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools, ToolOutput, invalid_arguments


def _content_and_artifact(output: ToolOutput) -> tuple[str, dict[str, Any]]:
    artifact = {"result": output.data(), **(output.artifact or {})}
    return (output.json() if output.is_error else output.text()), artifact


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
            response_format="content_and_artifact", handle_validation_error=_validation_error))
    return made
