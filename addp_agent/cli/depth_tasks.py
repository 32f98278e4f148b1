"""`addp train --task depth` and `addp eval --task depth`: their own commands, reached through cli/tasks.py.

Options come from the pydantic configs (:class:`DepthTrainConfig`, :class:`DepthEvalConfig`) like every `addp`
command; this module is imported only when ``--task depth`` is given, so its heavier imports cost nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from addp_agent.cli.options import build_config, config_options, model_config_flag
from addp_agent.errors import UserError
from addp_agent.eval.depth import DepthEvalConfig
from addp_agent.train.depth_loop import DepthTrainConfig

train_depth_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
eval_depth_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@train_depth_app.command()
@config_options(DepthTrainConfig, exclude=("model",))
def train_depth_command(
    options: dict[str, Any],
    model_config: Path = typer.Option(None, help="JSON of a new model's PixelDepthModelConfig (default: built-in)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a depth model with the ADDP recipe (resumes from --out)."""
    from addp_agent.extras import require_extra
    from addp_agent.outputs_io import check_run_folder
    from addp_agent.train.depth_loop import train_depth

    require_extra("train", "accelerate")
    if model_config is not None:
        try:
            options["model"] = json.loads(model_config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:  # unreadable, not UTF-8, malformed JSON
            raise UserError(f"--model-config {model_config}: cannot read a JSON model config ({error})") from None
    config = build_config(DepthTrainConfig, options, model_config_flag(model_config))
    check_run_folder(config.out, "train_config.json", "addp train --task depth")  # before any data or model work
    folder = train_depth(config, progress=not quiet)
    typer.echo(f"model saved to {folder}")


@eval_depth_app.command()
@config_options(DepthEvalConfig)
def eval_depth_command(
    options: dict[str, Any],
    out: Path = typer.Option(..., "--out", help="Output folder."),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Evaluate a depth model (Marigold protocol); writes metrics.json, samples.jsonl, report.md and plots."""
    from addp_agent.data.depth_sources import check_depth_spec
    from addp_agent.devices import check_device
    from addp_agent.eval.depth import check_out, evaluate_depth_run
    from addp_agent.extras import require_extra
    from addp_agent.models.registry import load_depth_pipeline

    require_extra("eval", "matplotlib")
    config = build_config(DepthEvalConfig, options)
    check_device(device)
    check_out(out)
    check_depth_spec(config.data, config.split)  # bad specs and missing folders fail before the model loads
    pipe = load_depth_pipeline(config.model, device=device, progress=not quiet)
    pipe.set_progress_bar_config(disable=True)
    document = evaluate_depth_run(config, pipe, out, progress=not quiet)
    if not quiet:
        typer.echo(f"{document['n']} samples ({document['skipped']['total']} skipped): AbsRel "
                   f"{100 * document['abs_rel']:.2f} %, δ1 {100 * document['delta1']:.2f} % → {out}")
    if document["domain"]["out_of_domain"]:
        typer.echo(f"warning: {document['domain']['out_of_domain']} of {document['n']} images look outside the "
                   "model's domain (metrics.json: domain)", err=True)
