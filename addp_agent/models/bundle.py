"""Copy a trained pipeline into the package as the bundled default (fp16 safetensors, loaded as fp32 on CPU).

    python -m addp_agent.models.bundle runs/default/model [--steps 2 --guidance-scale 3 --image-guidance-scale 1
        --timestep-spacing trailing]

The inference options become the pipeline's defaults (``model_index.json`` and the scheduler config), so every
entry point that loads the bundle without naming them uses the settings the model card reports.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from addp_agent.errors import UserError
from addp_agent.models.registry import DEFAULT_MODEL_DIR

MAX_BYTES = 30 * 1024 * 1024


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bundle(source: Path, target: Path = DEFAULT_MODEL_DIR, steps: int | None = None,
           guidance_scale: float | None = None, image_guidance_scale: float | None = None,
           timestep_spacing: str | None = None) -> int:
    """Save ``source`` (a pipeline folder) to ``target`` in fp16 with optional new inference defaults; keeps
    target's README.md; returns the size."""
    from addp_agent.models.registry import load_pipeline

    if steps is not None and steps < 1:
        raise UserError(f"--steps must be ≥ 1, got {steps}")
    if any(scale is not None and scale < 1 for scale in (guidance_scale, image_guidance_scale)):
        raise UserError("guidance scales must be ≥ 1 (1 turns that guidance term off)")
    pipe = load_pipeline(str(source), device="cpu", dtype=torch.float32, progress=False)  # ModelLoadError if bad
    pipe.to(torch.float16)
    defaults = {"default_num_inference_steps": steps, "default_guidance_scale": guidance_scale,
                "default_image_guidance_scale": image_guidance_scale}
    pipe.register_to_config(**{key: value for key, value in defaults.items() if value is not None})
    if timestep_spacing is not None:
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                                         timestep_spacing=timestep_spacing))
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    pipe.save_pretrained(staging, safe_serialization=True)
    for extra in ("README.md",):
        if (target / extra).exists():
            shutil.copy2(target / extra, staging / extra)
    if (source / "training.json").exists():
        shutil.copy2(source / "training.json", staging / "training.json")
    size = folder_bytes(staging)
    if size > MAX_BYTES:
        shutil.rmtree(staging)
        raise SystemExit(f"bundled model would be {size / 2**20:.1f} MiB, over the 30 MiB limit")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--target", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--steps", type=int, default=None, help="default denoising steps")
    parser.add_argument("--guidance-scale", type=float, default=None, help="default text guidance")
    parser.add_argument("--image-guidance-scale", type=float, default=None, help="default image guidance")
    parser.add_argument("--timestep-spacing", choices=["leading", "trailing", "linspace"], default=None,
                        help="the scheduler's spacing (trailing starts few-step sampling at t = T − 1)")
    args = parser.parse_args()
    try:
        size = bundle(args.source, args.target, args.steps, args.guidance_scale, args.image_guidance_scale,
                      args.timestep_spacing)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"bundled {args.source} → {args.target} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
