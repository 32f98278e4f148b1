"""`addp` command line. Each command group lives in its own module (listed in ``COMMANDS``) and adds its commands
to :data:`addp_agent.cli.app.app`; a new command is a new module plus its name here."""

from __future__ import annotations

import sys
from importlib import import_module

from addp_agent.errors import UserError

COMMANDS = ("agent", "bundle", "data", "data_scenes", "demo", "depth", "effects", "eval", "manifests", "mcp",
            "segment", "sweep", "train")


def _register() -> None:
    """Import command modules (each adds its commands to ``app``)."""
    for name in COMMANDS:
        import_module(f"addp_agent.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    from addp_agent.cli.app import app

    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
