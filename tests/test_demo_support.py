"""Helpers for the demo tests (no tests here): a DemoService on tiny models, served on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(service: Any, examples: list[list[str]] | None = None) -> Iterator[str]:
    """``service``'s page on 127.0.0.1 (a real Gradio server in this process); yields its URL, closes both after."""
    from addp_agent.demo.app import build_demo, launch

    demo = build_demo(service, examples)
    port = free_port()
    launch(demo, service, "127.0.0.1", port, block=False)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        service.close()
