"""Run ``addp`` in process: its exit code, and its captured output."""

from __future__ import annotations

from typing import Any

import pytest

import addp_agent.cli as cli


def exit_code(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def run_cli(argv: list[str], capsys: Any) -> tuple[Any, str, str]:
    """(exit code, stdout, stderr) of a command that must end in SystemExit."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
