"""The ``addp`` typer application; each command module under ``addp_agent/cli/`` adds its commands to it."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="addp",
    help="Referring image segmentation by diffusion, with correctional guidance for agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
