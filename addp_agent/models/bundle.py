"""Copy a trained pipeline into the package as the bundled default (fp16 safetensors, loaded as fp32 on CPU).

    addp bundle runs/default/model [--steps 2 --guidance-scale 3 --image-guidance-scale 1 --timestep-spacing trailing
                                    --correction-steps 2]

The inference options become the pipeline's defaults (``model_index.json`` and the scheduler config), so every
entry point that loads the bundle without naming them uses the settings the model card reports.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from addp_agent.errors import UserError
from addp_agent.limits import Scale, Steps, check_value
from addp_agent.models.registry import DEFAULT_MODEL_DIR
from addp_agent.outputs_io import check_output_folder, output_set

MAX_BYTES = 30 * 1024 * 1024
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bundle(source: Path, target: Path = DEFAULT_MODEL_DIR, steps: int | None = None,
           guidance_scale: float | None = None, image_guidance_scale: float | None = None,
           timestep_spacing: str | None = None, correction_steps: int | None = None) -> int:
    """Save ``source`` (a pipeline folder) to ``target`` in fp16 with optional new inference defaults; keeps
    the records :func:`copy_records` carries; returns the size."""
    from addp_agent.models.registry import load_pipeline

    for name, value in (("--steps", steps), ("--correction-steps", correction_steps)):
        if value is not None:
            check_value(Steps, value, name)
    for name, scale in (("--guidance-scale", guidance_scale), ("--image-guidance-scale", image_guidance_scale)):
        if scale is not None:
            check_value(Scale, scale, name)
    if any(scale is not None and scale < 1 for scale in (guidance_scale, image_guidance_scale)):
        raise UserError("guidance scales must be ≥ 1 (1 turns that guidance term off)")
    if timestep_spacing is not None and timestep_spacing not in TIMESTEP_SPACINGS:
        raise UserError(f"--timestep-spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, got {timestep_spacing!r}")
    check_target(target, source)
    pipe = load_pipeline(str(source), device="cpu", dtype=torch.float32, progress=False)  # ModelLoadError if bad
    pipe.to(torch.float16)
    defaults = {"default_num_inference_steps": steps, "default_guidance_scale": guidance_scale,
                "default_image_guidance_scale": image_guidance_scale, "default_correction_steps": correction_steps}
    pipe.register_to_config(**{key: value for key, value in defaults.items() if value is not None})
    if timestep_spacing is not None:
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                                         timestep_spacing=timestep_spacing))
    with output_set(target, owns=_any, command="addp bundle", flag="--target") as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
        copy_records(Path(source), target, staging)
        size = folder_bytes(staging)
        if size > MAX_BYTES:
            raise UserError(f"bundled model would be {size / 2**20:.1f} MiB, over the 30 MiB limit")
    return size


def copy_records(source: Path, target: Path, staging: Path) -> None:
    """Carry a model's records into a new bundle: the target's model card (README.md), and the source's
    training.json, calibration.json and training logs (``training_log*.jsonl``), so that re-bundling a folder in
    place loses none of them."""
    if (target / "README.md").is_file():
        shutil.copy2(target / "README.md", staging / "README.md")
    for kept in (source / "training.json", source / "calibration.json", *sorted(source.glob("training_log*.jsonl"))):
        if kept.is_file():
            shutil.copy2(kept, staging / kept.name)


def check_target(target: Path, source: Path | None = None) -> None:
    """``target`` can take a bundle: writable, and new, empty or a pipeline folder (which it replaces whole); and
    neither inside ``source`` nor holding it (replacing it whole would delete the source). The source itself may
    be the target: its defaults are rewritten in place."""
    if source is not None:
        here, there = Path(target).resolve(), Path(source).resolve()
        if here != there and (here.is_relative_to(there) or there.is_relative_to(here)):
            where = "inside" if here.is_relative_to(there) else "holds"
            raise UserError(f"{target}: the --target {where} the source {source} (a bundle replaces its --target "
                            "whole); give a folder outside it")
    check_output_folder(target, _any, "addp bundle", "--target")
    if target.is_dir() and any(target.iterdir()) and not (target / "model_index.json").is_file():
        raise UserError(f"{target}: not a pipeline folder (no model_index.json); give a new or empty --target")


def _any(name: str) -> bool:
    """A pipeline folder is replaced whole (:func:`check_target` makes sure it is one)."""
    return True

