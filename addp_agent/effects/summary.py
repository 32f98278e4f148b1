"""A finished study in numbers: per variant the seed-to-seed spread of every test metric, the paired differences
against the baseline, the mean curve, and how each grid setting scored on val; written as ``effects.json``."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from addp_agent.effects.config import EffectsConfig, Variant, command_line, sampler_grid
from addp_agent.effects.results import RunResult, device_name
from addp_agent.effects.stats import Paired, Spread, paired, spread
from addp_agent.effects.task import EffectsTask


class MeanCurve(BaseModel):
    timesteps: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]
    seeds: int


class GridScore(BaseModel):
    label: str
    unet_passes: int
    val: Spread  # the selection metric over seeds
    chosen: int  # seeds that chose it


class VariantSummary(BaseModel):
    variant: Variant
    seeds: list[int]  # complete runs, the ones in the tables
    incomplete: dict[int, int]  # seed index → steps reached (left out)
    metrics: dict[str, Spread]
    seed_values: dict[str, list[float]]  # metric → the complete seeds' values, in seed order
    chosen: list[str]  # the setting each complete seed chose, in seed order
    curve: MeanCurve | None
    grid: list[GridScore]
    train_cpu_s: Spread | None
    eval_cpu_s: Spread | None


class Summary(BaseModel):
    variants: list[VariantSummary]
    paired: dict[str, dict[str, Paired | None]]  # variant → metric → variant − baseline


def _curve(runs: list[RunResult]) -> MeanCurve | None:
    curves = [r.curve for r in runs if r.curve.values]
    if not curves or any(c.timesteps != curves[0].timesteps for c in curves):
        return None
    columns = list(zip(*[c.values for c in curves], strict=True))
    return MeanCurve(timesteps=curves[0].timesteps, mean=[sum(c) / len(c) for c in columns],
                     min=[min(c) for c in columns], max=[max(c) for c in columns], seeds=len(curves))


def _grid(config: EffectsConfig, task: EffectsTask, runs: list[RunResult]) -> list[GridScore]:
    out = []
    for setting in sampler_grid(config):
        values = [row.metrics[task.primary.key] for r in runs for row in r.selection.rows
                  if row.setting == setting and row.metrics.get(task.primary.key) is not None]
        if values:
            out.append(GridScore(label=setting.label, unet_passes=task.unet_passes(config, setting),
                                 val=spread([float(v) for v in values]),
                                 chosen=sum(r.selection.chosen == setting for r in runs)))
    return out


def summarise(config: EffectsConfig, task: EffectsTask, results: list[RunResult]) -> Summary:
    """Spreads over the complete runs only; incomplete runs are listed, never averaged in."""
    by_variant: dict[str, list[RunResult]] = {}
    for r in results:
        by_variant.setdefault(r.variant.name, []).append(r)
    summaries, values = [], {}
    for name, runs in by_variant.items():
        runs = sorted(runs, key=lambda r: r.seed_index)
        done = [r for r in runs if r.complete]
        metrics, seed_values = {}, {}
        for metric in task.metrics:
            per_seed = {r.seed_index: float(r.test.metrics[metric.key]) for r in done
                        if r.test.metrics.get(metric.key) is not None}
            values[(name, metric.key)] = per_seed
            if per_seed:
                metrics[metric.key] = spread(list(per_seed.values()))
                seed_values[metric.key] = list(per_seed.values())
        summaries.append(VariantSummary(
            variant=runs[0].variant, seeds=[r.seed_index for r in done],
            incomplete={r.seed_index: r.steps_done for r in runs if not r.complete}, metrics=metrics,
            seed_values=seed_values,
            chosen=[r.selection.chosen.label for r in done], curve=_curve(done), grid=_grid(config, task, done),
            train_cpu_s=spread([r.train_cpu_s for r in done]) if done else None,
            eval_cpu_s=spread([r.eval_cpu_s for r in done]) if done else None))
    differences: dict[str, dict[str, Paired | None]] = {}
    for s in summaries:
        if s.variant.name == "baseline":
            continue
        differences[s.variant.name] = {m.key: paired(values.get((s.variant.name, m.key), {}),
                                                     values.get(("baseline", m.key), {})) for m in task.metrics}
    return Summary(variants=summaries, paired=differences)


def write_effects(config: EffectsConfig, task: EffectsTask, results: list[RunResult], path: Path) -> dict:
    """``effects.json``: the config, the command, the summary and every run (selection rows, test, curve)."""
    document = {"task": config.task, "config": json.loads(config.model_dump_json()), "command": command_line(config),
                "hardware": sorted({r.device for r in results}) or [device_name()],
                "summary": json.loads(summarise(config, task, results).model_dump_json()),
                "runs": [json.loads(r.model_dump_json()) for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(document, indent=1))
    staging.replace(path)
    return document
