"""The one set of bounds on user-set numbers and texts, as pydantic-annotated types.

The command line (through the configs :mod:`addp_agent.cli.options` turns into flags), the tool schemas
(:mod:`addp_agent.tools.schemas`, hence OpenAI, LangChain and MCP) and the engine's own input check
(:func:`check_sampler_settings`) all use these types, so an input is accepted or refused the same way everywhere.
Integers are strict (JSON ``"5"`` and ``true`` are not 5); floats must be finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from addp_agent.errors import UserError, validation_message

MAX_STEPS = 1000  # the most denoising steps any scheduler here can take (1000 training timesteps)
MAX_SEED = 2**31 - 1
MAX_SCALE = 100.0  # guidance and correction scales; the models use 1–10
MAX_LR = 1.0  # AdamW's step is about lr per parameter: above this training only diverges (≥ 1e39 overflows)
MAX_RED_DISTANCE = round(255.0 * math.sqrt(3.0), 2)  # the farthest an RGB pixel can be from pure red
DEFAULT_THRESHOLD = 50.0  # official evaluate.py: RGB Euclidean distance to (255, 0, 0) < 50
MAX_EXPRESSION_CHARS = 300
MAX_CORRECTION_CHARS = 200
MAX_CORRECTIONS = 8
MAX_BATCH_WAIT_MS = 60_000.0  # a batch's collection window; a longer one stalls every lone request (and past
# threading.TIMEOUT_MAX the batcher's worker thread dies)
MAX_BATCH = 256  # requests one dynamic batch may hold (a larger one only risks running out of memory at once)
MAX_ENSEMBLE = 64  # depth ensemble members of one command-line call (the tools allow fewer)
MAX_RESOLUTION = 4096  # longer side a depth model may process at
MAX_GENERATED = 10_000_000  # samples of one generated split (ids are split × 10⁷ + index)
MAX_ROUNDS = 20  # rounds of the correction loop (each is a full denoising run; the models use 2–5)

Steps = Annotated[int, Field(strict=True, ge=1, le=MAX_STEPS)]
Seed = Annotated[int, Field(strict=True, ge=0, le=MAX_SEED)]
Scale = Annotated[float, Field(ge=0.0, le=MAX_SCALE, allow_inf_nan=False)]
Threshold = Annotated[float, Field(gt=0.0, le=MAX_RED_DISTANCE, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
LearningRate = Annotated[float, Field(gt=0.0, le=MAX_LR, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, ge=1)]
Rounds = Annotated[int, Field(strict=True, ge=1, le=MAX_ROUNDS)]
CorrectionMode = Literal["additive", "replace", "paper"]
Expression = Annotated[str, Field(min_length=1, max_length=MAX_EXPRESSION_CHARS)]
Correction = Annotated[str, Field(min_length=1, max_length=MAX_CORRECTION_CHARS)]
Corrections = Annotated[list[Correction], Field(max_length=MAX_CORRECTIONS)]


class SamplerSettings(BaseModel):
    """A denoising call's settings, every default filled in (what ``ADDPPipeline.check_inputs`` validates)."""

    model_config = ConfigDict(extra="ignore")

    num_inference_steps: Steps
    guidance_scale: Scale
    image_guidance_scale: Scale
    correction_scale: Scale
    correction_mode: CorrectionMode


def check_sampler_settings(settings: Mapping[str, Any]) -> None:
    """:class:`UserError` naming every setting out of bounds (NaN, negative, too many steps …)."""
    try:
        SamplerSettings.model_validate(dict(settings))
    except ValidationError as error:
        raise UserError(validation_message(error)) from None


_ADAPTERS: dict[Any, TypeAdapter] = {}


def check_value(kind: Any, value: Any, name: str) -> Any:
    """``value`` validated as ``kind`` (one of the types above); a :class:`UserError` ``name: problem`` if not."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS.setdefault(kind, TypeAdapter(kind))
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        problem = error.errors()[0]
        where = "".join(f"[{p}]" for p in problem["loc"])
        raise UserError(f"{name}{where}: {problem['msg']}, got {_shown(problem.get('input', value))}") from None


def check_threshold(threshold: float) -> None:
    """:class:`UserError` unless ``0 < threshold ≤`` :data:`MAX_RED_DISTANCE` (and finite)."""
    check_value(Threshold, threshold, "threshold")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} of length {len(value)}" if hasattr(value, "__len__") \
        else text[:40] + "…"
