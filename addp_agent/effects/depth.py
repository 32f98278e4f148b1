"""The depth side of the effects study: train an ADDP pixel depth model, score AbsRel/δ1/RMSE after least-squares
scale-and-shift alignment (Marigold protocol, ensemble 1), and the AbsRel-vs-timestep curve of the x̂₀.
Sampling: DDIM with trailing spacing (the depth engine's default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.effects.config import EffectsConfig, SamplerSetting, Variant, with_count
from addp_agent.effects.task import Curve, Metric, Scores


class DepthEffects:
    name = "depth"
    primary = Metric("abs_rel", "AbsRel", False, False)
    metrics = (Metric("abs_rel", "AbsRel", False, False), Metric("delta1", "δ1", True, True),
               Metric("rmse", "RMSE (m)", False, False))
    curve_metric = Metric("abs_rel", "AbsRel of x̂₀", False, False)

    def train_config(self, config: EffectsConfig, variant: Variant, seed_index: int, folder: Path):
        from addp_agent.models.depth_build import PixelDepthModelConfig
        from addp_agent.train.depth_loop import DepthTrainConfig

        levels = len(config.channels)
        model = PixelDepthModelConfig(resolution=config.model_resolution, block_out_channels=config.channels,
                                      down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
                                      up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1))
        steps = config.steps or 1
        return DepthTrainConfig(out=folder, data=config.source, model=model, steps=steps,
                                batch_size=config.batch_size, lr=config.lr, warmup_steps=config.warmup,
                                lr_schedule=config.schedule, max_minutes=config.max_minutes,
                                mixed_precision=config.mixed_precision, timesteps=variant.timesteps,
                                augment=variant.augment, data_cache=config.folder / "train-data.pt", val_every=0,
                                checkpoint_every=max(1, steps // 4), log_every=max(1, steps // 50),
                                seed=config.seed + seed_index)

    def train(self, train_config: Any, progress: bool) -> Path:
        from addp_agent.train.depth_loop import train_depth

        return train_depth(train_config, progress=progress)

    def load(self, model_dir: Path) -> Any:
        from addp_agent.models.registry import load_depth_pipeline

        pipe = load_depth_pipeline(model_dir, progress=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def samples(self, config: EffectsConfig, split: str, n: int) -> list:
        from addp_agent.data.depth_sources import load_depth_source

        return list(load_depth_source(with_count(config.source, n), split))

    def _run(self, config: EffectsConfig, pipe: Any, samples: list, steps: int, trajectory: bool):
        """(sample, prediction, trajectory) per sample; sample i draws its noise from eval_seed + i."""
        import torch

        for start in range(0, len(samples), config.eval_batch):
            chunk = samples[start : start + config.eval_batch]
            generators = [torch.Generator().manual_seed(config.eval_seed + start + i) for i in range(len(chunk))]
            out = pipe([s.image for s in chunk], num_inference_steps=steps, ensemble_size=1, generator=generators,
                       output_trajectory=trajectory, show_progress=False)
            predictions = out.prediction[:, :, :, 0]
            if pipe.config.prediction_type == "disparity":
                predictions = 1.0 - predictions
            trajectories = out.trajectories if trajectory else [None] * len(chunk)
            yield from zip(chunk, predictions, trajectories, strict=True)

    def score(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Scores:
        from addp_agent.data.depth_sources import depth_range
        from addp_agent.depth_metrics import DepthMetrics, evaluate_depth

        limits = depth_range(config.source)
        metrics, ids, skipped = DepthMetrics(), [], 0
        for sample, prediction, _ in self._run(config, pipe, samples, setting.steps, trajectory=False):
            try:
                metrics.add(evaluate_depth(np.asarray(prediction), sample.depth, sample.valid, limits.min_depth,
                                           limits.max_depth))
            except ValueError:  # too few valid pixels: not scored
                skipped += 1
                continue
            ids.append(sample.sample_id)
        result = metrics.to_dict()
        return Scores(metrics={"abs_rel": result["abs_rel"], "delta1": result["delta1"], "rmse": result["rmse"],
                               "n": result["n"], "skipped": skipped}, ids=ids)

    def curve(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Curve:
        from addp_agent.data.depth_sources import depth_range
        from addp_agent.depth_metrics import evaluate_depth
        from addp_agent.eval.depth import CurveAccumulator

        limits = depth_range(config.source)
        accumulator = CurveAccumulator()
        for sample, prediction, trajectory in self._run(config, pipe, samples, config.curve_steps, trajectory=True):
            try:
                evaluate_depth(np.asarray(prediction), sample.depth, sample.valid, limits.min_depth, limits.max_depth)
            except ValueError:  # the samples the scores skip
                continue
            accumulator.add(trajectory, sample.depth, sample.valid, limits, None)
        summary = accumulator.summary(int(pipe.scheduler.config.num_train_timesteps))
        if summary is None:
            return Curve(metric="abs_rel", timesteps=[], values=[], n=0)
        return Curve(metric="abs_rel", timesteps=[int(t) for t in summary["timesteps"]],
                     values=[float(v) for v in summary["abs_rel"]], n=int(summary["n"]))

    def unet_passes(self, config: EffectsConfig, setting: SamplerSetting) -> int:
        return setting.steps
