"""`addp bundle SOURCE`: make a trained pipeline the bundled default (fp16), with new inference defaults."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli.app import app


@app.command("bundle")
def bundle_command(
    source: Path = typer.Argument(..., help="A trained pipeline folder, e.g. runs/default/model."),
    target: Path = typer.Option(None, "--target", help="Where to write it (default: the bundled model's folder for "
                                "the task)."),
    task: str = typer.Option("ris", "--task", help="ris | depth (depth takes --steps only)."),
    steps: int = typer.Option(None, "--steps", help="Default denoising steps (default: keep the model's)."),
    guidance_scale: float = typer.Option(None, "--guidance-scale", help="Default text guidance."),
    image_guidance_scale: float = typer.Option(None, "--image-guidance-scale", help="Default image guidance."),
    timestep_spacing: str = typer.Option(None, "--timestep-spacing", help="leading | trailing | linspace (trailing "
                                         "starts few-step sampling at t = T − 1)."),
    correction_steps: int = typer.Option(None, "--correction-steps", help="Default steps of corrected rounds, "
                                         "restarted (default: keep the model's)."),
) -> None:
    """Copy a trained pipeline into the package as the bundled default (fp16 safetensors, loaded as fp32 on CPU)."""
    from addp_agent.errors import UserError

    if task == "depth":
        if any(v is not None for v in (guidance_scale, image_guidance_scale, timestep_spacing, correction_steps)):
            raise UserError("--task depth takes --steps only (a depth model has no guidance; its spacing is trailing)")
        from addp_agent.models.depth_bundle import bundle_depth
        from addp_agent.models.registry import DEFAULT_DEPTH_MODEL_DIR

        target = target or DEFAULT_DEPTH_MODEL_DIR
        size = bundle_depth(source, target, steps)
        typer.echo(f"bundled {source} → {target} ({size / 2**20:.1f} MiB)")
        return
    if task != "ris":
        raise UserError(f"--task must be ris or depth, got {task!r}")
    from addp_agent.models.bundle import bundle
    from addp_agent.models.registry import DEFAULT_MODEL_DIR

    target = target or DEFAULT_MODEL_DIR
    size = bundle(source, target, steps, guidance_scale, image_guidance_scale, timestep_spacing, correction_steps)
    typer.echo(f"bundled {source} → {target} ({size / 2**20:.1f} MiB)")
