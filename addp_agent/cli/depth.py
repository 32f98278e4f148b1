"""`addp depth IMAGE`: relative depth as depth.npy, depth.png (16-bit), depth_colored.png and result.json."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import typer

from addp_agent.cli.app import app


def check_writable(out: Path) -> None:
    """--out must be a folder, or creatable under the nearest existing parent (checked before any model work)."""
    from addp_agent.errors import UserError

    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    try:  # a real probe: permission bits say yes on read-only and virtual file systems
        os.rmdir(tempfile.mkdtemp(prefix=".addp-probe-", dir=existing))
    except OSError as error:
        raise UserError(f"{out}: cannot write there ({existing}: {error.strerror or error})") from None


@app.command("depth")
def depth_command(
    image: Path = typer.Argument(..., help="Input image (PNG, JPEG, …; any mode is converted to RGB)."),
    model: str = typer.Option(None, "--model", help="Depth model folder or Marigold hub id in your cache "
                                                    "(default: the bundled depth model)."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    ensemble: int = typer.Option(1, "--ensemble", help="Ensemble size; > 1 also writes uncertainty.npy."),
    seed: int = typer.Option(0, "--seed"),
    processing_resolution: int = typer.Option(None, help="Longer side while processing; 0: native "
                                                         "(default: the model's)."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder (created; files replaced atomically)."),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Estimate relative depth (0 = near, 1 = far); writes depth.npy, depth.png, depth_colored.png, result.json."""
    from addp_agent.errors import UserError
    from addp_agent.images import load_image
    from addp_agent.models.registry import load_depth_pipeline

    if steps is not None and steps < 1:
        raise UserError(f"--steps must be ≥ 1, got {steps}")
    if ensemble < 1:
        raise UserError(f"--ensemble must be ≥ 1, got {ensemble}")
    if processing_resolution is not None and processing_resolution < 0:
        raise UserError(f"--processing-resolution must be ≥ 0, got {processing_resolution}")
    check_writable(out)
    rgb = load_image(image)
    start = time.perf_counter()
    pipe = load_depth_pipeline(model, device=device, progress=not quiet)
    load_s = time.perf_counter() - start
    result = pipe.estimate(rgb, num_inference_steps=steps, ensemble_size=ensemble, seed=seed,
                           processing_resolution=processing_resolution, show_progress=not quiet)
    result.timings["load_s"] = load_s
    record = {"image": str(image), "model": model or "bundled-depth", **result.to_json()}
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".addp-", dir=out))
    except OSError as error:
        raise UserError(f"{out}: cannot write there ({error.strerror or error})") from None
    try:
        result.save(staging)
        (staging / "result.json").write_text(json.dumps(record, indent=2))
        for file in staging.iterdir():
            file.replace(out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)
    if not quiet:
        stats = result.stats()
        typer.echo(f"depth {rgb.shape[1]}×{rgb.shape[0]}: median {stats['median']:.3f} (0 = near, 1 = far), "
                   f"{result.timings['total_s']:.2f} s → {out}/depth.npy, depth.png, depth_colored.png, result.json")
