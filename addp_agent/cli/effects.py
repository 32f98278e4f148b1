"""`addp effects`: the ADDP-effects study (four variants × seeds at equal steps, sampler chosen on val) and its
results page."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_error, config_options
from addp_agent.effects.config import EffectsConfig
from addp_agent.errors import UserError


@app.command("effects")
@config_options(EffectsConfig)
def effects_command(
    options: dict[str, Any],
    variant: list[str] = typer.Option(None, "--variant", help="Run only this variant (repeatable): baseline, "
                                                              "timesteps, augment, both."),
    seed_index: list[int] = typer.Option(None, "--seed-index", help="Run only this seed index (repeatable), "
                                                                    "0 … seeds − 1."),
    doc: Path = typer.Option(None, "--doc", help="Write the results page here (e.g. docs/effects-ris.md)."),
    img_dir: Path = typer.Option(Path("docs/img"), "--img-dir", help="Where the page's PNG plots go."),
    artifacts: Path = typer.Option(None, "--artifacts", help="Where effects.json and the training logs are copied "
                                                             "(default: <doc folder>/effects/<task>)."),
    note: str = typer.Option(None, "--note", help="A line put at the top of the page (e.g. the study's scale)."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads."),
    progress: bool = typer.Option(False, "--progress", help="Show training progress bars."),
) -> None:
    """Train (or reuse) baseline, contribution-aware timesteps, augmentation and both, for several seeds at equal
    steps; choose each run's sampler on val; score it on test; with --doc, write the page."""
    from addp_agent.effects.report import write_report
    from addp_agent.effects.study import plan, run_study

    if doc is not None and (variant or seed_index):
        raise UserError("--doc needs every variant and seed: run once more without --variant / --seed-index")
    if note is not None and doc is None:
        raise UserError("--note goes on the page: give --doc too")
    cpus = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= cpus:
        raise UserError(f"--threads must be 1 … {cpus} (this machine's CPUs), got {threads}")
    from addp_agent.outputs_io import check_output_file, check_output_folder

    if doc is not None:  # the page is written after the study: where it goes is checked before
        check_output_file(doc, "--doc")
        check_output_folder(img_dir, flag="--img-dir")
        if artifacts is not None:
            check_output_folder(artifacts, flag="--artifacts")
    config = build_config(EffectsConfig, options)
    check_output_folder(config.folder)  # a study folder is resumed, so it may hold an earlier study's runs
    plan(config, variant or None, seed_index or None)  # bad options stop here, before torch loads
    import torch

    if threads:
        torch.set_num_threads(threads)
    _quiet_libraries()
    try:
        results = run_study(config, variant or None, seed_index or None, progress=progress)
    except ValidationError as error:  # a run's training config; all are checked before anything is written
        raise config_error(error) from None
    if doc is not None:
        write_report(config, results, doc, img_dir, artifacts, note)


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()
