"""`addp segment IMAGE "EXPRESSION"`: one round, written as mask.png, overlay.png, painted.png, result.json."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import typer

from addp_agent.cli.app import app


@app.command("segment")
def segment_command(
    image: Path = typer.Argument(..., help="Input image (PNG, JPEG, …; any mode is converted to RGB)."),
    expression: str = typer.Argument(..., help="Referring expression, e.g. 'the large green circle'."),
    model: str = typer.Option(None, "--model", help="Model folder or hub id (default: the bundled model)."),
    correction: list[str] = typer.Option(None, "--correction", help="Correctional prompt D⁻ (repeatable)."),
    correction_scale: float = typer.Option(None, help="Weight w of each correction (default: the model's)."),
    correction_mode: str = typer.Option(None, help="additive | replace | paper (default: the model's)."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    guidance_scale: float = typer.Option(None, help="Text guidance s_T (default: the model's)."),
    image_guidance_scale: float = typer.Option(None, help="Image guidance s_I (default: the model's)."),
    seed: int = typer.Option(0, "--seed"),
    threshold: float = typer.Option(50.0, help="RGB distance to pure red below which a pixel is mask."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder (created; files replaced atomically)."),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
    dtype: str = typer.Option("auto", help="auto (fp32 on CPU, fp16 on CUDA) | fp32 | fp16 | bf16."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Segment the object an expression refers to; writes mask.png, overlay.png, painted.png and result.json."""
    import torch

    from addp_agent.engine.guidance import CORRECTION_MODES
    from addp_agent.errors import UserError
    from addp_agent.images import load_image
    from addp_agent.models.registry import load_pipeline

    if steps is not None and steps < 1:
        raise UserError(f"--steps must be ≥ 1, got {steps}")
    if correction_mode is not None and correction_mode not in CORRECTION_MODES:
        raise UserError(f"--correction-mode must be one of {', '.join(CORRECTION_MODES)}, got {correction_mode!r}")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    dtypes = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise UserError(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    rgb = load_image(image)
    pipe = load_pipeline(model, device=device, dtype=dtypes[dtype], progress=not quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.segment(rgb, expression, corrections=list(correction or []) or None, num_inference_steps=steps,
                              seed=seed, guidance_scale=guidance_scale, image_guidance_scale=image_guidance_scale,
                              correction_scale=correction_scale, correction_mode=correction_mode,
                              threshold=threshold, show_progress=not quiet)
    for warning in caught:
        if "truncated" in str(warning.message):
            typer.echo(f"warning: {warning.message}", err=True)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".addp-", dir=out))
    try:
        result.save(staging, rgb)
        rule = pipe.found_rule
        record = {"image": str(image), "model": model or "bundled-default", **result.to_json(),
                  "found_rule": None if rule is None else {"statistic": rule.statistic, "threshold": rule.threshold}}
        (staging / "result.json").write_text(json.dumps(record, indent=2))
        for file in staging.iterdir():
            file.replace(out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if result.warning:
        typer.echo(f"warning: {result.warning}", err=True)
    if quiet:
        return
    files = f"{out}/mask.png, overlay.png, result.json"
    if not result.found:
        threshold = "" if pipe.found_rule is None else " above the model's calibrated threshold"
        typer.echo(f"not found: nothing painted{threshold}; the mask is empty → {files}")
        return
    count = len(result.instances)
    typer.echo(f"found: {count} instance{'s' if count != 1 else ''}, {result.area} px "
               f"({100 * result.area_fraction:.1f} %), bbox {result.bbox}, confidence {result.confidence:.2f} "
               f"→ {files}")
