"""`addp demo`: the interactive web page (Gradio) on this machine: segment, correct, and depth when there is a model.

The critic picker offers what ``addp agent --critic`` offers, less the critics that read ground truth; the LLM
critics (paper, vlm) only when an OpenAI-compatible endpoint is configured.
"""

from __future__ import annotations

import inspect
import os
import socket
from typing import Any

import typer

from addp_agent.cli.agent import CRITICS
from addp_agent.cli.agent import _critic as build_named_critic
from addp_agent.cli.app import app
from addp_agent.errors import UserError
from addp_agent.limits import MAX_BATCH

GROUND_TRUTH_CRITICS = {"simulated", "oracle", "noisy"}  # need the target's mask: nothing to offer on a web page
LLM_CRITICS = {"paper", "vlm"}


def page_critics(llm_settings: Any) -> list[str]:
    """The critic names the page offers: ``addp agent``'s, without ground-truth ones, LLM ones only when configured."""
    return [name for name in CRITICS
            if name not in GROUND_TRUTH_CRITICS and (name not in LLM_CRITICS or llm_settings is not None)]


def critic_factory(llm_settings: Any):
    """Critics by name through the same builder as ``addp agent`` (whatever arguments it takes)."""
    parameters = inspect.signature(build_named_critic).parameters

    def make(name: str, caption: str | None, pipe: Any):
        values = {"name": name, "truth": None, "instances": [], "accept_iou": 0.9, "caption": caption,
                  "settings": llm_settings, "accuracy": None, "critic_seed": 0, "pipe": pipe}
        return build_named_critic(**{key: value for key, value in values.items() if key in parameters})

    return make


def llm_settings(critic_model: str | None, base_url: str | None) -> Any:
    """Resolved chat settings when an endpoint is configured (flags or environment), else None."""
    if not (critic_model or os.environ.get("ADDP_CRITIC_MODEL")):
        return None
    from addp_agent.critic.chat import ChatSettings

    return ChatSettings(model=critic_model, base_url=base_url).resolved()


def check_address(host: str, port: int) -> None:
    """A bindable host and a free port, checked before any model loads (one line, exit 2 otherwise)."""
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    if not host.strip():
        raise UserError("--host is empty; give an address, e.g. 127.0.0.1 (this machine) or 0.0.0.0 (every "
                        "interface)")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except (OSError, UnicodeError) as error:
        raise UserError(f"cannot serve on {host}:{port} ({error.strerror or error}); pick another --host/--port") \
            from None


@app.command("demo")
def demo_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    model: str = typer.Option(None, "--model", help="Segmentation model folder, hub id or bundled "
                                                    "name (default: shapes-ref-small)."),
    depth_model: str = typer.Option(None, "--depth-model",
                                    help="Depth model folder or Marigold hub id in your cache (default: the "
                                         "bundled one; without one the page has no Depth tab)."),
    critic_model: str = typer.Option(None, "--critic-model",
                                     help="LLM/VLM for the paper and vlm critics (default: $ADDP_CRITIC_MODEL)."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)."),
    batch_max: int = typer.Option(4, "--batch-max", help="Concurrent segmentations batched together (1: none)."),
    examples: bool = typer.Option(True, "--examples/--no-examples", help="Generated example scenes on the page."),
) -> None:
    """Serve the web demo: segment with a referring expression, correct it (by hand or a critic), depth."""
    from addp_agent.errors import ModelLoadError
    from addp_agent.extras import require_extra
    from addp_agent.models.registry import BUNDLED_MODELS, resolve_source

    require_extra("demo")
    if not 1 <= batch_max <= MAX_BATCH:
        raise UserError(f"--batch-max must be in 1..{MAX_BATCH}, got {batch_max}")
    if depth_model is not None:
        try:
            resolve_source(depth_model)  # the loader's own rule: a path, a bundled name or a hub id
        except ModelLoadError:
            raise UserError(f"--depth-model {depth_model}: no such folder (nor a hub id like "
                            f"prs-eth/marigold-depth-v1-1 or a bundled model: {', '.join(BUNDLED_MODELS)})") from None
    check_address(host, port)
    settings = llm_settings(critic_model, base_url)

    from addp_agent.demo.app import build_demo, launch, upload_dirs
    from addp_agent.demo.examples import write_examples
    from addp_agent.demo.service import DemoService

    service = DemoService(model, upload_dirs=upload_dirs(), depth_model=depth_model, critics=page_critics(settings),
                          critic_factory=critic_factory(settings), batch_max=batch_max)
    try:
        service.load()
        rows = write_examples(service.work_dir / "examples") if examples else None
        typer.echo(f"addp demo on http://{host}:{port} (Ctrl+C stops it)")
        launch(build_demo(service, rows), service, host, port)
    finally:
        service.close()
