"""The settings of an effects study, its variants, its sampler settings and the source specs it reads.

One :class:`EffectsConfig` is one study. Every variant and seed trains for the same number of optimisation steps;
``max_minutes`` is only a safety stop: a run it ends is marked incomplete and left out of the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from addp_agent.errors import UserError
from addp_agent.limits import MAX_GENERATED, MAX_SCALE, MAX_SEED, MAX_STEPS, LearningRate
from addp_agent.models.config import NORM_GROUPS, widths_fit_groups

Task = Literal["ris", "depth"]
VARIANT_NAMES = ("baseline", "timesteps", "augment", "both")
DEFAULT_DATA = {"ris": "scenes-gen:4000:0:64", "depth": "scenes-gen:4000:0:64"}
DEFAULT_TIMESTEPS = {"ris": "ris", "depth": "depth"}
DEFAULT_SCHEDULE = {"ris": "cosine", "depth": "exponential"}
SOURCES = {"ris": ("scenes-gen", "shapes-gen"), "depth": ("scenes-gen", "synthetic")}
AUGMENTATION = {"ris": "colour/shape/location augmentation of the painted target",
                "depth": "Gaussian blur of the normalised depth (31 px, σ = 10·(t+1)/T·U(0,1))"}
GridSteps = Annotated[int, Field(ge=1, le=MAX_STEPS)]
GridGuidance = Annotated[float, Field(ge=1.0, le=MAX_SCALE)]  # 1 turns text guidance off
# Fields that do not change what one run computes: a run scored under other values of these is reused.
NOT_RUN_IDENTITY = frozenset({"seeds", "max_minutes"})


class EffectsConfig(BaseModel):
    """One study: the data, the shared training budget, the model size, the sampler grid and the scoring."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    task: Task = Field("ris", description="ris | depth")
    out: Path | None = Field(None, description="Study folder: <variant>/seed-<k>/ per run, effects.json "
                                               "(default: runs/effects-<task>).")
    data: str | None = Field(None, description="Generated source spec; N = training samples, val and test come "
                                               "from the same generator's own splits (default: "
                                               "scenes-gen:4000:0:64). RIS: scenes-gen | shapes-gen; depth: "
                                               "scenes-gen | synthetic.")
    seeds: int = Field(3, ge=1, description="Training seeds per variant (seed k changes the initial weights and "
                                            "the data order; the data set stays the same).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Training seed of seed index 0 (index k trains with seed + k).")
    steps: int | None = Field(None, ge=1, description="Optimisation steps of every run (required: the variants "
                                                      "are compared at equal steps).")
    max_minutes: float | None = Field(None, gt=0, description="Safety stop per run: a run it ends is marked "
                                                              "incomplete and left out of the tables.")
    batch_size: int = Field(16, ge=1)
    lr: LearningRate = 1e-3
    warmup_steps: int | None = Field(None, ge=0, description="lr warm-up steps (default: a tenth of the steps, "
                                                             "≤ 100).")
    lr_schedule: Literal["constant", "cosine", "exponential"] | None = Field(
        None, description="constant | cosine | exponential (depth only; default: RIS cosine, depth exponential).")
    channels: tuple[int, ...] = Field((16, 32, 32), description="UNet block widths, comma-separated.")
    resolution: int | None = Field(None, ge=8, description="Model side in pixels (default: the source's size).")
    text_hidden: int = Field(32, ge=1, description="RIS: text encoder width.")
    text_layers: int = Field(1, ge=1, description="RIS: text encoder layers.")
    text_heads: int | None = Field(None, ge=1, description="RIS: text encoder heads (default: 2 when the width is "
                                                           "even, else 1).")
    paint_weight: float = Field(1.0, ge=1.0, description="RIS: loss weight on the referent's pixels (1: the "
                                                         "paper's plain MSE).")
    timesteps: Literal["ris", "depth", "analytic"] | None = Field(
        None, description="The contribution-aware sampler compared with uniform (default: the task's preset).")
    n_val: int = Field(64, ge=1, description="Val samples that choose each run's sampler settings.")
    n_test: int = Field(200, ge=1, description="Test samples scored at the chosen settings.")
    grid_steps: tuple[GridSteps, ...] = Field((1, 2, 4), description="Denoising steps tried on val, comma-separated.")
    grid_guidance: tuple[GridGuidance, ...] = Field((1.5, 3.0), description="RIS: text guidance scales tried on val.")
    image_guidance: float = Field(1.0, ge=1.0, le=MAX_SCALE, description="RIS: image guidance scale (fixed).")
    curve_steps: int = Field(10, ge=2, le=MAX_STEPS, description="Denoising steps of the metric-vs-timestep curve.")
    curve_n: int = Field(64, ge=1, description="Test samples of the metric-vs-timestep curve.")
    eval_seed: int = Field(0, ge=0, le=MAX_SEED, description="Noise seed of selection, test and curve (sample i uses "
                                                "eval_seed + i).")
    eval_batch: int = Field(32, ge=1, description="Samples per denoising batch when scoring.")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"

    @model_validator(mode="after")
    def _check(self) -> EffectsConfig:
        if not widths_fit_groups(self.channels):
            raise ValueError(f"channels must be positive multiples of {NORM_GROUPS} (the UNet's group norm); "
                             f"got {','.join(map(str, self.channels)) or 'none'}")
        if not self.grid_steps or any(s < 1 for s in self.grid_steps):
            raise ValueError("grid_steps must be ≥ 1")
        if not self.grid_guidance or any(g < 1 for g in self.grid_guidance):
            raise ValueError("grid_guidance must be ≥ 1 (1 turns text guidance off)")
        if self.lr_schedule == "exponential" and self.task == "ris":
            raise ValueError("lr_schedule exponential is for the depth task; use constant or cosine")
        return self

    # ------------------------------------------------------------------ resolved settings
    @property
    def source(self) -> str:
        return self.data or DEFAULT_DATA[self.task]

    @property
    def folder(self) -> Path:
        return self.out or Path(f"runs/effects-{self.task}")

    @property
    def sampler(self) -> str:
        return self.timesteps or DEFAULT_TIMESTEPS[self.task]

    @property
    def schedule(self) -> str:
        return self.lr_schedule or DEFAULT_SCHEDULE[self.task]

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, min(100, (self.steps or 0) // 10))

    @property
    def model_resolution(self) -> int:
        return self.resolution or source_size(self.source)

    @property
    def n_train(self) -> int:
        return source_count(self.source)

    def run_identity(self) -> dict:
        """What a run's result depends on (a stored result is reused only when this matches)."""
        return self.model_dump(mode="json", exclude=set(NOT_RUN_IDENTITY))


class Variant(BaseModel):
    name: str
    timesteps: str
    augment: bool


class SamplerSetting(BaseModel):
    """One point of the selection grid."""

    steps: int
    guidance_scale: float | None = None  # RIS only

    @property
    def label(self) -> str:
        steps = f"{self.steps} step{'s' if self.steps > 1 else ''}"
        return steps + (f" × s_T {self.guidance_scale:g}" if self.guidance_scale is not None else "")


def variants(config: EffectsConfig) -> list[Variant]:
    """baseline (uniform t, no augmentation), contribution-aware t, augmentation, both."""
    sampler = config.sampler
    return [Variant(name="baseline", timesteps="uniform", augment=False),
            Variant(name="timesteps", timesteps=sampler, augment=False),
            Variant(name="augment", timesteps="uniform", augment=True),
            Variant(name="both", timesteps=sampler, augment=True)]


def sampler_grid(config: EffectsConfig) -> list[SamplerSetting]:
    """RIS: steps × text guidance; depth: steps (ensemble 1)."""
    steps = list(dict.fromkeys(config.grid_steps))
    if config.task == "depth":
        return [SamplerSetting(steps=s) for s in steps]
    return [SamplerSetting(steps=s, guidance_scale=g) for s in steps for g in dict.fromkeys(config.grid_guidance)]


# ---------------------------------------------------------------------- source specs
def _fields(spec: str) -> tuple[str, list[str]]:
    kind, _, rest = spec.partition(":")
    return kind, rest.split(":") if rest else []


def source_count(spec: str) -> int:
    """N of a generated spec (its first field)."""
    _, parts = _fields(spec)
    return int(parts[0])


def source_size(spec: str) -> int:
    """SIZE of a generated spec (its third field; the generators' defaults when absent)."""
    kind, parts = _fields(spec)
    positional = [p for p in parts if "=" not in p]
    if len(positional) > 2:
        return int(positional[2])
    return {"scenes-gen": 128, "shapes-gen": 64, "synthetic": 64}[kind]


def with_count(spec: str, n: int) -> str:
    """The same generated source with N replaced (val and test take their own counts)."""
    kind, parts = _fields(spec)
    return ":".join([kind, str(n), *parts[1:]])


def check_source(config: EffectsConfig) -> None:
    """A generated source the task can train on; every problem is one :class:`UserError` line."""
    spec = config.source
    kind, parts = _fields(spec)
    if kind not in SOURCES[config.task]:
        raise UserError(f"--data {spec!r}: the {config.task} study trains on a generated source "
                        f"({' | '.join(k + ':N:SEED:SIZE' for k in SOURCES[config.task])})")
    try:
        n = int(parts[0]) if parts else 0
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_GENERATED:
        raise UserError(f"--data {spec!r}: N (the training samples) must be an integer in 1..{MAX_GENERATED}")
    try:
        source_size(spec)
    except ValueError:
        raise UserError(f"--data {spec!r}: SIZE must be an integer") from None
    if config.task == "ris":
        from addp_agent.data.sources import load_source

        load_source(with_count(spec, 1), split="val")  # parses the spec (knobs, preset, mode)
    else:
        from addp_agent.data.depth_sources import load_depth_source

        load_depth_source(with_count(spec, 1), "val")


def command_line(config: EffectsConfig, doc: Path | None = None) -> str:
    """The ``addp effects`` command that reproduces ``config`` (fields left at their defaults are omitted)."""
    parts = ["addp effects"]
    for name, field in EffectsConfig.model_fields.items():
        value = getattr(config, name)
        if value == field.default and name != "task":
            continue
        text = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, tuple) \
            else str(value)
        parts.append(f"--{name.replace('_', '-')} {text}")
    if doc is not None:
        parts.append(f"--doc {doc}")
    return " ".join(parts)
