"""`addp manifests [--check]`: regenerate (or check) the tool manifests in ``tools/`` from the pydantic models."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli.app import app


@app.command("manifests")
def manifests_command(
    check: bool = typer.Option(False, "--check", help="Only compare; exit 1 when a manifest is stale."),
    folder: Path = typer.Option(None, "--dir", help="Manifest folder (default: the repository's tools/)."),
) -> None:
    """Write the OpenAI and MCP tool manifests (or, with --check, list those that differ from the code)."""
    from addp_agent.errors import UserError
    from addp_agent.tools.manifests import TOOLS_DIR, stale, write

    folder = folder or TOOLS_DIR
    if check:
        if not folder.is_dir():
            raise UserError(f"{folder}: not a folder; give the manifest folder to check as --dir")
        names = stale(folder)
        for name in names:
            typer.echo(f"stale: {folder / name} (run addp manifests)", err=True)
        raise typer.Exit(1 if names else 0)
    for path in write(folder):
        typer.echo(path)
