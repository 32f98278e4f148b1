"""`addp depth IMAGE`: relative depth as depth.npy, depth.png (16-bit), depth_colored.png and result.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_options
from addp_agent.limits import MAX_ENSEMBLE, MAX_RESOLUTION, Seed, Steps

DEPTH_FILES = ("depth.npy", "depth.png", "depth_colored.png", "uncertainty.npy", "result.json")


class DepthOptions(BaseModel):
    """The sampler options of `addp depth` (bounds from :mod:`addp_agent.limits`)."""

    model_config = ConfigDict(extra="forbid")

    steps: Steps | None = Field(None, description="Denoising steps (default: the model's).")
    ensemble: Annotated[int, Field(strict=True, ge=1, le=MAX_ENSEMBLE)] = Field(
        1, description="Ensemble size; > 1 also writes uncertainty.npy.")
    seed: Seed = 0
    processing_resolution: Annotated[int, Field(strict=True, ge=0, le=MAX_RESOLUTION)] | None = Field(
        None, description="Longer side while processing; 0: native (default: the model's).")


@app.command("depth")
@config_options(DepthOptions)
def depth_command(
    options: dict[str, Any],
    image: Path = typer.Argument(..., help="Input image (PNG, JPEG, …; any mode is converted to RGB)."),
    model: str = typer.Option(None, "--model", help="Depth model folder or Marigold hub id in your cache "
                                                    "(default: the bundled depth model)."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder (its files are replaced together)."),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Estimate relative depth (0 = near, 1 = far); writes depth.npy, depth.png, depth_colored.png, result.json."""
    from addp_agent.devices import check_device
    from addp_agent.images import load_image
    from addp_agent.models.registry import load_depth_pipeline
    from addp_agent.outputs_io import check_output_folder, output_set, write_file

    settings = build_config(DepthOptions, options)
    check_device(device)
    check_output_folder(out, DEPTH_FILES, "addp depth")
    rgb = load_image(image)
    start = time.perf_counter()
    pipe = load_depth_pipeline(model, device=device, progress=not quiet)
    load_s = time.perf_counter() - start
    result = pipe.estimate(rgb, num_inference_steps=settings.steps, ensemble_size=settings.ensemble,
                           seed=settings.seed, processing_resolution=settings.processing_resolution,
                           show_progress=not quiet)
    result.timings["load_s"] = load_s
    record = {"image": str(image), "model": model or "bundled-depth", **result.to_json()}
    with output_set(out, owns=DEPTH_FILES, command="addp depth") as staging:
        result.save(staging)
        write_file(staging / "result.json", json.dumps(record, indent=2))
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)
    if not quiet:
        stats = result.stats()
        typer.echo(f"depth {rgb.shape[1]}×{rgb.shape[0]}: median {stats['median']:.3f} (0 = near, 1 = far), "
                   f"{result.timings['total_s']:.2f} s → {out}/depth.npy, depth.png, depth_colored.png, result.json")

