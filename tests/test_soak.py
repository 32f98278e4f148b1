"""Soak (``-m slow``): 1000 ``segment`` calls on a real `addp mcp --http` server; its resident memory stays bounded.

The server keeps at most 16 sessions per client (its defaults); four clients call concurrently with a small scene, a
320×240 photo and a 2000×1500 photo (kept as a 1024×768 working copy) in turn. After a warm-up (the first 100
calls: allocator pools, every store at its session limit), the resident set may grow by at most
:data:`GROWTH_BOUND_MIB`, and not at all over the second half beyond :data:`DRIFT_BOUND_MIB` (no leak).
"""

from __future__ import annotations

import time

import anyio
import psutil
import pytest
from conftest import mcp_http_server, serve_folder
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.slow
CALLS, CLIENTS, WARM_UP, SAMPLE_EVERY = 1000, 4, 100, 50
GROWTH_BOUND_MIB = 200  # over the warm-up level, for everything the four stores and the answers in flight hold
DRIFT_BOUND_MIB = 40  # second half against the middle


def test_thousand_segment_calls_keep_the_servers_memory_bounded(tiny_pixel_dir, tmp_path):
    images = ["scene.png", "photo.png", "large.jpg"]
    with mcp_http_server(tiny_pixel_dir, serve_folder(tmp_path)) as server:
        process = psutil.Process(server.process.pid)
        samples: list[tuple[int, float]] = [(0, process.memory_info().rss / 2**20)]
        failures: list[str] = []
        done = [0]

        async def client(k: int) -> None:
            async with streamable_http_client(server.url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                for i in range(CALLS // CLIENTS):
                    answer = await session.call_tool("segment", {"image": images[(i + k) % 3], "steps": 1,
                                                                 "expression": "the circle", "seed": i})
                    if answer.is_error:
                        failures.append(answer.content[0].text)
                    done[0] += 1
                    if done[0] % SAMPLE_EVERY == 0:
                        samples.append((done[0], process.memory_info().rss / 2**20))

        async def soak() -> None:
            with anyio.fail_after(3600):
                async with anyio.create_task_group() as group:
                    for k in range(CLIENTS):
                        group.start_soon(client, k)

        start = time.perf_counter()
        anyio.run(soak)
        seconds = time.perf_counter() - start
    rss = dict(samples)
    warm = rss[WARM_UP]
    middle = rss[CALLS // 2]
    end = rss[CALLS]
    peak = max(rss.values())
    print(f"\nsoak: {CALLS} segment calls from {CLIENTS} clients in {seconds:.0f} s, {len(failures)} failures; "
          f"server RSS at start {rss[0]:.0f} MiB, after {WARM_UP} calls {warm:.0f} MiB, at {CALLS // 2} "
          f"{middle:.0f} MiB, end {end:.0f} MiB, max {peak:.0f} MiB (bound: warm-up + {GROWTH_BOUND_MIB} MiB)")
    assert failures == []
    assert peak <= warm + GROWTH_BOUND_MIB
    assert end <= middle + DRIFT_BOUND_MIB
