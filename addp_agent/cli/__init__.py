"""`addp` command line. Each command group lives in its own module and is registered here."""

from __future__ import annotations

import sys

import typer

from addp_agent.errors import UserError

app = typer.Typer(
    name="addp",
    help="Referring image segmentation by diffusion, with correctional guidance for agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    """Import command modules (each adds its commands to ``app``)."""
    from addp_agent.cli import agent, data, depth, eval, mcp, segment, sweep, train  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
