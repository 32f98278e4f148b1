"""Run ``addp`` in process and return its exit code (0 when the command returns without SystemExit)."""

from __future__ import annotations

import addp_agent.cli as cli


def exit_code(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
