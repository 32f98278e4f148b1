"""`addp effects`: the ADDP-effects study (four variants at an equal budget) and its results page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_error, config_options
from addp_agent.errors import UserError
from addp_agent.train.effects import EffectsConfig


@app.command("effects")
@config_options(EffectsConfig)
def effects_command(
    options: dict[str, Any],
    doc: Path = typer.Option(None, "--doc", help="Write this results page (e.g. docs/results.md)."),
    img_dir: Path = typer.Option(Path("docs/img"), "--img-dir", help="Where the page's PNG plots go."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads."),
    progress: bool = typer.Option(False, "--progress", help="Show training progress bars."),
    variant: list[str] = typer.Option(None, "--variant", help="Train and score only this variant (repeatable); "
                                                              "the page needs all four."),
) -> None:
    """Train (or reuse) and score the baseline, contribution-aware t, augmentation and both on Shapes-Ref."""
    import torch

    from addp_agent.train.effects import run_effects
    from addp_agent.train.effects_report import write_report

    if doc is not None and variant:
        raise UserError("--doc needs all four variants: run once more without --variant")
    config = build_config(EffectsConfig, options)
    if threads:
        torch.set_num_threads(threads)
    _quiet_libraries()
    try:
        results = run_effects(config, progress=progress, only=variant or None)
    except ValidationError as error:  # a variant's TrainConfig; all are checked before anything is written
        raise config_error(error) from None
    if doc is not None:
        write_report(config, results, doc, img_dir)


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
