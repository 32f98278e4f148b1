"""Argument and result models of the depth tools (``estimate_depth``, ``depth_of``, ``compare_depth``): the one
source of their schemas in every adapter, like :mod:`addp_agent.tools.schemas` for segmentation.

Depth here is the depth model's relative depth of one image: values in [0, 1], 0 = near, 1 = far, known only up to
scale and shift, so values compare within one image, never across images.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from addp_agent.limits import Seed
from addp_agent.tools.schemas import MASK_ID_PATTERN

DEPTH_ID_PATTERN = r"^d-[0-9a-f]{12}$"
MAX_DEPTH_STEPS, MAX_ENSEMBLE = 50, 10  # a call's cost bound: at most 500 member-steps of the depth model
CONVENTION = "relative depth of this image in [0, 1]: 0 = near, 1 = far; affine-invariant, compare within one image"

_IMAGE = ("The image: a file path under a folder the server allows, a data URL (data:image/png;base64,...), plain "
          "base64 image bytes, or an http(s) URL if the server allows URLs.")
_DEPTH_ID = "depth_id returned by an earlier depth tool: reuse its depth map and its image (nothing is recomputed)."
_EXPRESSION = "Referring expression naming one object, e.g. 'the cup left of the laptop'."


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _depth_steps() -> Any:
    return Field(default=None, strict=True, ge=1, le=MAX_DEPTH_STEPS, description=(
        "Depth denoising steps; null for the depth model's default. Must be null with depth_id."))


def _ensemble() -> Any:
    return Field(default=None, strict=True, ge=1, le=MAX_ENSEMBLE, description=(
        "Depth predictions combined (affine-aligned median; steadier, and slower); null for 1. Must be null with "
        "depth_id."))


def _seed() -> Any:
    return Field(default=None, description="Random seed; null for 0.")


class _DepthSettingsArgs(_Args):
    def depth_settings_given(self) -> bool:
        return any(getattr(self, name) is not None for name in ("depth_steps", "ensemble_size"))


def _one_of(names: list[str], given: list[bool], why: str) -> None:
    if sum(given) != 1:
        raise ValueError(f"give exactly one of {' / '.join(names)} ({why})")


class EstimateDepthArgs(_DepthSettingsArgs):
    """Estimate the depth of an image; returns a colour-mapped depth map (red near, blue far), statistics, and a
    depth_id that depth_of and compare_depth accept instead of the image (the map is kept, not recomputed)."""

    image: str = Field(max_length=40_000_000, description=_IMAGE)
    depth_steps: int | None = _depth_steps()
    ensemble_size: int | None = _ensemble()
    seed: Seed | None = _seed()


class DepthOfArgs(_DepthSettingsArgs):
    """How far away one object is: segments the object an expression names (or takes a mask_id) and returns the
    relative depth statistics inside its mask, with the mask_id (refine it, then call again with the new mask_id)."""

    image: str | None = Field(default=None, max_length=40_000_000, description=(
        _IMAGE + " null when depth_id or mask_id gives the image."))
    depth_id: str | None = Field(default=None, pattern=DEPTH_ID_PATTERN, description=_DEPTH_ID + " null otherwise.")
    expression: str | None = Field(default=None, min_length=1, max_length=300, description=(
        _EXPRESSION + " null when mask_id is given."))
    mask_id: str | None = Field(default=None, pattern=MASK_ID_PATTERN, description=(
        "mask_id from segment, refine, depth_of or compare_depth: use that mask (and its image) instead of an "
        "expression; null otherwise."))
    segment_steps: int | None = Field(default=None, strict=True, ge=1, le=100, description=(
        "Segmentation denoising steps for expression; null for the model default."))
    depth_steps: int | None = _depth_steps()
    ensemble_size: int | None = _ensemble()
    seed: Seed | None = _seed()

    @model_validator(mode="after")
    def _sources(self) -> DepthOfArgs:
        _one_of(["expression", "mask_id"], [self.expression is not None, self.mask_id is not None], "what to measure")
        if self.expression is not None:
            _one_of(["image", "depth_id"], [self.image is not None, self.depth_id is not None],
                    "which image to segment")
        elif self.image is not None:
            raise ValueError("image must be null with mask_id (the mask's image is used)")
        if self.depth_id is not None and self.depth_settings_given():
            raise ValueError("depth_steps and ensemble_size must be null with depth_id (its map is reused)")
        return self


class CompareDepthArgs(_DepthSettingsArgs):
    """Which of two objects is closer to the camera: segments both (or takes their mask_ids) and compares the
    relative depth inside the two masks; answers 'a', 'b', 'neither' or 'not_found', with a confidence and both
    mask_ids."""

    image: str | None = Field(default=None, max_length=40_000_000, description=(
        _IMAGE + " null when depth_id gives it, or when both sides are mask_ids."))
    depth_id: str | None = Field(default=None, pattern=DEPTH_ID_PATTERN, description=_DEPTH_ID + " null otherwise.")
    expression_a: str | None = Field(default=None, min_length=1, max_length=300, description=(
        "Object A: " + _EXPRESSION + " null when mask_id_a is given."))
    mask_id_a: str | None = Field(default=None, pattern=MASK_ID_PATTERN, description=(
        "Object A as a mask_id (e.g. after refine); null when expression_a is given."))
    expression_b: str | None = Field(default=None, min_length=1, max_length=300, description=(
        "Object B: " + _EXPRESSION + " null when mask_id_b is given."))
    mask_id_b: str | None = Field(default=None, pattern=MASK_ID_PATTERN, description=(
        "Object B as a mask_id; null when expression_b is given."))
    segment_steps: int | None = Field(default=None, strict=True, ge=1, le=100, description=(
        "Segmentation denoising steps for the expressions; null for the model default."))
    depth_steps: int | None = _depth_steps()
    ensemble_size: int | None = _ensemble()
    seed: Seed | None = _seed()

    @model_validator(mode="after")
    def _sources(self) -> CompareDepthArgs:
        for side in ("a", "b"):
            _one_of([f"expression_{side}", f"mask_id_{side}"],
                    [getattr(self, f"expression_{side}") is not None, getattr(self, f"mask_id_{side}") is not None],
                    f"object {side.upper()}")
        if self.expression_a is not None or self.expression_b is not None:
            _one_of(["image", "depth_id"], [self.image is not None, self.depth_id is not None],
                    "which image to segment")
        elif self.image is not None:
            raise ValueError("image must be null when both objects are mask_ids (their image is used)")
        if self.depth_id is not None and self.depth_settings_given():
            raise ValueError("depth_steps and ensemble_size must be null with depth_id (its map is reused)")
        return self


# ----------------------------------------------------------------------------------------------------- results
class DepthStats(BaseModel):
    """Statistics of relative depth values (0 = near, 1 = far)."""

    min: float
    max: float
    mean: float
    median: float
    p5: float
    p10: float
    p25: float
    p75: float
    p90: float
    p95: float


class DepthSettings(BaseModel):
    """How the depth map was made."""

    num_inference_steps: int
    ensemble_size: int
    seed: int
    processing_resolution: int = Field(description="longer side the model worked at (0: the image's own size)")
    scheduler: str
    prediction_type: str


class _DepthMapInfo(BaseModel):
    depth_id: str = Field(description="pass it to depth_of / compare_depth to reuse this map and its image")
    map_width: int = Field(description="width of the kept depth map (the image scaled to at most 1024 px)")
    map_height: int
    settings: DepthSettings
    reused: bool = Field(description="true when the map was already kept (same image and settings): not recomputed")
    timings: dict[str, float] = Field(description="seconds: depth_s (0 when reused), segment_s, total_s")


class DepthMapResult(_DepthMapInfo):
    """What estimate_depth returns (the colour-mapped depth map travels beside it)."""

    width: int = Field(description="input image width")
    height: int
    convention: str = CONVENTION
    stats: DepthStats
    mean_uncertainty: float | None = Field(description="mean spread of the ensemble members; null for one member")

    def summary(self) -> str:
        s = self.stats
        settings = self.settings
        how = "reused, not recomputed" if self.reused else f"computed in {self.timings.get('depth_s', 0.0):.2f} s"
        spread = "" if self.mean_uncertainty is None else f", mean ensemble spread {self.mean_uncertainty:.3f}"
        return (f"depth_id {self.depth_id}: relative depth of the {self.width}x{self.height} image (0 = near, 1 = far, "
                f"compare within this image only): min {s.min:.3f}, median {s.median:.3f}, max {s.max:.3f}; p10 "
                f"{s.p10:.3f}, p90 {s.p90:.3f}{spread}. {settings.num_inference_steps} steps, ensemble "
                f"{settings.ensemble_size}, seed {settings.seed} ({how}). The image shows it red (near) to blue "
                "(far). Pass depth_id to depth_of or compare_depth to measure objects without recomputing.")


class RegionDepth(BaseModel):
    """The relative depth inside one object's mask."""

    mask_id: str = Field(description="the object's mask: refine it, or pass it back to depth_of / compare_depth")
    expression: str
    found: bool = Field(description="false when the mask is empty (nothing matched the expression): no depth then")
    area_percent: float = Field(description="mask area in percent of the image")
    mask_confidence: float = Field(description="the segmentation's decoder confidence, 0 to 1")
    median: float | None = Field(description="median relative depth in the mask (0 = near); null when not found")
    p10: float | None
    p90: float | None
    mean: float | None
    range_fraction: float | None = Field(description=(
        "where the median lies in the image's depth range: 0 = as near as the nearest pixel, 1 = as far as the "
        "farthest"))

    def describe(self) -> str:
        if not self.found:
            return f"'{self.expression}' was not found (empty mask {self.mask_id})"
        return (f"'{self.expression}' ({self.mask_id}, {self.area_percent:.2f}% of the image): median depth "
                f"{self.median:.3f} (p10 {self.p10:.3f}, p90 {self.p90:.3f}), {100 * self.range_fraction:.0f}% of the "
                "image's depth range")


