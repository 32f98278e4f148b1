"""`addp segment IMAGE "EXPRESSION"`: one round, written as mask.png, overlay.png, painted.png, result.json."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_options
from addp_agent.limits import (
    DEFAULT_THRESHOLD,
    CorrectionMode,
    Corrections,
    Expression,
    Scale,
    Seed,
    Steps,
    Threshold,
    check_value,
)

SEGMENT_FILES = ("mask.png", "overlay.png", "painted.png", "result.json")


class SegmentOptions(BaseModel):
    """The sampler and decoding options of `addp segment` (bounds from :mod:`addp_agent.limits`, as in the tools)."""

    model_config = ConfigDict(extra="forbid")

    correction: Corrections | None = Field(None, description="Correctional prompt D⁻ (repeatable).")
    correction_scale: Scale | None = Field(None, description="Weight w of each correction (default: the model's).")
    correction_mode: CorrectionMode | None = Field(None, description="Default: the model's.")
    steps: Steps | None = Field(None, description="Denoising steps (default: the model's).")
    guidance_scale: Scale | None = Field(None, description="Text guidance s_T (default: the model's).")
    image_guidance_scale: Scale | None = Field(None, description="Image guidance s_I (default: the model's).")
    seed: Seed = 0
    threshold: Threshold = Field(DEFAULT_THRESHOLD, description="RGB distance to pure red below which a pixel is "
                                                                "mask.")
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: fp32 on CPU, fp16 on CUDA.")


@app.command("segment")
@config_options(SegmentOptions)
def segment_command(
    options: dict[str, Any],
    image: Path = typer.Argument(..., help="Input image (PNG, JPEG, …; any mode is converted to RGB)."),
    expression: str = typer.Argument(..., help="Referring expression, e.g. 'the large green circle'."),
    model: str = typer.Option(None, "--model", help="Model folder, .ckpt/.safetensors file, hub id "
                              "or bundled name, e.g. scenes3d-ris-small (default: shapes-ref-small)."),
    correction: list[str] = typer.Option(None, "--correction", help="Correctional prompt D⁻ (repeatable)."),
    out: Path = typer.Option(Path("out"), "--out", help="Output folder (its files are replaced together)."),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Segment the object an expression refers to; writes mask.png, overlay.png, painted.png and result.json."""
    import torch

    from addp_agent.devices import check_device
    from addp_agent.images import load_image
    from addp_agent.models.registry import load_pipeline
    from addp_agent.outputs_io import check_output_folder, output_set, write_file
    from addp_agent.text import clean_text

    expression = check_value(Expression, clean_text(expression), "EXPRESSION")
    corrections = [clean_text(c, "--correction") for c in correction or []]
    settings = build_config(SegmentOptions, {**options, "correction": corrections or None})
    check_device(device)
    check_output_folder(out, SEGMENT_FILES, "addp segment")
    rgb = load_image(image)
    dtypes = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    pipe = load_pipeline(model, device=device, dtype=dtypes[settings.dtype], progress=not quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.segment(rgb, expression, corrections=settings.correction, num_inference_steps=settings.steps,
                              seed=settings.seed, guidance_scale=settings.guidance_scale,
                              image_guidance_scale=settings.image_guidance_scale,
                              correction_scale=settings.correction_scale, correction_mode=settings.correction_mode,
                              threshold=settings.threshold, show_progress=not quiet)
    for warning in caught:
        if "truncated" in str(warning.message):
            typer.echo(f"warning: {warning.message}", err=True)
    record = {"image": str(image), "model": model or "bundled-default", **result.to_json()}
    with output_set(out, owns=SEGMENT_FILES, command="addp segment") as staging:
        result.save(staging, rgb)
        rule = pipe.found_rule
        record["found_rule"] = None if rule is None else {"statistic": rule.statistic, "threshold": rule.threshold}
        write_file(staging / "result.json", json.dumps(record, indent=2))
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
