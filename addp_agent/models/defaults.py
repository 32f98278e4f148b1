"""A model folder's own defaults (``model_index.json``) and scheduler, checked when it loads.

A hand-edited or broken folder (``"default_guidance_scale": "abc"``, a scheduler with ``prediction_type: "bogus"``)
is refused at load with one line naming the field, instead of failing deep inside the first denoising step. The
bounds are the ones every user-set value obeys (:mod:`addp_agent.limits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from addp_agent.errors import ModelLoadError, validation_message
from addp_agent.limits import MAX_RESOLUTION, CorrectionMode, Scale, Steps

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
Pixels = Annotated[int, Field(strict=True, ge=0, le=MAX_RESOLUTION)]  # 0: derived (see each field)


class RISDefaults(BaseModel):
    """The segmentation pipeline's defaults in ``model_index.json`` (absent or null: the stock ones)."""

    model_config = ConfigDict(extra="ignore")

    default_num_inference_steps: Steps | None = None
    default_guidance_scale: Scale | None = None
    default_image_guidance_scale: Scale | None = None
    default_correction_scale: Scale = 1.0
    default_correction_mode: CorrectionMode = "additive"
    default_correction_steps: Steps | None = None
    resolution: Pixels | None = None  # 0 or null: the UNet's


class DepthDefaults(BaseModel):
    """The depth pipeline's defaults; a processing resolution of 0 means the input's own size (Marigold's rule)."""

    model_config = ConfigDict(extra="ignore")

    default_denoising_steps: Steps | None = None
    default_processing_resolution: Pixels | None = None


class SchedulerDefaults(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prediction_type: Literal[PREDICTION_TYPES] = "epsilon"  # type: ignore[valid-type]
    num_train_timesteps: Annotated[int, Field(strict=True, ge=1)] = 1000


def check_defaults(source: Any, pipeline_config: Mapping[str, Any], scheduler_config: Mapping[str, Any],
                   depth: bool = False) -> None:
    """Raise :class:`ModelLoadError` naming ``source`` and the bad field when a default or the scheduler cannot
    run."""
    checks = ((DepthDefaults if depth else RISDefaults, pipeline_config, "model_index.json"),
              (SchedulerDefaults, scheduler_config, "scheduler/scheduler_config.json"))
    for schema, values, where in checks:
        try:
            schema.model_validate(dict(values))
        except ValidationError as error:
            raise ModelLoadError(f"{source}: {where} has a value the engine cannot run with "
                                 f"({validation_message(error)})") from None
