"""The tool server end to end: ``python -m benchmarks.tool_server [--suite sd15-256|bundled] [--clients 16]``.

Starts ``addp mcp --http`` on loopback (its own process, the model loaded once), then measures with the official MCP
SDK client (streamable HTTP): one client calling ``segment`` then ``refine`` (``--repeats`` times, after one
warm-up pair), and ``--clients`` clients, each with its own MCP session, doing the same at once (``--repeats``
bursts). Every call's latency is what its client waited; the JSON gives p50/p95 per call for one client and for
many, and the ratio of the many-client p95 to the one-client p50. The model: SD-1.5-size InstructPix2Pix with
random weights at 256 px saved through ``save_pretrained`` (``sd15-256``), the bundled model (``bundled``), or a
folder (``--model``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from PIL import Image

from benchmarks.concurrency import latency_stats
from benchmarks.suite import CORRECTIONS, PROMPT

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def save_model(suite: str, folder: Path) -> str:
    """Write the benchmark model with ``save_pretrained``; returns its description."""
    import torch

    from benchmarks.models import sd15_instruct_pix2pix

    resolution = int(suite.removeprefix("sd15-"))
    pipe, source = sd15_instruct_pix2pix(resolution, torch.device("cpu"), torch.float32)
    pipe.to(dtype=torch.float16).save_pretrained(folder)
    return source


def start_server(model: str | None, port: int, images: Path, clients: int, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "addp_agent", "mcp", "--http", f"127.0.0.1:{port}", "--allow-dir", str(images),
            "--batch-max", str(clients), "--batch-wait-ms", "10", "--max-sessions", str(8 * clients)]
    if model:
        args += ["--model", model]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "ADDP_CRITIC_MODEL": ""}
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)


def wait_for(server: subprocess.Popen, port: int, timeout: float, log: Path) -> float:
    start = time.monotonic()
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return time.monotonic() - start
        except OSError:
            if server.poll() is not None or time.monotonic() - start > timeout:
                raise SystemExit(f"the MCP server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


async def _call(session: Any, name: str, arguments: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    answer = await session.call_tool(name, arguments)
    seconds = time.perf_counter() - start
    if answer.is_error:
        raise RuntimeError(f"{name} failed: {answer.content[0].text}")
    return answer.structured_content, seconds


async def segment_then_refine(session: Any, image: str, seed: int, steps: int | None,
                              out: dict[str, list[float]]) -> None:
    arguments: dict[str, Any] = {"image": image, "expression": PROMPT, "seed": seed}
    if steps:
        arguments["steps"] = steps
    result, seconds = await _call(session, "segment", arguments)
    out["segment"].append(seconds)
    _, seconds = await _call(session, "refine", {"mask_id": result["mask_id"], "correction": CORRECTIONS[0]})
    out["refine"].append(seconds)


async def measure(url: str, images: list[str], clients: int, repeats: int, steps: int | None) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with contextlib.AsyncExitStack() as stack:
        sessions = []
        for _ in range(clients):
            read, write, *_ = await stack.enter_async_context(streamable_http_client(url))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            sessions.append(session)
        single: dict[str, list[float]] = {"segment": [], "refine": []}
        await segment_then_refine(sessions[0], images[0], 0, steps, {"segment": [], "refine": []})  # warm-up
        for r in range(repeats):
            await segment_then_refine(sessions[0], images[r % len(images)], 1 + r, steps, single)
        many: dict[str, list[float]] = {"segment": [], "refine": []}
        bursts = []
        for r in range(repeats):
            start = time.perf_counter()
            async with anyio.create_task_group() as group:
                for i, session in enumerate(sessions):
                    group.start_soon(segment_then_refine, session, images[i % len(images)], 100 * r + i, steps,
                                     many)
            bursts.append(time.perf_counter() - start)
    out: dict[str, Any] = {"single": {k: latency_stats(v) for k, v in single.items()},
                           "concurrent": {k: latency_stats(v) for k, v in many.items()}, "burst_s": bursts}
    out["p95_concurrent_over_p50_single"] = {k: out["concurrent"][k]["p95"] / out["single"][k]["p50"]
                                             for k in ("segment", "refine")}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="sd15-256", help="sd15-<px> (random weights, saved) or bundled")
    parser.add_argument("--model", default=None, help="serve this model folder instead")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="segment's steps (default: the model's)")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.clients < 1 or args.repeats < 1:
        parser.error("--clients and --repeats must be ≥ 1")
    with tempfile.TemporaryDirectory(prefix="addp-toolbench-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        if args.model:
            model, source = args.model, args.model
        elif args.suite == "bundled":
            model, source = None, "the bundled default model"
        else:
            model, source = str(folder / "model"), save_model(args.suite, folder / "model")
        build_s = time.perf_counter() - t0
        images_dir = folder / "images"
        images_dir.mkdir()
        names = []
        for k in range(min(args.clients, 8)):
            pixels = np.random.default_rng(k).integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images_dir / f"image{k}.png")
            names.append(str(images_dir / f"image{k}.png"))
        port, log = free_port(), folder / "server.log"
        server = start_server(model, port, images_dir, args.clients, log)
        try:
            start_s = wait_for(server, port, args.start_timeout, log)
            result = anyio.run(measure, f"http://127.0.0.1:{port}/mcp", names, args.clients, args.repeats,
                               args.steps)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    report = {"model": source, "clients": args.clients, "repeats": args.repeats, "steps": args.steps,
              "model_write_s": build_s, "server_start_s": start_s, "transport": "streamable HTTP on 127.0.0.1, "
              "official MCP SDK client, one MCP session per client", **result}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    for call in ("segment", "refine"):
        one, many = report["single"][call], report["concurrent"][call]
        print(f"{call}: one client p50 {one['p50']:.3f} s; {args.clients} clients p50 {many['p50']:.3f} s, p95 "
              f"{many['p95']:.3f} s ({report['p95_concurrent_over_p50_single'][call]:.2f}× one client's p50)")
    return report


if __name__ == "__main__":
    main()
