"""Argument and result models of the segmentation tools: the one source of truth for every adapter's schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from addp_agent.limits import Correction, Corrections, Expression, Seed, Steps

MASK_ID_PATTERN = r"^m-[0-9a-f]{12}-r[0-9]{1,3}$"
SERVER_MAX_STEPS = 100  # a tool call's cost bound (the command line allows up to limits.MAX_STEPS)
MaskFormat = Literal["rle", "png", "polygon"]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SegmentArgs(_Args):
    """Segment the object a referring expression names; returns a summary, a mask_id and an overlay image.
    The bundled models only know synthetic worlds (flat Shapes-Ref shapes, rendered Scenes-3D scenes) and cannot
    see photos: on an image outside the model's domain the result carries a warning and its mask means little;
    for photos the server must load a real checkpoint (addp mcp --model PATH_OR_HUB_ID)."""

    image: str = Field(max_length=40_000_000, description=(
        "The image: a file path under a folder the server allows, a data URL (data:image/png;base64,...), plain "
        "base64 image bytes, or an http(s) URL if the server allows URLs."))
    expression: Expression = Field(description=(
        "Referring expression naming the object to segment, e.g. 'the red square left of the circle' (or several "
        "objects, e.g. 'the two cubes'); the result says when nothing in the image matches."))
    corrections: Corrections | None = Field(default=None, description=(
        "Correctional (negative) prompts from the start: things the mask must not cover, e.g. "
        "['the child on her lap']. null for none."))
    max_rounds: Annotated[int, Field(strict=True, ge=1, le=5)] | None = Field(default=None, description=(
        "Rounds with the server's critic (critic='vlm' or 'self'); default 1."))
    critic: Literal["none", "vlm", "self"] | None = Field(default=None, description=(
        "'self': the model checks itself, reading no ground truth and calling no other service (its readings "
        "under other noise seeds must agree; a reading they do not share is named in the model's own words and "
        "corrected); 'vlm': the server's vision-language critic reviews each round and adds corrections; 'none' "
        "(default): one round, you review it and call refine."))
    steps: Annotated[Steps, Field(le=SERVER_MAX_STEPS)] | None = Field(default=None, description=(
        "Denoising steps; null for the model default."))
    seed: Seed | None = Field(default=None, description="Random seed; null for 0.")


class RefineArgs(_Args):
    """Run one more round on a mask, adding a correctional prompt naming what was wrongly segmented."""

    mask_id: str = Field(pattern=MASK_ID_PATTERN, description="mask_id returned by segment or refine.")
    correction: Correction = Field(description=(
        "What the mask wrongly covers or what may confuse it, as a short noun phrase, e.g. 'the blue circle'. "
        "Never the target itself."))


class GetMaskArgs(_Args):
    """Return a mask as COCO RLE, a PNG (base64) or polygons."""

    mask_id: str = Field(pattern=MASK_ID_PATTERN, description="mask_id returned by segment or refine.")
    format: MaskFormat | None = Field(default=None, description=(
        "'rle' (COCO RLE, default), 'png' (base64 0/255 PNG) or 'polygon' (COCO polygons, lossy)."))


class TrajectoryArgs(_Args):
    """Return the intermediate masks the denoiser predicted along the way for a mask."""

    mask_id: str = Field(pattern=MASK_ID_PATTERN, description="mask_id returned by segment or refine.")


class RoundSummary(BaseModel):
    round: int
    corrections: list[str]
    found: bool
    area_percent: float
    confidence: float
    verdict: str | None = None
    problem: str | None = None


class InstanceSummary(BaseModel):
    """One connected region of the mask (one of several targets)."""

    bbox: list[int] = Field(description="[x, y, width, height] in pixels")
    area_percent: float = Field(description="region area in percent of the image")


class SegmentResult(BaseModel):
    """What segment and refine return (the overlay image travels beside it)."""

    mask_id: str
    expression: str
    width: int
    height: int
    found: bool = Field(description="false when the expression's target was not found in the image (nothing "
                                    "painted); the mask is then empty")
    area_percent: float = Field(description="mask area in percent of the image")
    bbox: list[int] = Field(description="[x, y, width, height] in pixels; zeros for an empty mask")
    instance_count: int = Field(description="separate regions in the mask: 0 when not found, more than 1 when the "
                                            "expression names several objects")
    instances: list[InstanceSummary] = Field(description="each region's bbox and area, largest first")
    confidence: float = Field(description="probability that the mask is right (IoU ≥ 0.5), calibrated on the model's "
                                          "validation data when the model has a confidence map; else the decoder's "
                                          "score; 0 to 1, meaningful only inside the model's domain")
    domain: str = Field(description="the model's domain: synthetic-shapes, synthetic-scenes3d, …, or open (a "
                                    "real checkpoint: not checked)")
    in_domain: bool | None = Field(description="false when the image looks outside the model's domain; null when "
                                               "not checked")
    domain_score: float | None = Field(description="out-of-domain score; above 1 is outside the domain")
    warning: str | None = Field(description="what to tell the user before relying on this result (an image "
                                            "outside the model's domain); null when nothing is wrong")
    rounds: int
    corrections: list[str]
    stop_reason: str
    history: list[RoundSummary]


class MaskResult(BaseModel):
    mask_id: str
    format: MaskFormat
    width: int
    height: int
    rle: dict[str, Any] | None = None
    png_base64: str | None = None
    polygons: list[list[float]] | None = None


class TrajectoryStep(BaseModel):
    step: int
    timestep: int
    area_percent: float
    confidence: float
    rle: dict[str, Any]


class TrajectoryResult(BaseModel):
    mask_id: str
    num_inference_steps: int
    points: list[TrajectoryStep]


class ToolError(BaseModel):
    """Every tool failure: a code the caller can branch on and a message saying what to do."""

    error: Literal["invalid_arguments", "unknown_tool", "not_found", "refused", "bad_input", "critic_unavailable",
                   "model_unavailable", "internal"]
    message: str
