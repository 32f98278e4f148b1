"""Copy a trained depth pipeline into the package as the bundled depth model (fp16 safetensors).

    addp bundle runs/depth/model --task depth [--steps 1]

The scheduler is saved with trailing timestep spacing (few-step sampling starts at t = T − 1) and ``--steps``
becomes ``default_denoising_steps``, so every entry point that loads the bundle without naming them uses the
settings the model card reports.
"""

from __future__ import annotations

from pathlib import Path

import torch

from addp_agent.errors import UserError
from addp_agent.limits import Steps, check_value
from addp_agent.models.bundle import MAX_BYTES, check_target, copy_records, folder_bytes
from addp_agent.models.registry import DEFAULT_DEPTH_MODEL_DIR, load_depth_pipeline
from addp_agent.outputs_io import output_set


def bundle_depth(source: Path, target: Path = DEFAULT_DEPTH_MODEL_DIR, steps: int | None = None) -> int:
    """Save the depth pipeline ``source`` to ``target`` in fp16 with trailing spacing and optional default steps;
    keeps the records :func:`~addp_agent.models.bundle.copy_records` carries; returns the size."""
    if steps is not None:
        check_value(Steps, steps, "--steps")
    check_target(target, source)
    pipe = load_depth_pipeline(str(source), device="cpu", dtype=torch.float32, progress=False,
                               timestep_spacing="trailing")  # ModelLoadError if not a depth pipeline
    pipe.to(torch.float16)
    if steps is not None:
        pipe.register_to_config(default_denoising_steps=steps)
    with output_set(target, owns=lambda name: True, command="addp bundle", flag="--target") as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
        copy_records(Path(source), target, staging)
        size = folder_bytes(staging)
        if size > MAX_BYTES:
            raise UserError(f"bundled depth model would be {size / 2**20:.1f} MiB, over the 30 MiB limit")
    return size
