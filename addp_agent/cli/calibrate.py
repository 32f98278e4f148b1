"""`addp calibrate --model DIR --data SPEC`: fit when a target counts as found, into DIR/calibration.json."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli.app import app


@app.command("calibrate")
def calibrate_command(
    model: Path = typer.Option(..., "--model", help="Model folder; calibration.json is written into it."),
    data: str = typer.Option(..., "--data", help="Validation source with no-target samples, e.g. "
                                                 "scenes-gen:400:1:128:default:generalized."),
    split: str = typer.Option("val", "--split"),
    limit: int = typer.Option(None, "--limit", help="Calibrate on the first N samples (default: all)."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
) -> None:
    """Fit the found rule (paint statistic and threshold with the best ½·(N-acc + T-acc)) on validation data."""
    from addp_agent.errors import UserError
    from addp_agent.eval.calibrate import fit_found_rule, write_found_rule
    from addp_agent.models.registry import load_pipeline

    if not model.is_dir():
        raise UserError(f"--model {model}: not a model folder (calibration.json is written into it)")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be ≥ 1, got {limit}")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be ≥ 1, got {steps}")
    pipe = load_pipeline(str(model), device=device, progress=False)
    pipe.set_progress_bar_config(disable=True)
    found = fit_found_rule(pipe, data, split, limit, batch_size, seed, steps)
    path = write_found_rule(model, found)
    for fit in found.candidates:
        typer.echo(f"  {fit.statistic} ≥ {fit.threshold:.6g}: N-acc {fit.n_acc:.3f}, T-acc {fit.t_acc:.3f}")
    typer.echo(f"found rule: {found.statistic} ≥ {found.threshold:.6g} on {found.n} samples ({found.n_no_target} "
               f"without a target): N-acc {found.n_acc:.3f}, T-acc {found.t_acc:.3f} (uncalibrated: N-acc "
               f"{found.uncalibrated_n_acc:.3f}, T-acc {found.uncalibrated_t_acc:.3f}) → {path}")
