"""`addp train --task depth` and `addp eval --task depth`: their own commands, reached through cli/tasks.py."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from addp_agent.errors import UserError

train_depth_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
eval_depth_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _validated(config_class, **values):
    """A pydantic config; its first validation error becomes one user-facing line."""
    from pydantic import ValidationError

    try:
        return config_class(**values)
    except ValidationError as error:
        first = error.errors()[0]
        raise UserError(f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: {first['msg']}") from None


@train_depth_app.command()
def train_depth_command(
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints/, log.jsonl, model/ (EMA pipeline)."),
    data: str = typer.Option("scenes-gen:20000:0:128", help="Depth source: scenes-gen:N:SEED:SIZE[:PRESET], "
                             "synthetic:N[:SEED[:SIZE]], depthdir:DIR, nyu:DIR, kitti:DIR."),
    split: str = typer.Option("train"),
    n_train: int = typer.Option(None, help="Use the first N samples of the source."),
    val_data: str = typer.Option(None, help="Validation source (default: --data's validation split)."),
    val_split: str = typer.Option("val"),
    model_config: Path = typer.Option(None, help="JSON of a new model's PixelDepthModelConfig (default: built-in)."),
    init_from: str = typer.Option(None, help="Fine-tune this depth pipeline (folder or cached hub id)."),
    steps: int = typer.Option(20_000),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(3e-4),
    weight_decay: float = typer.Option(1e-2),
    warmup_steps: int = typer.Option(100),
    lr_schedule: str = typer.Option("exponential", help="constant | cosine | exponential (Marigold's, to "
                                                        "--final-lr-ratio × lr)."),
    final_lr_ratio: float = typer.Option(0.01),
    max_minutes: float = typer.Option(None, help="Time budget: stop (checkpoint + export) after this many minutes."),
    mixed_precision: str = typer.Option("no", help="no | bf16 | fp16"),
    timesteps: str = typer.Option("depth", help="uniform | ris | depth | analytic | estimated"),
    timesteps_file: Path = typer.Option(None, help="c_t file for --timesteps estimated (addp eval --task depth)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="ADDP blur augmentation of the GT."),
    augment_intensity: float = typer.Option(10.0, help="σ = intensity·(t+1)/T·U(0,1)."),
    parameterization: str = typer.Option("v_prediction", help="v_prediction (Marigold) | sample (x₀)"),
    multires_noise: bool = typer.Option(True, "--multires-noise/--no-multires-noise",
                                        help="Marigold's annealed multi-resolution noise."),
    hflip: float = typer.Option(0.5, help="Probability of a left-right flip."),
    data_cache: Path = typer.Option(None, help="Keep the prepared training set in this file and reuse it."),
    val_every: int = typer.Option(1000),
    val_n: int = typer.Option(64),
    val_steps: int = typer.Option(None, help="Validation steps (default: the model's)."),
    checkpoint_every: int = typer.Option(1000),
    log_every: int = typer.Option(50),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a depth model with the ADDP recipe (resumes from --out)."""
    from addp_agent.train.depth_loop import DepthTrainConfig, train_depth

    options = {name: value for name, value in locals().items() if name in DepthTrainConfig.model_fields}
    if model_config is not None:
        try:
            options["model"] = json.loads(model_config.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"--model-config {model_config}: cannot read a JSON model config ({error})") from None
    config = _validated(DepthTrainConfig, **options)
    folder = train_depth(config, progress=not quiet)
    typer.echo(f"model saved to {folder}")


@eval_depth_app.command()
def eval_depth_command(
    data: str = typer.Option(..., "--data", help="scenes-gen:N:SEED:SIZE[:PRESET], synthetic:N[:SEED[:SIZE]], "
                                                 "nyu:DIR[:LIST], kitti:DIR[:LIST], depthdir:DIR."),
    split: str = typer.Option("test", "--split"),
    model: str = typer.Option(None, "--model", help="Depth model folder or cached hub id (default: bundled)."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    ensemble: int = typer.Option(1, "--ensemble", help="Ensemble size (Marigold's paper protocol: 10)."),
    processing_resolution: int = typer.Option(None, help="0: native; default: the model's."),
    seed: int = typer.Option(0, "--seed"),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first K samples."),
    alignment_max_res: int = typer.Option(None, help="Fit scale and shift on a downsample (ETH3D: 1024)."),
    curve_n: int = typer.Option(32, help="Samples whose x̂₀ is scored after every step (0: none)."),
    gallery: int = typer.Option(6, help="Samples in gallery.png."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first unreadable sample instead of skipping."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Evaluate a depth model (Marigold protocol); writes metrics.json, samples.jsonl, report.md and plots."""
    from addp_agent.data.depth_sources import check_depth_spec
    from addp_agent.eval.depth import DepthEvalConfig, check_out, evaluate_depth_run
    from addp_agent.models.registry import load_depth_pipeline

    config = _validated(DepthEvalConfig, data=data, split=split, model=model, steps=steps, ensemble=ensemble,
                        processing_resolution=processing_resolution, seed=seed, limit=limit,
                        alignment_max_res=alignment_max_res, curve_n=curve_n, gallery=gallery, strict=strict)
    check_out(out)
    check_depth_spec(data, split)  # bad specs and missing folders fail before the model loads
    pipe = load_depth_pipeline(model, device=device, progress=not quiet)
    pipe.set_progress_bar_config(disable=True)
    document = evaluate_depth_run(config, pipe, out, progress=not quiet)
    if not quiet:
        typer.echo(f"{document['n']} samples ({document['skipped']['total']} skipped): AbsRel "
                   f"{100 * document['abs_rel']:.2f} %, δ1 {100 * document['delta1']:.2f} % → {out}")
