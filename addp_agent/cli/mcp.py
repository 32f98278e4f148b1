"""`addp mcp`: serve the segmentation tools over MCP (stdio by default, or streamable HTTP)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from addp_agent.cli.app import app
from addp_agent.cli.demo import check_address
from addp_agent.errors import UserError
from addp_agent.limits import MAX_BATCH, MAX_BATCH_WAIT_MS


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--http expects HOST:PORT (e.g. 127.0.0.1:8765), got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@app.command("mcp")
def mcp(
    model: str = typer.Option(None, "--model", help="model folder, .ckpt/.safetensors file, hub id "
                              "or bundled name, e.g. scenes3d-ris-small (default: shapes-ref-small)"),
    depth_model: str = typer.Option(None, "--depth-model",
                                    help="depth model folder or Marigold hub id in your cache, for the depth tools "
                                         "(default: the bundled depth model, if this install has one); depth maps "
                                         "are kept like sessions (--max-sessions, --ttl)"),
    http: str = typer.Option(None, "--http", metavar="HOST:PORT", help="serve streamable HTTP at /mcp, not stdio"),
    allow_dir: list[Path] = typer.Option([], "--allow-dir", help="folder whose images tools may read (repeatable)"),
    allow_urls: bool = typer.Option(False, "--allow-urls", help="let tools download http(s) image URLs"),
    critic_model: str = typer.Option(None, "--critic-model",
                                     help="VLM for critic='vlm' (default: $ADDP_CRITIC_MODEL; none: no VLM critic)"),
    max_sessions: int = typer.Option(16, "--max-sessions", min=1,
                                     help="sessions kept per client (its least recently used go)"),
    client_memory_mb: int = typer.Option(256, "--client-memory-mb", min=1,
                                         help="MiB of session arrays kept per client (its least recently used go)"),
    total_memory_mb: int = typer.Option(1024, "--total-memory-mb", min=1,
                                        help="MiB of session arrays kept for all clients together"),
    max_clients: int = typer.Option(64, "--max-clients", min=1, help="clients holding sessions at a time"),
    ttl: float = typer.Option(1800.0, "--ttl", min=1.0, help="seconds a session lives after its last use"),
    batch_max: int = typer.Option(8, "--batch-max", min=1, max=MAX_BATCH,
                                  help="concurrent one-round segment calls batched together (1: no batching)"),
    batch_wait_ms: float = typer.Option(10.0, "--batch-wait-ms", min=0.0, max=MAX_BATCH_WAIT_MS,
                                        help="how long the first call of a batch waits for others"),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
    correction_mode: str = typer.Option(None, "--correction-mode",
                                        help="additive | replace | paper (default: the model's)"),
) -> None:
    """Serve segment / refine / get_mask / trajectory and the depth tools (estimate_depth / depth_of /
    compare_depth) to MCP clients; the models are loaded once, at start."""
    from addp_agent.devices import check_device

    check_device(device)
    if client_memory_mb > total_memory_mb:
        raise UserError(f"--client-memory-mb ({client_memory_mb}) must not exceed --total-memory-mb "
                        f"({total_memory_mb})")
    from addp_agent.errors import ModelLoadError
    from addp_agent.tools.depth_store import DepthStore
    from addp_agent.tools.functions import SegmentationTools  # the engine's imports: after the cheap checks
    from addp_agent.tools.inputs import ImagePolicy
    from addp_agent.tools.mcp_server import run_http, run_stdio
    from addp_agent.tools.store import MiB, SessionStore

    for folder in allow_dir:
        if not folder.expanduser().is_dir():
            raise UserError(f"--allow-dir {folder}: not a folder")
    address = parse_host_port(http) if http is not None else None
    if address is not None:
        check_address(*address)  # a port in use or a host not here fails now, not after the models load
    factory = None
    if critic_model or os.environ.get("ADDP_CRITIC_MODEL"):
        from addp_agent.critic.chat import ChatSettings
        from addp_agent.critic.vlm import VLMCritic

        settings = ChatSettings(model=critic_model).resolved()  # fail now, not at the first call
        factory = lambda: VLMCritic(settings)  # noqa: E731
    store = SessionStore(max_sessions, ttl, client_bytes=client_memory_mb * MiB, total_bytes=total_memory_mb * MiB,
                         max_clients=max_clients)
    tools = SegmentationTools(model, store=store, policy=ImagePolicy.create(allow_dir, allow_urls),
                              critic_factory=factory, batch_max=batch_max, batch_wait_ms=batch_wait_ms, device=device,
                              correction_mode=correction_mode,  # type: ignore[arg-type]
                              depth_model=depth_model, depth_store=DepthStore(max_sessions, ttl))
    tools.pipeline  # noqa: B018 (load once, before serving, so a bad --model fails here)
    try:
        tools.depth_pipeline  # noqa: B018 (a bad --depth-model fails here too)
    except ModelLoadError as error:
        if depth_model is not None:
            raise
        typer.echo(f"note: the depth tools will answer model_unavailable: {error}", err=True)
    try:
        if address is None:
            run_stdio(tools)
        else:
            run_http(tools, *address)
    finally:
        tools.close()
