"""Bounds on what a tool answer sends to a client: images to a byte budget, whole messages to a size limit.

The official MCP Python SDK client reads streamable-HTTP answers as server-sent events and drops any event over
1 MiB (``mcp`` 2.3: ``DEFAULT_MAX_SSE_EVENT_SIZE = 1024 * 1024`` in ``mcp/client/streamable_http.py``, passed to
``httpx2.EventSource(max_event_size=…)``, which raises "Server-sent event exceeded the … byte limit"). One event is
one JSON-RPC message: the text, the structured result and every base64 image together. So an image is encoded to
at most :data:`IMAGE_BUDGET` bytes (a third of the limit once base64-encoded) and a whole answer to at most
:data:`MESSAGE_LIMIT` bytes of JSON, well under the SDK's limit.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SDK_EVENT_LIMIT = 1024 * 1024  # the MCP SDK client's per-event limit (see the module docstring)
IMAGE_BUDGET = 256 * 1024  # encoded bytes of one image; ≈ 341 KiB as base64
MESSAGE_LIMIT = 768 * 1024  # JSON bytes of one whole answer, images included (the JSON-RPC envelope is ~100 more)
MAX_SIDE = 768  # overlays are for looking at: longer sides are scaled down first
MIN_SIDE = 32  # below this an overlay shows nothing useful; it is always far under any budget


def bounded_png(rgb: np.ndarray, budget: int = IMAGE_BUDGET, max_side: int = MAX_SIDE) -> bytes:
    """``rgb`` (H, W, 3 uint8) as a PNG of at most ``budget`` bytes.

    Scaled down to ``max_side``, then: full-colour PNG if it fits; else a 256-colour palette PNG (an overlay has
    flat red and white on top of the photo, which a palette keeps); else the palette PNG at ¾ the size, repeated.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False), mode="RGB")
    image = _fit(image, max_side)
    data = _png(image)
    while len(data) > budget:
        data = _png(image.quantize(256, method=Image.Quantize.FASTOCTREE))
        if len(data) <= budget or max(image.size) <= MIN_SIDE:
            break
        image = _fit(image, max(MIN_SIDE, int(max(image.size) * 0.75)))
    return data


def _fit(image: Image.Image, max_side: int) -> Image.Image:
    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BILINEAR)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
