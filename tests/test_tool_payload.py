"""Image payloads within a byte budget, and whole MCP answers under the official SDK client's per-event limit."""

from __future__ import annotations

import base64
import io

import anyio
import numpy as np
import pytest
from conftest import noisy_photo
from mcp import ClientSession
from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE, streamable_http_client
from PIL import Image

from addp_agent.masks import mask_to_png_base64
from addp_agent.tools.functions import ToolOutput
from addp_agent.tools.mcp_server import call_tool_result
from addp_agent.tools.payload import IMAGE_BUDGET, MESSAGE_LIMIT, SDK_EVENT_LIMIT, bounded_png
from addp_agent.tools.schemas import MaskResult


def test_the_cited_sdk_limit_is_the_installed_one():
    assert SDK_EVENT_LIMIT == DEFAULT_MAX_SSE_EVENT_SIZE == 1024 * 1024
    assert 4 * IMAGE_BUDGET / 3 < MESSAGE_LIMIT < SDK_EVENT_LIMIT


@pytest.mark.parametrize(("height", "width"), [(768, 768), (1500, 2000), (40, 7000)])
def test_noisy_photo_overlay_png_fits_the_budget(height, width):
    data = bounded_png(noisy_photo(height, width))
    assert data.startswith(b"\x89PNG") and len(data) <= IMAGE_BUDGET
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) <= 768 and abs(image.width / image.height - width / height) < 0.2 * width / height


def test_small_overlay_stays_lossless_full_colour():
    photo = noisy_photo(48, 64)
    with Image.open(io.BytesIO(bounded_png(photo))) as image:
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), photo)


def test_mcp_answer_over_the_message_limit_is_refused_not_sent():
    mask = np.random.default_rng(0).random((2500, 2500)) > 0.5  # a PNG of noise: ≈ 800 KB, 1.1 MB as base64
    result = MaskResult(mask_id="m-0123456789ab-r1", format="png", width=2500, height=2500,
                        png_base64=mask_to_png_base64(mask))
    answer = call_tool_result(ToolOutput("get_mask", result))
    assert answer.is_error and answer.structured_content["error"] == "refused"
    assert "format='rle'" in answer.structured_content["message"]
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) < MESSAGE_LIMIT


async def _segment_over_http(url: str, arguments: dict) -> tuple:
    with anyio.fail_after(120):
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("segment", arguments)


def test_large_noisy_photo_overlay_passes_the_sdk_http_client(mcp_http):
    """A real `addp mcp --http` server and the official client with its default 1 MiB event limit."""
    arguments = {"image": "large.jpg", "expression": "the left half", "steps": 2}
    answer = anyio.run(_segment_over_http, mcp_http.url, arguments)
    assert not answer.is_error, answer.content[0].text
    assert answer.structured_content["width"] == 2000 and answer.structured_content["height"] == 1500
    image = answer.content[1]
    assert image.type == "image" and image.mime_type == "image/png"
    assert len(base64.b64decode(image.data)) <= IMAGE_BUDGET
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) < MESSAGE_LIMIT