class DepthOfResult(RegionDepth, _DepthMapInfo):
    """What depth_of returns (the depth map with the mask outlined travels beside it)."""

    convention: str = CONVENTION

    def summary(self) -> str:
        if not self.found:
            return (f"{self.describe()}: no depth to report. If the object should be there, call depth_of with "
                    f"another wording (depth_id {self.depth_id} reuses the depth map).")
        return (f"{self.describe()}; 0 = near, 1 = far; depth_id {self.depth_id}. If the outlined region is the "
                "wrong object, refine the mask_id and call depth_of with the new mask_id.")


class CompareDepthResult(_DepthMapInfo):
    """What compare_depth returns (the depth map with A lightened and B darkened travels beside it)."""

    closer: Literal["a", "b", "neither", "not_found"] = Field(description=(
        "which object is closer to the camera; 'neither' when their depths are interchangeable, 'not_found' when "
        "either mask is empty"))
    confidence: float = Field(description=(
        "0 to 1: separation × the lower of the two masks' confidences; 0 when not_found"))
    separation: float | None = Field(description=(
        "|P(a pixel of A is nearer than one of B) − P(it is farther)| over all pixel pairs (Cliff's delta): 0 = "
        "the depth distributions overlap completely, 1 = they do not overlap; null when not_found"))
    median_difference: float | None = Field(description="B's median depth − A's: > 0 when A is nearer")
    masks_iou: float = Field(description="overlap of the two masks (high: they may be the same object)")
    a: RegionDepth
    b: RegionDepth
    convention: str = CONVENTION

    def summary(self) -> str:
        a, b = self.a, self.b
        if self.closer == "not_found":
            missing = " and ".join(f"{side} ('{r.expression}')" for side, r in (("A", a), ("B", b)) if not r.found)
            return (f"Cannot say which is closer: {missing} not found. A: {a.describe()}; B: {b.describe()}. "
                    f"depth_id {self.depth_id}.")
        if self.closer == "neither":
            head = f"Neither is closer: the depths of A ('{a.expression}') and B ('{b.expression}') overlap fully"
        else:
            near, far = (a, b) if self.closer == "a" else (b, a)
            head = (f"{self.closer.upper()} ('{near.expression}') is closer than {'B' if self.closer == 'a' else 'A'} "
                    f"('{far.expression}'): median depth {near.median:.3f} vs {far.median:.3f} (0 = near)")
        overlap = f" The masks overlap (IoU {self.masks_iou:.2f}): they may be one object." if self.masks_iou > 0.5 \
            else ""
        return (f"{head}; separation {self.separation:.2f}, confidence {self.confidence:.2f}.{overlap} A: "
                f"{a.describe()}; B: {b.describe()}; depth_id {self.depth_id}. The image lightens A and darkens B; "
                "refine a wrong mask and compare again with mask_id_a / mask_id_b.")
