"""MCP server on the official ``mcp`` SDK (low-level ``Server``): stdio or streamable HTTP.

Tools are listed with the pydantic input/output schemas of :mod:`addp_agent.tools.schemas`. A call returns the short
text, the overlay as image content and the result as structured content; failures come back as ``isError``
results carrying a :class:`~addp_agent.tools.schemas.ToolError` object, never as crashes.
"""

from __future__ import annotations

import base64
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import anyio

from addp_agent.extras import extra_imports
from addp_agent.tools.functions import TOOL_SPECS, SegmentationTools, ToolOutput
from addp_agent.tools.payload import MESSAGE_LIMIT
from addp_agent.tools.schemas import ToolError

with extra_imports("agent"):
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server
    from mcp.server.streamable_http import MCP_SESSION_ID_HEADER

SERVER_NAME = "addp-segmentation"
INSTRUCTIONS = ("Referring image segmentation by diffusion. Call segment with an image and a referring expression; "
                "look at the overlay; if the mask covers a wrong object call refine with a correction naming it. "
                "get_mask returns RLE, PNG or polygons; trajectory returns the intermediate masks. Depth: "
                "estimate_depth maps relative depth (0 = near), depth_of measures one object, compare_depth says "
                "which of two objects is closer; pass their depth_id and mask_ids back to reuse the work.")


def _version() -> str:
    try:
        return version("addp-agent")
    except PackageNotFoundError:
        return "0"


def mcp_tool_list() -> list[types.Tool]:
    return [types.Tool(name=name, description=spec.description, input_schema=spec.args.model_json_schema(),
                       output_schema=spec.result.model_json_schema())
            for name, spec in TOOL_SPECS.items()]


def call_tool_result(output: ToolOutput) -> types.CallToolResult:
    """Text for the model, the overlay as image content, and the result as structured content.

    An answer whose JSON would exceed :data:`~addp_agent.tools.payload.MESSAGE_LIMIT` (the MCP SDK client drops
    events over 1 MiB) becomes a ``refused`` error saying what to ask for instead.
    """
    result = _result(output)
    size = len(result.model_dump_json(by_alias=True, exclude_none=True))
    if size > MESSAGE_LIMIT:
        message = (f"the answer would be {size / 1024:.0f} KiB, over the {MESSAGE_LIMIT // 1024} KiB a tool answer "
                   "may carry here; ask get_mask for format='rle' (the most compact)")
        result = _result(ToolOutput(output.name, ToolError(error="refused", message=message)))
    return result


def _result(output: ToolOutput) -> types.CallToolResult:
    content: list[Any] = [types.TextContent(type="text", text=output.text())]
    if output.overlay_png is not None:
        content.append(types.ImageContent(type="image", data=base64.b64encode(output.overlay_png).decode("ascii"),
                                          mime_type="image/png"))
    return types.CallToolResult(content=content, structured_content=output.data(), is_error=output.is_error)


def client_key(ctx: Any) -> str:
    """Whose sessions a call sees: its MCP session (streamable HTTP: the ``mcp-session-id`` the server handed out,
    an unguessable token; stdio: the one client of the process). Requests without a session (the sessionless
    2026-07-28 protocol) share one pool, where ``mask_id``s are bearer tokens."""
    request = getattr(ctx, "request", None)
    if request is None:
        return "stdio"
    headers = getattr(request, "headers", None) or {}
    session = headers.get(MCP_SESSION_ID_HEADER)
    return f"http:{session}" if session else "http:sessionless"


def build_server(tools: SegmentationTools) -> Server:
    """A low-level MCP server whose tool calls run in worker threads (the model is shared)."""

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=mcp_tool_list())

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        output = await anyio.to_thread.run_sync(tools.call, params.name, dict(params.arguments or {}),
                                                client_key(ctx))
        return call_tool_result(output)

    return Server(SERVER_NAME, version=_version(), instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call_tool)


def run_stdio(tools: SegmentationTools) -> None:
    server = build_server(tools)

    async def serve() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(serve)


def http_app(tools: SegmentationTools, host: str = "127.0.0.1", path: str = "/mcp") -> Any:
    """The streamable-HTTP ASGI app; a client that ends its MCP session (HTTP DELETE) frees its sessions at once
    (others expire with the store's time-to-live, as the SDK forgets idle MCP sessions after 30 minutes)."""
    app = build_server(tools).streamable_http_app(streamable_http_path=path, host=host)

    async def releasing(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "DELETE":
            return await app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
        session, status = headers.get(MCP_SESSION_ID_HEADER), [0]

        async def watched(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 0))
            await send(message)

        await app(scope, receive, watched)
        if session and 200 <= status[0] < 300:
            tools.store.drop_client(f"http:{session}")

    return releasing


def run_http(tools: SegmentationTools, host: str, port: int, path: str = "/mcp") -> None:
    """Streamable HTTP at ``http://HOST:PORT/mcp`` (uvicorn)."""
    with extra_imports("agent"):
        import uvicorn

    uvicorn.run(http_app(tools, host, path), host=host, port=port, log_level="warning")
