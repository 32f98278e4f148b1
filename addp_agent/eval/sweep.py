"""Inference-settings sweep: single-round quality and cost of a model over a grid of sampler settings.

Every grid point runs the same samples from the same starting noise (a paired comparison), so differences come
from the settings alone. The pick is the highest mIoU; ``prefer_fast_within`` trades up to that much mIoU for
fewer UNet passes (denoising steps × guidance branches). ``addp bundle MODEL --steps …
--guidance-scale …`` then makes the pick a model's defaults.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field, computed_field

from addp_agent.data.sample import RISSample
from addp_agent.engine.guidance import guidance_branches
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.errors import UserError
from addp_agent.limits import Scale, Steps, check_value
from addp_agent.metrics import RISMetrics

Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace")


class SweepPoint(BaseModel):
    """One combination of sampler settings."""

    steps: int = Field(ge=1)
    guidance_scale: float = Field(ge=1.0)
    image_guidance_scale: float = Field(ge=1.0)
    timestep_spacing: Spacing

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unet_passes(self) -> int:
        """UNet evaluations per sample and round: steps × guidance branches (the cost that does not depend on
        the machine or its load)."""
        return self.steps * guidance_branches(self.guidance_scale, self.image_guidance_scale)


class SweepRow(SweepPoint):
    """A grid point with its single-round metrics (fractions in [0, 1]) and its cost."""

    n: int
    miou: float
    oiou: float
    precision_at_50: float
    precision_at_90: float
    seconds_per_sample: float


class SweepResult(BaseModel):
    """Everything `addp sweep` writes to ``sweep.json``."""

    model: str
    data: str
    split: str
    seed: int
    n: int
    prefer_fast_within: float
    rows: list[SweepRow]
    best: SweepRow


def parse_list(text: str, kind: type, option: str) -> list[Any]:
    """``"1,2,4"`` → ``[1, 2, 4]``; anything unreadable is a one-line :class:`UserError` naming ``option``."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise UserError(f"{option}: give at least one value")
    if not all(items):
        raise UserError(f"{option}: an empty item in {text!r}; separate values with single commas")
    try:
        return [kind(item) for item in items]
    except ValueError:
        raise UserError(f"{option}: expected comma-separated {kind.__name__} values, got {text!r}") from None


def grid(steps: Sequence[int], guidance_scales: Sequence[float], image_guidance_scales: Sequence[float],
         spacings: Sequence[str]) -> list[SweepPoint]:
    """All combinations, validated (bounds of :mod:`addp_agent.limits`); duplicates removed, order kept."""
    check_value(list[Steps], list(steps), "--steps")
    check_value(list[Scale], list(guidance_scales), "--guidance-scale")
    check_value(list[Scale], list(image_guidance_scales), "--image-guidance-scale")
    if any(g < 1 for g in (*guidance_scales, *image_guidance_scales)):
        raise UserError("guidance scales must be ≥ 1 (1 turns that guidance term off)")
    unknown = [s for s in spacings if s not in SPACINGS]
    if unknown:
        raise UserError(f"--spacing: unknown {unknown}; use {', '.join(SPACINGS)}")
    points = [SweepPoint(steps=s, guidance_scale=g, image_guidance_scale=i, timestep_spacing=sp)  # type: ignore[arg-type]
              for sp, s, g, i in itertools.product(spacings, steps, guidance_scales, image_guidance_scales)]
    return list({p.model_dump_json(): p for p in points}.values())


@torch.no_grad()
def run_point(pipe: ADDPPipeline, samples: Sequence[RISSample], point: SweepPoint, batch_size: int,
              seed: int) -> SweepRow:
    """Single-round metrics of ``point`` (the pipeline's scheduler is swapped for the call and restored)."""
    original = pipe.scheduler
    pipe.register_modules(scheduler=type(original).from_config(original.config,
                                                               timestep_spacing=point.timestep_spacing))
    metrics, seconds = RISMetrics(), 0.0
    try:
        for start in range(0, len(samples), batch_size):
            chunk = list(samples[start : start + batch_size])
            began = time.perf_counter()
            out = pipe.segment_batch([s.expression for s in chunk], [s.image for s in chunk],
                                     num_inference_steps=point.steps, guidance_scale=point.guidance_scale,
                                     image_guidance_scale=point.image_guidance_scale,
                                     generator=seeded_generators([seed] * len(chunk)))
            seconds += time.perf_counter() - began
            for sample, mask in zip(chunk, out.masks, strict=True):
                metrics.update(mask, sample.mask)
    finally:
        pipe.register_modules(scheduler=original)
    result = metrics.to_dict()
    return SweepRow(**point.model_dump(), n=metrics.n, miou=result["mIoU"], oiou=result["oIoU"],
                    precision_at_50=result["P@0.5"], precision_at_90=result["P@0.9"],
                    seconds_per_sample=seconds / metrics.n)


def pick(rows: Sequence[SweepRow], prefer_fast_within: float = 0.0) -> SweepRow:
    """The highest-mIoU row, or the cheapest row within ``prefer_fast_within`` of it: fewest UNet passes (steps ×
    guidance branches), then fewest steps, then highest mIoU."""
    if not rows:
        raise UserError("the sweep has no rows")
    top = max(row.miou for row in rows)
    close = [row for row in rows if row.miou >= top - prefer_fast_within]
    return min(close, key=lambda row: (row.unet_passes, row.steps, -row.miou))


def sweep(pipe: ADDPPipeline, samples: Sequence[RISSample], points: Sequence[SweepPoint], batch_size: int = 32,
          seed: int = 0, progress: Any = None) -> list[SweepRow]:
    """One :class:`SweepRow` per point; ``progress(row)`` is called after each."""
    if not samples:
        raise UserError("no samples to sweep over")
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    rows = []
    for point in points:
        rows.append(run_point(pipe, samples, point, batch_size, seed))
        if progress is not None:
            progress(rows[-1])
    return rows
