"""`addp models`: the bundled models, by the names `--model` accepts."""

from __future__ import annotations

import json

import typer

from addp_agent.cli.app import app


@app.command("models")
def models_command(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List the bundled models: name (for --model), task, size, default steps, domain, and whether installed."""
    from rich.console import Console
    from rich.table import Table

    from addp_agent.models.catalog import bundled_models

    models = bundled_models()
    if as_json:
        typer.echo(json.dumps([m.model_dump() for m in models], indent=2))
        return
    table = Table(title="bundled models (pass the name to --model)")
    for column in ("name", "task", "default", "MiB", "steps", "domain", "about"):
        table.add_column(column)
    for m in models:
        if not m.installed:
            table.add_row(m.name, "-", "-", "-", "-", "-", f"not in this install ({m.about})")
            continue
        task = f"{m.task} (generalized)" if m.found_rule else str(m.task)
        table.add_row(m.name, task, "yes" if m.default else "", f"{m.size_mib:.1f}", str(m.steps), m.domain, m.about)
    Console(width=160).print(table)
