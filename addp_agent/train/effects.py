"""The ADDP-effects study: four models at an equal training budget on Shapes-Ref, evaluated on the test split.

Variants: baseline (uniform t, no augmentation), contribution-aware t, augmentation, both. Each model is scored
(mIoU, oIoU, on all test samples and the confusable subset) and its IoU-vs-timestep curve is measured from the
engine's per-step x̂₀. ``addp effects --steps 150 --n-train 200`` writes ``effects.json``
under ``--out`` and, with ``--doc``, docs/results.md and docs/img/effects_*.png. Reruns reuse finished models and
scored variants (``<out>/<variant>/result.json``). ``--variant NAME`` trains and scores one variant, so the four can
run as parallel processes (one GPU holds several of these small models); a final run without it assembles the page.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from addp_agent.errors import UserError
from addp_agent.train.contribution import IoUCurve


class EffectsConfig(BaseModel):
    """The shared budget of every variant."""

    model_config = ConfigDict(extra="forbid")
    out: Path = Field(Path("runs/effects"), description="Study folder: one sub-folder per variant, effects.json.")
    steps: int = Field(150, description="Training steps per variant.")
    n_train: int = Field(200, description="Generated training samples.")
    n_test: int = Field(100, description="Test samples scored.")
    batch_size: int = 4
    lr: float = 5e-4
    channels: tuple[int, ...] = Field((16, 32, 32), description="UNet block widths, comma-separated.")
    text_hidden: int = Field(32, description="Text encoder width.")
    text_layers: int = Field(1, description="Text encoder layers.")
    text_heads: int | None = Field(None, description="Text encoder heads (default: 2 when the width is even, else 1).")
    resolution: int = Field(64, description="Image side in pixels.")
    infer_steps: int = Field(10, description="Denoising steps at test (and validation).")
    sampler: Literal["ris", "analytic", "estimated"] = Field("ris", description="The contribution-aware sampler.")
    paint_weight: float = Field(1.0, description="Loss weight on the referent's pixels (1: plain MSE).")
    warmup_steps: int | None = Field(None, description="lr warm-up steps (default: a tenth of the steps, ≤ 200).")
    lr_schedule: Literal["constant", "cosine"] = "constant"
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    max_minutes: float | None = Field(None, description="A safety stop per variant; the page reports the steps "
                                                        "each one reached.")
    val_every: int = Field(0, description="Steps between validations (0: none).")
    val_n: int = 128
    data_cache: Path | None = Field(None, description="Keep the generated training set in this file and reuse it.")
    data_seed: int = 0
    seed: int = 0


class Variant(BaseModel):
    name: str
    timesteps: str
    augment: bool


class VariantResult(BaseModel):
    variant: Variant
    test: dict[str, float | int | None]  # mIoU, mIoU_se, oIoU, n
    confusable: dict[str, float | int | None]
    curve: IoUCurve
    peak_step: int  # index of the best trajectory point
    late_decline: float  # peak mIoU − final mIoU
    train_s: float
    final_loss: float | None
    steps_done: int | None = None
    val_mIoU: float | None = None
    device: str | None = None


def variants(sampler: str) -> list[Variant]:
    return [Variant(name="baseline", timesteps="uniform", augment=False),
            Variant(name="timesteps", timesteps=sampler, augment=False),
            Variant(name="augment", timesteps="uniform", augment=True),
            Variant(name="both", timesteps=sampler, augment=True)]


def _train_config(config: EffectsConfig, variant: Variant, timesteps_file: Path | None):
    from addp_agent.models.config import PixelModelConfig, TextEncoderConfig
    from addp_agent.train.config import TrainConfig

    heads = config.text_heads or (2 if config.text_hidden % 2 == 0 else 1)
    cross = len(config.channels) - 1  # the built-in layout: a plain block, then cross-attention blocks
    model = PixelModelConfig(resolution=config.resolution, block_out_channels=config.channels,
                             down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * cross,
                             up_block_types=("CrossAttnUpBlock2D",) * cross + ("UpBlock2D",),
                             text=TextEncoderConfig(hidden_size=config.text_hidden, layers=config.text_layers,
                                                       heads=heads))
    return TrainConfig(out=config.out / variant.name, n_train=config.n_train, data_seed=config.data_seed, model=model,
                       steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       warmup_steps=config.warmup_steps or max(1, min(200, config.steps // 10)),
                       lr_schedule=config.lr_schedule, mixed_precision=config.mixed_precision,
                       max_minutes=config.max_minutes, paint_weight=config.paint_weight, data_cache=config.data_cache,
                       timesteps=variant.timesteps,
                       timesteps_file=timesteps_file if variant.timesteps == "estimated" else None,
                       augment=variant.augment, val_every=config.val_every, val_n=config.val_n,
                       val_steps=config.infer_steps,
                       checkpoint_every=max(1, config.steps // 4), log_every=max(1, config.steps // 20),
                       seed=config.seed)


def _summary(counts: list[tuple[int, int]]) -> dict[str, float | int | None]:
    from addp_agent.metrics import RISMetrics, iou_from_counts

    metrics = RISMetrics()
    ious = [metrics.add(i, u) for i, u in counts]
    result = metrics.to_dict()
    if len(ious) > 1:
        mean = sum(ious) / len(ious)
        se = math.sqrt(sum((x - mean) ** 2 for x in ious) / (len(ious) - 1) / len(ious))
    else:
        se = None
    total = iou_from_counts(sum(i for i, _ in counts), sum(u for _, u in counts)) if counts else None
    return {"n": len(ious), "mIoU": result["mIoU"], "mIoU_se": se, "oIoU": total}


def _finished(model_dir: Path, steps: int) -> bool:
    """Trained to the end: all steps, or stopped by the time budget (``finished`` in training.json)."""
    info = _training_info(model_dir)
    return info.get("step") == steps or bool(info.get("finished"))


def _training_info(model_dir: Path) -> dict:
    info = model_dir / "training.json"
    return json.loads(info.read_text()) if info.exists() else {}


def _load(model_dir: Path):
    import torch

    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda") if torch.cuda.is_available() else pipe


def evaluate_variant(config: EffectsConfig, variant: Variant, model_dir: Path, test, train_s: float
                     ) -> VariantResult:
    """Score one trained model on the test split and measure its IoU-vs-timestep curve."""
    from addp_agent.train.contribution import measure_iou_curve

    curve, counts = measure_iou_curve(_load(model_dir), test, num_inference_steps=config.infer_steps, seed=config.seed)
    confusable = [c for c, sample in zip(counts, test, strict=True) if sample.confusable]
    peak = max(range(len(curve.miou)), key=lambda k: (curve.miou[k], k))  # ties → the later step
    log = config.out / variant.name / "log.jsonl"
    losses = [json.loads(line)["loss"] for line in log.read_text().splitlines() if '"loss"' in line] \
        if log.exists() else []
    info = _training_info(model_dir)
    return VariantResult(variant=variant, test=_summary(counts), confusable=_summary(confusable), curve=curve,
                         peak_step=peak, late_decline=curve.miou[peak] - curve.miou[-1], train_s=train_s,
                         final_loss=losses[-1] if losses else None, steps_done=info.get("step"),
                         val_mIoU=info.get("metrics", {}).get("val_mIoU"), device=_device_name())


def _device_name() -> str:
    import os
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), {os.cpu_count()} CPU cores"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def command_line(config: EffectsConfig, doc: Path | None = None) -> str:
    """The command that reproduces ``config`` (fields left at their defaults are omitted)."""
    parts = ["addp effects"]
    for name, field in EffectsConfig.model_fields.items():
        value = getattr(config, name)
        if value == field.default and name != "out":
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        parts.append(f"--{name.replace('_', '-')} {text}")
    if doc is not None:
        parts.append(f"--doc {doc}")
    return " ".join(parts)


def _stored_result(config: EffectsConfig, variant: Variant) -> VariantResult | None:
    """A variant scored earlier under the same config (``<out>/<variant>/result.json``)."""
    path = config.out / variant.name / "result.json"
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored.get("config") != json.loads(config.model_dump_json()):
        return None
    return VariantResult.model_validate(stored["result"])


def run_effects(config: EffectsConfig, progress: bool = False, only: list[str] | None = None) -> list[VariantResult]:
    """Train (or reuse) and evaluate the variants (all, or those named in ``only``).

    With all four, writes ``effects.json`` under ``config.out``.
    """
    from addp_agent.data.shapes import ShapesRef, ShapesRefConfig
    from addp_agent.train.contribution import estimate_contribution, measure_iou_curve, write_contribution
    from addp_agent.train.loop import train

    if min(config.steps, config.n_train, config.n_test, config.batch_size, config.infer_steps) < 1:
        raise UserError("steps, n-train, n-test, batch-size and infer-steps must all be ≥ 1")
    chosen = variants(config.sampler)
    if only:
        unknown = sorted(set(only) - {v.name for v in chosen})
        if unknown:
            raise UserError(f"unknown --variant {', '.join(unknown)}; use {', '.join(v.name for v in chosen)}")
        if config.sampler == "estimated" and any(name != "baseline" for name in only) and \
                not (config.out / "contribution.json").exists():
            raise UserError("--sampler estimated needs the baseline's curve first: run --variant baseline alone")
        chosen = [v for v in chosen if v.name in only]
    contribution_file = config.out / "contribution.json"
    for variant in chosen:  # every variant's TrainConfig validates before anything is written
        _train_config(config, variant, contribution_file)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "effects_config.json").write_text(config.model_dump_json(indent=2))
    test = None
    results: list[VariantResult] = []
    for variant in chosen:
        stored = _stored_result(config, variant)
        if stored is not None:
            results.append(stored)
            print(f"{variant.name}: reused {config.out / variant.name / 'result.json'}", flush=True)
            continue
        if test is None:
            test = list(ShapesRef(split="test", n=config.n_test, seed=config.data_seed,
                                  config=ShapesRefConfig(size=config.resolution)))
        timing = config.out / variant.name / "train_s.json"
        start = time.perf_counter()
        model_dir = config.out / variant.name / "model"
        if not _finished(model_dir, config.steps):
            model_dir = train(_train_config(config, variant, contribution_file), progress=progress)
        if not timing.exists():  # a reused model keeps the time of the run that trained it
            timing.write_text(json.dumps(time.perf_counter() - start))
        result = evaluate_variant(config, variant, model_dir, test, float(json.loads(timing.read_text())))
        (config.out / variant.name / "result.json").write_text(json.dumps(
            {"config": json.loads(config.model_dump_json()), "result": json.loads(result.model_dump_json())},
            indent=2))
        results.append(result)
        if variant.name == "baseline" and config.sampler == "estimated":  # c_t from the val split, not test
            val = list(ShapesRef(split="val", n=config.n_test, seed=config.data_seed,
                                 config=ShapesRefConfig(size=config.resolution)))
            curve, _ = measure_iou_curve(_load(model_dir), val, num_inference_steps=config.infer_steps,
                                         seed=config.seed)
            c = estimate_contribution(curve.timesteps, curve.miou)
            write_contribution(contribution_file, curve.timesteps, c, source="baseline val IoU curve",
                               iou=curve.miou)
        print(f"{variant.name}: test mIoU {result.test['mIoU']:.4f} oIoU {result.test['oIoU']:.4f} "
              f"({result.train_s:.0f} s, {result.steps_done} steps)", flush=True)
    if len(results) == len(variants(config.sampler)):
        (config.out / "effects.json").write_text(json.dumps(
            {"config": json.loads(config.model_dump_json()),
             "results": [json.loads(r.model_dump_json()) for r in results]}, indent=2))
    return results

