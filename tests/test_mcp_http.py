"""A real `addp mcp --http` server on loopback and the official MCP SDK client: sessions isolated per client, and a
bounded burst from concurrent clients with every answer under the SDK's per-event limit."""

from __future__ import annotations

import base64
import re
import time
from statistics import median

import anyio
import pytest
from conftest import MCP_MAX_SESSIONS
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from addp_agent.tools.payload import IMAGE_BUDGET, MESSAGE_LIMIT, SDK_EVENT_LIMIT

BURST_CLIENTS, BURST_CALLS = 8, 8


@pytest.fixture()
def server(mcp_http):
    return mcp_http.url


def call_args(image: str = "scene.png", **extra) -> dict:
    return {"image": image, "expression": "the circle", "steps": 1, **extra}


def check_payload(answer) -> None:
    """Every image under the image budget, the whole answer under the message limit (and so the SDK's)."""
    for part in answer.content:
        if part.type == "image":
            assert len(base64.b64decode(part.data)) <= IMAGE_BUDGET
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) < MESSAGE_LIMIT < SDK_EVENT_LIMIT


def test_two_clients_cannot_read_or_evict_each_others_masks(server):
    async def run() -> dict:
        seen: dict = {}
        with anyio.fail_after(180):
            await exchange(seen)
        return seen

    async def exchange(seen: dict) -> None:
        async with streamable_http_client(server) as (read_a, write_a), ClientSession(read_a, write_a) as a, \
                streamable_http_client(server) as (read_b, write_b), ClientSession(read_b, write_b) as b:
            await a.initialize()
            await b.initialize()
            first = await a.call_tool("segment", call_args())
            mine = first.structured_content["mask_id"]
            seen["b reads a's"] = await b.call_tool("get_mask", {"mask_id": mine})
            seen["b refines a's"] = await b.call_tool("refine", {"mask_id": mine, "correction": "the square"})
            seen["b unknown"] = await b.call_tool("get_mask", {"mask_id": "m-0123456789ab-r1"})
            seen["b's own"] = [await b.call_tool("segment", call_args()) for _ in range(MCP_MAX_SESSIONS + 2)]
            seen["a after b"] = await a.call_tool("get_mask", {"mask_id": mine})
            seen["a refines"] = await a.call_tool("refine", {"mask_id": mine, "correction": "the square"})

    seen = anyio.run(run)
    for name in ("b reads a's", "b refines a's"):
        answer = seen[name]
        assert answer.is_error and answer.structured_content["error"] == "not_found", name
        unknown = seen["b unknown"].structured_content["message"]
        assert re.sub(r"m-\w+-r1", "ID", answer.structured_content["message"]) == re.sub(r"m-\w+-r1", "ID", unknown)
    assert not any(answer.is_error for answer in seen["b's own"])
    assert not seen["a after b"].is_error and seen["a after b"].structured_content["format"] == "rle"
    assert not seen["a refines"].is_error and seen["a refines"].structured_content["rounds"] == 2


def test_burst_of_64_calls_from_8_clients_has_no_failures_and_bounded_payloads(server):
    latencies: list[float] = []
    failures: list[str] = []

    async def client(k: int) -> None:
        async with streamable_http_client(server) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for i in range(BURST_CALLS):
                image = "photo.png" if i == k % BURST_CALLS else "scene.png"  # one large photo per client
                start = time.perf_counter()
                answer = await session.call_tool("segment", call_args(image, seed=i))
                latencies.append(time.perf_counter() - start)
                if answer.is_error:
                    failures.append(answer.content[0].text)
                    continue
                check_payload(answer)
                mask = await session.call_tool("get_mask", {"mask_id": answer.structured_content["mask_id"]})
                if mask.is_error:
                    failures.append(mask.content[0].text)

    async def burst() -> None:
        with anyio.fail_after(300):
            async with anyio.create_task_group() as group:
                for k in range(BURST_CLIENTS):
                    group.start_soon(client, k)

    anyio.run(burst)
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"\nburst: {len(latencies)} segment calls from {BURST_CLIENTS} clients, {len(failures)} failures, "
          f"p50 {1000 * median(ordered):.0f} ms, p95 {1000 * p95:.0f} ms")
    assert failures == [] and len(latencies) == BURST_CLIENTS * BURST_CALLS
