"""`addp` command line. Each command group lives in its own module (listed in ``COMMANDS``) and adds its commands
to :data:`addp_agent.cli.app.app`; a new command is a new module plus its name here."""

from __future__ import annotations

import sys
from importlib import import_module

from addp_agent.errors import UserError

COMMANDS = ("agent", "bundle", "calibrate", "critic_study", "data", "data_scenes", "demo", "depth", "effects",
            "eval", "manifests", "mcp", "models",
            "segment", "sweep", "train")


def _register() -> None:
    """Import command modules (each adds its commands to ``app``)."""
    for name in COMMANDS:
        import_module(f"addp_agent.cli.{name}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input (a user error, or an option click cannot parse) becomes one line on stderr and
    exit code 2."""
    import typer

    from addp_agent.cli.app import app
    from addp_agent.cli.options import refuse_non_finite

    _register()
    command = refuse_non_finite(typer.main.get_command(app))
    try:
        code = command.main(args=argv, standalone_mode=False)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.TyperException as error:  # usage errors: unknown option, missing argument, a value of a wrong type
        if type(error).__name__ == "NoArgsIsHelpError":  # `addp` alone: the help
            error.show()  # type: ignore[attr-defined]
            raise SystemExit(error.exit_code) from None
        context = getattr(error, "ctx", None)
        hint = f" (see `{context.command_path} --help`)" if context is not None else ""
        print(f"error: {' '.join(error.format_message().split())}{hint}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
