"""Image payloads within a byte budget, and whole MCP answers under the official SDK client's per-event limit."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import DEFAULT_MAX_SSE_EVENT_SIZE, streamable_http_client
from PIL import Image

from addp_agent.masks import mask_to_png_base64
from addp_agent.tools.functions import ToolOutput
from addp_agent.tools.mcp_server import call_tool_result
from addp_agent.tools.payload import IMAGE_BUDGET, MESSAGE_LIMIT, SDK_EVENT_LIMIT, bounded_png
from addp_agent.tools.schemas import MaskResult

ROOT = Path(__file__).resolve().parents[1]


def noisy_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The worst case for PNG: smooth gradients under strong per-pixel noise (like a high-ISO photo)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    noise = np.random.default_rng(seed).integers(-60, 60, (height, width, 3))
    return (base + noise).clip(0, 255).astype(np.uint8)


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _segment_over_http(url: str, arguments: dict) -> tuple:
    with anyio.fail_after(120):
        async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("segment", arguments)


def test_large_noisy_photo_overlay_passes_the_sdk_http_client(tiny_pixel_dir, tmp_path):
    """A real `addp mcp --http` server and the official client with its default 1 MiB event limit."""
    Image.fromarray(noisy_photo(1500, 2000)).save(tmp_path / "photo.jpg", quality=95)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "addp_agent", "mcp", "--model", str(tiny_pixel_dir), "--allow-dir", str(tmp_path),
         "--http", f"127.0.0.1:{port}"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ADDP_CRITIC_MODEL": ""})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()[-2000:]
                time.sleep(0.2)
        answer = anyio.run(_segment_over_http, f"http://127.0.0.1:{port}/mcp",
                           {"image": "photo.jpg", "expression": "the left half", "steps": 2})
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not answer.is_error, answer.content[0].text
    assert answer.structured_content["width"] == 2000 and answer.structured_content["height"] == 1500
    image = answer.content[1]
    assert image.type == "image" and image.mime_type == "image/png"
    assert len(base64.b64decode(image.data)) <= IMAGE_BUDGET
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) < MESSAGE_LIMIT
