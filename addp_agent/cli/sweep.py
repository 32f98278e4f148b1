"""`addp sweep`: single-round quality and cost of a model over a grid of sampler settings."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli.app import app
from addp_agent.limits import MAX_SEED


@app.command("sweep")
def sweep_command(
    data: str = typer.Option(..., "--data", help="Data source spec (as for `addp eval`); use a split you do not "
                             "report on, e.g. --split val."),
    split: str = typer.Option("val", "--split"),
    model: str = typer.Option(None, "--model", help="Model folder, .ckpt/.safetensors file, hub id "
                              "or bundled name, e.g. scenes3d-ris-small (default: shapes-ref-small)."),
    steps: str = typer.Option("1,2,4,10", "--steps", help="Comma-separated denoising steps."),
    guidance_scale: str = typer.Option("1,3", "--guidance-scale", help="Comma-separated text guidance scales."),
    image_guidance_scale: str = typer.Option("1,1.5", "--image-guidance-scale",
                                             help="Comma-separated image guidance scales."),
    spacing: str = typer.Option("trailing", "--spacing", help="Comma-separated: leading, trailing, linspace."),
    prefer_fast_within: float = typer.Option(0.0, "--prefer-fast-within",
                                             help="Pick the fewest UNet passes (steps × guidance branches) "
                                                  "within this mIoU (fraction) of the best."),
    limit: int = typer.Option(300, "--limit", help="Samples per grid point."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    out: Path = typer.Option(..., "--out", help="JSON file for every row and the pick."),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
) -> None:
    """Single-round mIoU and cost over a grid of sampler settings; prints the pick and the command to make it a
    bundle's defaults."""
    from itertools import islice

    from rich.console import Console
    from rich.table import Table

    from addp_agent.data.sources import load_source
    from addp_agent.devices import check_device
    from addp_agent.errors import UserError
    from addp_agent.eval.sweep import SweepResult, grid, parse_list, pick, sweep
    from addp_agent.models.registry import load_pipeline
    from addp_agent.outputs_io import check_output_file, write_file

    points = grid(parse_list(steps, int, "--steps"), parse_list(guidance_scale, float, "--guidance-scale"),
                  parse_list(image_guidance_scale, float, "--image-guidance-scale"),
                  parse_list(spacing, str, "--spacing"))
    if limit < 1:
        raise UserError(f"--limit must be ≥ 1, got {limit}")
    if not 0.0 <= prefer_fast_within < 1.0:
        raise UserError(f"--prefer-fast-within must be in [0, 1), got {prefer_fast_within}")
    check_device(device)
    check_output_file(out)
    source = load_source(data, split, skip_bad=True)
    samples = list(islice(iter(source), limit))
    pipe = load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    console = Console(stderr=True)

    def report(row) -> None:
        console.print(f"steps {row.steps} gs {row.guidance_scale:g} igs {row.image_guidance_scale:g} "
                      f"{row.timestep_spacing}: mIoU {100 * row.miou:.2f} % ({row.seconds_per_sample * 1e3:.1f} ms)")

    rows = sweep(pipe, samples, points, batch_size, seed, progress=report)
    best = pick(rows, prefer_fast_within)
    result = SweepResult(model=model or "bundled-default", data=data, split=split, seed=seed, n=len(samples),
                         prefer_fast_within=prefer_fast_within, rows=rows, best=best)
    write_file(out, result.model_dump_json(indent=2))
    table = Table(title=f"{len(samples)} samples of {data} ({split}), single round")
    for column in ("steps", "guidance", "image guidance", "spacing", "UNet passes", "mIoU %", "oIoU %", "P@0.5 %",
                   "ms/sample"):
        table.add_column(column, justify="right")
    for row in sorted(rows, key=lambda r: -r.miou):
        mark = " ←" if row == best else ""
        table.add_row(str(row.steps), f"{row.guidance_scale:g}", f"{row.image_guidance_scale:g}", row.timestep_spacing,
                      str(row.unet_passes), f"{100 * row.miou:.2f}{mark}", f"{100 * row.oiou:.2f}",
                      f"{100 * row.precision_at_50:.1f}", f"{row.seconds_per_sample * 1e3:.1f}")
    Console().print(table)
    typer.echo(f"pick: addp bundle {model or '<model>'} --steps {best.steps} "
               f"--guidance-scale {best.guidance_scale:g} --image-guidance-scale {best.image_guidance_scale:g} "
               f"--timestep-spacing {best.timestep_spacing}  (→ {out})")
