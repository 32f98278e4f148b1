"""``--task`` dispatch: ``addp train --task depth …`` and ``addp eval --task depth …`` hand the whole command line
to the task's own command (its own options, defaults and --help) before the RIS command parses anything."""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand

from addp_agent.cli.options import refuse_non_finite

TASKS = ("ris", "depth")
TASK_COMMANDS = {
    ("train", "depth"): "addp_agent.cli.depth_tasks:train_depth_app",
    ("eval", "depth"): "addp_agent.cli.depth_tasks:eval_depth_app",
}


def split_task(args: list[str]) -> tuple[str | None, list[str]]:
    """The value of ``--task X`` / ``--task=X`` (None if absent) and the arguments without it."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--task" and i + 1 < len(args):
            return args[i + 1], args[:i] + args[i + 2 :]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1 :]
    return None, list(args)


class TaskDispatchCommand(TyperCommand):
    """A RIS command that runs another task's command when ``--task`` names one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        task, rest = split_task(args)
        if task is None or task == "ris":
            return super().parse_args(ctx, args)  # the RIS command has a --task option for its --help
        target = TASK_COMMANDS.get((self.name or "", task))
        if target is None:
            raise typer.BadParameter(f"unknown task {task!r}; use one of {', '.join(TASKS)}", ctx=ctx,
                                     param_hint="--task")
        module, attribute = target.split(":")
        command = refuse_non_finite(typer.main.get_command(getattr(importlib.import_module(module), attribute)))
        command.main(args=rest, prog_name=f"{ctx.command_path} --task {task}", standalone_mode=False)
        ctx.exit(0)
