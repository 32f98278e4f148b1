"""`addp train`: the ADDP recipe (timestep sampling, diffusion-tailored augmentation) on any RIS source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_options, flag, given_options, model_config_flag
from addp_agent.cli.tasks import TaskDispatchCommand
from addp_agent.train.config import TrainConfig


@app.command("train", cls=TaskDispatchCommand)
@config_options(TrainConfig, exclude=("model",))
def train_command(
    context: typer.Context,
    options: dict[str, Any],
    task: str = typer.Option("ris", "--task", help="ris | depth (depth has its own options: addp train --task depth "
                                                   "--help)."),
    model_config: Path = typer.Option(None, help="JSON of a new pixel model's PixelModelConfig (default: built-in)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train or fine-tune an InstructPix2Pix-format model with the ADDP recipe (resumes from --out).

    --recipe paper-refcoco starts from the paper's RefCOCO settings; flags given override them.
    """
    from addp_agent.extras import require_extra
    from addp_agent.outputs_io import check_run_folder
    from addp_agent.train.loop import train
    from addp_agent.train.recipe import resolve_recipe

    require_extra("train", "accelerate")
    values = resolve_recipe(options, given_options(context, options), name=flag)
    model = _model_config(model_config) if model_config else {}
    config = build_config(TrainConfig, {**values, **model}, model_config_flag(model_config))
    check_run_folder(config.out, "train_config.json", "addp train")  # before any data or model work
    folder = train(config, progress=not quiet)
    typer.echo(f"model saved to {folder}")


def _model_config(path: Path) -> dict:
    import json

    from addp_agent.errors import UserError

    try:
        return {"model": json.loads(path.read_text(encoding="utf-8"))}
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, malformed JSON
        raise UserError(f"--model-config {path}: cannot read a JSON model config ({error})") from None
