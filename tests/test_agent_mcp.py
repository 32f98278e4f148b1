"""A real MCP client session with `python -m addp_agent mcp` over stdio (and the HTTP address parser)."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from PIL import Image

from addp_agent.cli.mcp import parse_host_port
from addp_agent.data.shapes import generate_sample
from addp_agent.errors import UserError
from addp_agent.tools.manifests import mcp_tools
from addp_agent.tools.mcp_server import mcp_tool_list

ROOT = Path(__file__).resolve().parents[1]


async def _session(model_dir: Path, folder: Path, steps: list) -> dict:
    params = StdioServerParameters(
        command=sys.executable, cwd=ROOT,
        args=["-m", "addp_agent", "mcp", "--model", str(model_dir), "--allow-dir", str(folder)],
        env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ADDP_CRITIC_MODEL": ""})
    seen: dict = {}
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            seen["tools"] = (await session.list_tools()).tools
            for name, arguments in steps:
                if callable(arguments):
                    arguments = arguments(seen)
                seen.setdefault(name, []).append(await session.call_tool(name, arguments))
    return seen


def test_stdio_session_lists_tools_segments_and_refuses(tiny_pixel_dir, tmp_path):
    sample = generate_sample("val", 5)
    Image.fromarray(sample.image).save(tmp_path / "scene.png")
    (tmp_path / "inner").mkdir()
    steps = [
        ("segment", {"image": "scene.png", "expression": sample.expression, "steps": 3}),
        ("refine", lambda s: {"mask_id": s["segment"][0].structured_content["mask_id"], "correction": "the cross"}),
        ("segment", {"image": "inner/../../etc/passwd", "expression": "x"}),
        ("segment", {"expression": 42}),
        ("trajectory", {"mask_id": "m-000000000000-r1"}),
    ]
    seen = anyio.run(_session, tiny_pixel_dir, tmp_path, steps)
    assert [t.name for t in seen["tools"]] == ["segment", "refine", "get_mask", "trajectory", "estimate_depth",
                                               "depth_of", "compare_depth"]
    assert [t.input_schema for t in seen["tools"]] == [t["inputSchema"] for t in mcp_tools()]

    ok = seen["segment"][0]
    assert not ok.is_error and ok.structured_content["mask_id"].endswith("-r1")
    text, image = ok.content
    assert text.type == "text" and "mask_id" in text.text
    assert image.type == "image" and image.mime_type == "image/png"
    assert np.asarray(Image.open(io.BytesIO(base64.b64decode(image.data)))).shape == (64, 64, 3)
    assert seen["refine"][0].structured_content["corrections"] == ["the cross"]

    refused, invalid = seen["segment"][1:]
    assert refused.is_error and refused.structured_content["error"] == "refused"
    assert invalid.is_error and invalid.structured_content["error"] == "invalid_arguments"
    assert seen["trajectory"][0].structured_content["error"] == "not_found"


def test_tool_list_matches_the_manifest_and_http_address_parses():
    assert [t.model_dump(by_alias=True, exclude_none=True) for t in mcp_tool_list()] == mcp_tools()
    assert parse_host_port("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_host_port("[::1]:9000") == ("::1", 9000)
    with pytest.raises(UserError, match="HOST:PORT"):
        parse_host_port("8765")
