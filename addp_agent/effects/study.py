"""Run an effects study: every (variant, seed) trains for the same steps, picks its sampler settings on val, is
scored on test at them and measures its metric-vs-timestep curve.

Each run lives in ``<out>/<variant>/seed-<k>/`` (the training folder plus ``result.json``). A run scored under the
same settings is reused; an unfinished training resumes from its newest checkpoint; a lock file keeps two processes
off one run. ``only_variants`` / ``only_seeds`` run a subset (separate processes); a run over everything also
writes ``<out>/effects.json`` (:mod:`addp_agent.effects.summary`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from addp_agent.effects.config import (
    VARIANT_NAMES,
    EffectsConfig,
    SamplerSetting,
    Variant,
    check_source,
    sampler_grid,
    variants,
)
from addp_agent.effects.registry import get_task
from addp_agent.effects.results import RunResult, Selection, SelectionRow, device_name
from addp_agent.effects.task import EffectsTask, Metric
from addp_agent.errors import UserError
from addp_agent.outputs_io import process_alive


def run_dir(config: EffectsConfig, variant: str, seed_index: int) -> Path:
    return config.folder / variant / f"seed-{seed_index}"


def choose(rows: list[SelectionRow], metric: Metric) -> SamplerSetting:
    """The best row by ``metric``; ties go to fewer UNet passes, then fewer steps."""
    scored = [r for r in rows if r.metrics.get(metric.key) is not None]
    if not scored:
        raise UserError(f"no val sample could be scored ({metric.label}); raise --n-val")
    sign = -1.0 if metric.higher_is_better else 1.0
    best = min(scored, key=lambda r: (sign * float(r.metrics[metric.key]), r.unet_passes, r.setting.steps))
    return best.setting


def select(task: EffectsTask, config: EffectsConfig, pipe: Any, val: list) -> Selection:
    """Score every grid setting on the val samples and choose one."""
    rows = []
    ids: list[str] = []
    for setting in sampler_grid(config):
        scores = task.score(config, pipe, val, setting)
        ids = ids or scores.ids
        rows.append(SelectionRow(setting=setting, metrics=scores.metrics,
                                 unet_passes=task.unet_passes(config, setting)))
    return Selection(split="val", sample_ids=ids, metric=task.primary.key, rows=rows,
                     chosen=choose(rows, task.primary))


def plan(config: EffectsConfig, only_variants: list[str] | None = None,
         only_seeds: list[int] | None = None) -> list[tuple[Variant, int]]:
    """The (variant, seed index) runs asked for; every bad option is one :class:`UserError` line."""
    if config.steps is None:
        raise UserError("give --steps N: the variants are compared at equal optimisation steps "
                        "(--max-minutes is only a safety stop that marks a run incomplete)")
    check_source(config)
    unknown = sorted(set(only_variants or ()) - set(VARIANT_NAMES))
    if unknown:
        raise UserError(f"unknown --variant {', '.join(unknown)}; use {', '.join(VARIANT_NAMES)}")
    bad = sorted({k for k in only_seeds or () if not 0 <= k < config.seeds})
    if bad:
        raise UserError(f"--seed-index {', '.join(map(str, bad))}: use 0 … {config.seeds - 1} (--seeds "
                        f"{config.seeds})")
    chosen = [v for v in variants(config) if not only_variants or v.name in only_variants]
    seeds = [k for k in range(config.seeds) if only_seeds is None or k in only_seeds]
    return [(v, k) for k in seeds for v in chosen]  # seed-major: an interrupted study has whole seeds


def _training_info(model_dir: Path) -> dict:
    info = model_dir / "training.json"
    return json.loads(info.read_text()) if info.exists() else {}


def _needs_training(config: EffectsConfig, info: dict) -> bool:
    """Not trained to the end, and not ended by the safety stop under the same limit."""
    if info.get("step") == config.steps:
        return False
    stopped = info.get("finished") and info.get("stopped_by") == "time"
    return not (stopped and info.get("config", {}).get("max_minutes") == config.max_minutes)


def _final_loss(log: Path) -> float | None:
    if not log.exists():
        return None
    losses = [json.loads(line)["loss"] for line in log.read_text().splitlines() if '"loss"' in line]
    return float(losses[-1]) if losses else None


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (this process's id) while a run works; a lock of a live process is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    try:
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            owner = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner and owner != os.getpid() and process_alive(owner):
            raise UserError(f"{folder}: process {owner} is working on this run; wait for it (or remove "
                            f"{lock} if that process is not an effects study)") from None
        lock.unlink(missing_ok=True)  # a stale lock
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(handle, "w") as file:
        file.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _add_time(path: Path, cpu: float, wall: float) -> dict[str, float]:
    """Add to the training time kept in ``timing.json`` (training may take several sessions)."""
    totals = json.loads(path.read_text()) if path.exists() else {"cpu_s": 0.0, "wall_s": 0.0}
    totals = {"cpu_s": totals["cpu_s"] + cpu, "wall_s": totals["wall_s"] + wall}
    path.write_text(json.dumps(totals))
    return totals


class _Splits:
    """Val and test samples, generated once per process when a run first needs them."""

    def __init__(self, task: EffectsTask, config: EffectsConfig) -> None:
        self.task, self.config = task, config
        self._val: list | None = None
        self._test: list | None = None

    @property
    def val(self) -> list:
        if self._val is None:
            self._val = self.task.samples(self.config, "val", self.config.n_val)
        return self._val

    @property
    def test(self) -> list:
        if self._test is None:
            self._test = self.task.samples(self.config, "test", max(self.config.n_test, self.config.curve_n))
        return self._test


def stored_result(config: EffectsConfig, variant: Variant, seed_index: int) -> RunResult | None:
    """A run scored earlier under the same settings; an incomplete one only while the safety stop is unchanged."""
    path = run_dir(config, variant.name, seed_index) / "result.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored.get("identity") != config.run_identity():
        return None
    result = RunResult.model_validate(stored["result"])
    if not result.complete and stored.get("max_minutes") != config.max_minutes:
        return None  # a new limit may let it finish: resume the training
    return result


def run_one(task: EffectsTask, config: EffectsConfig, variant: Variant, seed_index: int, splits: _Splits,
            progress: bool = False) -> RunResult:
    """Train (or resume) one run, choose its sampler on val, score it on test; writes ``result.json``."""
    folder = run_dir(config, variant.name, seed_index)
    train_config: Any = task.train_config(config, variant, seed_index, folder)
    model_dir = folder / "model"
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        if _needs_training(config, _training_info(model_dir)):
            model_dir = task.train(train_config, progress)
    finally:
        timing = _add_time(folder / "timing.json", time.process_time() - cpu, time.perf_counter() - wall)
    info = _training_info(model_dir)
    steps_done = int(info.get("step", 0))
    cpu, wall = time.process_time(), time.perf_counter()
    pipe = task.load(model_dir)
    selection = select(task, config, pipe, splits.val)
    test = task.score(config, pipe, splits.test[: config.n_test], selection.chosen)
    curve = task.curve(config, pipe, splits.test[: config.curve_n], selection.chosen)
    result = RunResult(task=config.task, variant=variant, seed_index=seed_index, train_seed=config.seed + seed_index,
                       steps=int(config.steps or 0), steps_done=steps_done, complete=steps_done == config.steps,
                       stopped_by=info.get("stopped_by"), final_loss=_final_loss(folder / "log.jsonl"),
                       train_cpu_s=timing["cpu_s"], train_wall_s=timing["wall_s"],
                       eval_cpu_s=time.process_time() - cpu, eval_wall_s=time.perf_counter() - wall,
                       selection=selection, test=test, curve=curve,
                       log=str((folder / "log.jsonl").relative_to(config.folder)), device=device_name())
    staging = folder / "result.json.tmp"
    staging.write_text(json.dumps({"identity": config.run_identity(), "max_minutes": config.max_minutes,
                                   "result": json.loads(result.model_dump_json())}, indent=1))
    staging.replace(folder / "result.json")
    return result


def run_study(config: EffectsConfig, only_variants: list[str] | None = None, only_seeds: list[int] | None = None,
              progress: bool = False, echo: Callable[[str], None] = print) -> list[RunResult]:
    """Run (or reuse) the runs asked for; a full study also writes ``effects.json``. Returns the runs' results."""
    from addp_agent.effects.summary import write_effects

    runs = plan(config, only_variants, only_seeds)
    task = get_task(config.task)
    for variant, k in runs:  # every training config validates before anything is written
        task.train_config(config, variant, k, run_dir(config, variant.name, k))
    config.folder.mkdir(parents=True, exist_ok=True)
    (config.folder / "effects_config.json").write_text(config.model_dump_json(indent=2))
    splits = _Splits(task, config)
    results = []
    for variant, k in runs:
        name = f"{variant.name} seed {k}"
        stored = stored_result(config, variant, k)
        if stored is not None:
            echo(f"{name}: reused {run_dir(config, variant.name, k) / 'result.json'}")
            results.append(stored)
            continue
        with run_lock(run_dir(config, variant.name, k)):
            result = run_one(task, config, variant, k, splits, progress)
        results.append(result)
        value = result.test.metrics.get(task.primary.key)
        echo(f"{name}: {result.steps_done}/{result.steps} steps{'' if result.complete else ' (INCOMPLETE)'}, "
             f"chose {result.selection.chosen.label} on val, test {task.primary.label} "
             f"{'–' if value is None else f'{value:.4f}'} (train {result.train_cpu_s / 60:.1f} CPU min, "
             f"eval {result.eval_cpu_s / 60:.1f})")
    if only_variants is None and only_seeds is None:
        write_effects(config, task, results, config.folder / "effects.json")
    return results
