"""The ADDP-effects study: four models at an equal training budget on Shapes-Ref, evaluated on the test split.

Variants: baseline (uniform t, no augmentation), contribution-aware t, augmentation, both. Each model is scored
(mIoU, oIoU, on all test samples and the confusable subset) and its IoU-vs-timestep curve is measured from the
engine's per-step x̂₀. ``python -m addp_agent.train.effects --steps 150 --n-train 200`` writes ``effects.json``
under ``--out`` and, with ``--doc``, docs/results.md and docs/img/effects_*.png. Reruns reuse finished models.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from addp_agent.errors import UserError
from addp_agent.train.contribution import IoUCurve


class EffectsConfig(BaseModel):
    """The shared budget of every variant."""

    model_config = ConfigDict(extra="forbid")
    out: Path = Path("runs/effects")
    steps: int = 150
    n_train: int = 200
    n_test: int = 100
    batch_size: int = 4
    lr: float = 5e-4
    channels: tuple[int, ...] = (16, 32, 32)
    text_hidden: int = 32
    resolution: int = 64
    infer_steps: int = 10
    sampler: Literal["ris", "analytic", "estimated"] = "ris"
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


def variants(sampler: str) -> list[Variant]:
    return [Variant(name="baseline", timesteps="uniform", augment=False),
            Variant(name="timesteps", timesteps=sampler, augment=False),
            Variant(name="augment", timesteps="uniform", augment=True),
            Variant(name="both", timesteps=sampler, augment=True)]


def _train_config(config: EffectsConfig, variant: Variant, timesteps_file: Path | None):
    from addp_agent.models.build import PixelModelConfig, TextEncoderConfig
    from addp_agent.train.loop import TrainConfig

    heads = 2 if config.text_hidden % 2 == 0 else 1
    cross = len(config.channels) - 1  # the built-in layout: a plain block, then cross-attention blocks
    model = PixelModelConfig(resolution=config.resolution, block_out_channels=config.channels,
                             down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * cross,
                             up_block_types=("CrossAttnUpBlock2D",) * cross + ("UpBlock2D",),
                             text=TextEncoderConfig(hidden_size=config.text_hidden, layers=1, heads=heads))
    return TrainConfig(out=config.out / variant.name, n_train=config.n_train, data_seed=config.data_seed, model=model,
                       steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                       warmup_steps=max(1, min(200, config.steps // 10)), timesteps=variant.timesteps,
                       timesteps_file=timesteps_file if variant.timesteps == "estimated" else None,
                       augment=variant.augment, val_every=0, val_steps=config.infer_steps,
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
    info = model_dir / "training.json"
    return info.exists() and json.loads(info.read_text()).get("step") == steps


def _load(model_dir: Path):
    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


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
    return VariantResult(variant=variant, test=_summary(counts), confusable=_summary(confusable), curve=curve,
                         peak_step=peak, late_decline=curve.miou[peak] - curve.miou[-1], train_s=train_s,
                         final_loss=losses[-1] if losses else None)


def run_effects(config: EffectsConfig, progress: bool = False) -> list[VariantResult]:
    """Train (or reuse) and evaluate the four variants; writes ``effects.json`` under ``config.out``."""
    from addp_agent.data.shapes import ShapesRef, ShapesRefConfig
    from addp_agent.train.contribution import estimate_contribution, measure_iou_curve, write_contribution
    from addp_agent.train.loop import train

    if min(config.steps, config.n_train, config.n_test, config.batch_size, config.infer_steps) < 1:
        raise UserError("steps, n-train, n-test, batch-size and infer-steps must all be ≥ 1")
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "effects_config.json").write_text(config.model_dump_json(indent=2))
    test = list(ShapesRef(split="test", n=config.n_test, seed=config.data_seed,
                          config=ShapesRefConfig(size=config.resolution)))
    contribution_file = config.out / "contribution.json"
    results: list[VariantResult] = []
    for variant in variants(config.sampler):
        timing = config.out / variant.name / "train_s.json"
        start = time.perf_counter()
        model_dir = config.out / variant.name / "model"
        if not _finished(model_dir, config.steps):
            model_dir = train(_train_config(config, variant, contribution_file), progress=progress)
        if not timing.exists():  # a reused model keeps the time of the run that trained it
            timing.write_text(json.dumps(time.perf_counter() - start))
        result = evaluate_variant(config, variant, model_dir, test, float(json.loads(timing.read_text())))
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
              f"({result.train_s:.0f} s)", flush=True)
    (config.out / "effects.json").write_text(json.dumps(
        {"config": json.loads(config.model_dump_json()), "results": [json.loads(r.model_dump_json()) for r in results]},
        indent=2))
    return results


def _quiet_libraries() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.set_verbosity_error()
        library.disable_progress_bar()


def main(argv: list[str] | None = None) -> None:
    import argparse
    import sys

    import torch
    from pydantic import ValidationError

    parser = argparse.ArgumentParser(prog="python -m addp_agent.train.effects", description=__doc__.split("\n")[0])
    for name, field in EffectsConfig.model_fields.items():
        if name == "channels":
            parser.add_argument("--channels", type=lambda s: tuple(int(x) for x in s.split(",")), default=None,
                                help="UNet block widths, e.g. 16,32,32")
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"default {field.default}")
    parser.add_argument("--doc", type=Path, default=None, help="write this results page (e.g. docs/results.md)")
    parser.add_argument("--img-dir", type=Path, default=Path("docs/img"), help="where the PNG plots go")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--progress", action="store_true")
    args = vars(parser.parse_args(argv))
    doc, img_dir, threads, progress = args.pop("doc"), args.pop("img_dir"), args.pop("threads"), args.pop("progress")
    try:
        config = EffectsConfig(**{k: v for k, v in args.items() if v is not None})
        if threads:
            torch.set_num_threads(threads)
        _quiet_libraries()
        results = run_effects(config, progress=progress)
        if doc is not None:
            from addp_agent.train.effects_report import write_report

            write_report(config, results, doc, img_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as error:
        first = error.errors()[0]
        print(f"error: --{'-'.join(str(p) for p in first['loc'])}: {first['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
