"""`addp critic-study`: net gain of the correction loop against the accuracy of a noisy oracle critic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_options
from addp_agent.eval.critic_study_config import CriticStudyConfig


@app.command("critic-study")
@config_options(CriticStudyConfig)
def critic_study_command(
    options: dict[str, Any],
    out: Path = typer.Option(..., "--out", help="Output folder (one evaluation per accuracy; a rerun resumes)."),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Evaluate the loop with the noisy oracle at each accuracy; writes critic_study.json (net gain, worse share,
    measured accuracy, UNet passes per accuracy, break-even accuracy) and critic_study.png."""
    from addp_agent.extras import require_extra

    require_extra("eval")
    from addp_agent.errors import UserError
    from addp_agent.eval.critic_study import folder_for, run_study
    from addp_agent.eval.runner import prepare
    from addp_agent.eval.shard import open_stream
    from addp_agent.models.registry import load_pipeline

    try:
        options["accuracies"] = [float(a) for a in options["accuracies"]]
    except ValueError:
        raise UserError(f"--accuracies takes comma-separated numbers, got {options['accuracies']}") from None
    config = build_config(CriticStudyConfig, options)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    for accuracy in config.accuracies:  # a folder holding another study's run fails here, before any work
        prepare(config.eval_config(accuracy), folder_for(out, accuracy))
    open_stream(config.eval_config(config.accuracies[0]))  # bad specs and missing folders fail before the model
    pipe = load_pipeline(config.model, device=device, progress=not quiet)
    pipe.set_progress_bar_config(disable=True)
    study = run_study(config, out, pipe, progress=not quiet)
    for row in study["rows"]:
        typer.echo(f"accuracy {row['accuracy']:.3f} (measured {row['measured_accuracy'] or 0:.3f}): mIoU "
                   f"{100 * (row['round1_mIoU'] or 0):.2f} → {100 * (row['answer_mIoU'] or 0):.2f} "
                   f"({100 * (row['net_gain'] or 0):+.2f}), worse by > 0.1: {100 * (row['worse_share'] or 0):.1f} %, "
                   f"{row['passes_per_sample'] or 0:.2f} UNet passes per sample")
    even = study["break_even"]
    value = "-" if even["accuracy"] is None else f"{even['accuracy']:.3f}"
    typer.echo(f"break-even accuracy: {value} ({even['note']}) → {out}")
