"""`addp train`: the ADDP recipe (timestep sampling, diffusion-tailored augmentation) on any RIS source."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli import app


@app.command("train")
def train_command(
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints/, log.jsonl, model/ (EMA pipeline)."),
    data: str = typer.Option("shapes", help="'shapes' or scenes-gen:N:SEED:SIZE[:PRESET[:MODE]] (generated in "
                                            "memory) or cris:ROOT:DATASET, refer:ROOT:DATASET:SPLITBY, shapes:DIR."),
    n_train: int = typer.Option(50_000, help="Training samples (generated, or the first N of a source)."),
    data_seed: int = typer.Option(0, help="Shapes-Ref seed (val/test are disjoint seed streams)."),
    init_from: str = typer.Option(None, help="Fine-tune this pipeline (path or hub id) instead of a new model."),
    model_config: Path = typer.Option(None, help="JSON of a new pixel model's PixelModelConfig (default: built-in)."),
    steps: int = typer.Option(10_000),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(3e-4),
    warmup_steps: int = typer.Option(200, help="Linear lr warm-up steps."),
    lr_schedule: str = typer.Option("constant", help="constant | cosine (to --min-lr-ratio × lr)."),
    min_lr_ratio: float = typer.Option(0.1, help="Final lr of the cosine schedule, relative to --lr."),
    max_minutes: float = typer.Option(None, help="Time budget: stop (checkpoint + export) after this many minutes; "
                                                 "the cosine decays over steps or time, whichever ends first."),
    mixed_precision: str = typer.Option("no", help="no | bf16 | fp16 (autocast; fp32 master weights)."),
    data_cache: Path = typer.Option(None, help="Keep generated Shapes-Ref in this file and reuse it."),
    data_workers: int = typer.Option(0, help="Processes generating Shapes-Ref (0: automatic)."),
    data_device: str = typer.Option("auto", help="auto: keep the training set, augmentation and noise on the GPU "
                                                 "when it fits (< 8 GiB) | cpu: batches are built on the CPU."),
    timesteps: str = typer.Option("ris", help="uniform | ris | depth | analytic | estimated"),
    timesteps_file: Path = typer.Option(None, help="c_t file for --timesteps estimated (addp analyze-timesteps)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Diffusion-tailored GT augmentation."),
    paint_weight: float = typer.Option(1.0, help="Loss weight on the referent's pixels (1 = the paper's MSE)."),
    parameterization: str = typer.Option("sample", help="sample (x₀, the official RIS code) | epsilon"),
    val_every: int = typer.Option(1000),
    val_n: int = typer.Option(128),
    val_steps: int = typer.Option(10),
    checkpoint_every: int = typer.Option(1000),
    log_every: int = typer.Option(50, help="Steps between log.jsonl rows (loss, lr, steps/s)."),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train or fine-tune an InstructPix2Pix-format model with the ADDP recipe (resumes from --out)."""
    from pydantic import ValidationError

    from addp_agent.errors import UserError
    from addp_agent.train.loop import TrainConfig, train

    try:
        model = _model_config(model_config) if model_config else {}
        config = TrainConfig(out=out, data=data, n_train=n_train, data_seed=data_seed, init_from=init_from, **model,
                             steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                             lr_schedule=lr_schedule, min_lr_ratio=min_lr_ratio, max_minutes=max_minutes,
                             mixed_precision=mixed_precision, data_cache=data_cache, data_workers=data_workers,
                             data_device=data_device,
                             timesteps=timesteps,
                             timesteps_file=timesteps_file, augment=augment, paint_weight=paint_weight,
                             parameterization=parameterization,
                             val_every=val_every, val_n=val_n, val_steps=val_steps,
                             checkpoint_every=checkpoint_every, log_every=log_every, seed=seed)
    except ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: {first['msg']}") from None
    folder = train(config, progress=not quiet)
    typer.echo(f"model saved to {folder}")


def _model_config(path: Path) -> dict:
    import json

    from addp_agent.errors import UserError

    try:
        return {"model": json.loads(path.read_text())}
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"--model-config {path}: cannot read a JSON model config ({error})") from None
