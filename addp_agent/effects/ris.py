"""The RIS side of the effects study: train an ADDP pixel model, score masks (all samples and the confusable
subset), and the mIoU-vs-timestep curve. Sampling: DDIM with trailing spacing, so one step starts at t = T − 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from addp_agent.effects.config import EffectsConfig, SamplerSetting, Variant, with_count
from addp_agent.effects.task import Curve, Metric, Scores


class RISEffects:
    name = "ris"
    primary = Metric("mIoU", "mIoU", True, True)
    metrics = (Metric("mIoU", "test mIoU", True, True), Metric("oIoU", "test oIoU", True, True),
               Metric("conf_mIoU", "confusable mIoU", True, True), Metric("conf_oIoU", "confusable oIoU", True, True))
    curve_metric = Metric("mIoU", "mIoU of x̂₀", True, True)

    def train_config(self, config: EffectsConfig, variant: Variant, seed_index: int, folder: Path):
        from addp_agent.models.config import PixelModelConfig, TextEncoderConfig
        from addp_agent.train.config import TrainConfig

        channels = config.channels
        cross = len(channels) - 1  # a plain block, then cross-attention blocks
        heads = config.text_heads or (2 if config.text_hidden % 2 == 0 else 1)
        model = PixelModelConfig(resolution=config.model_resolution, block_out_channels=channels,
                                 down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * cross,
                                 up_block_types=("CrossAttnUpBlock2D",) * cross + ("UpBlock2D",),
                                 text=TextEncoderConfig(hidden_size=config.text_hidden, layers=config.text_layers,
                                                        heads=heads))
        kind, _, rest = config.source.partition(":")
        if kind == "shapes-gen":  # the training loop's own Shapes-Ref generator, same N and seed
            parts = rest.split(":")
            data, data_seed = "shapes", int(parts[1]) if len(parts) > 1 else 0
        else:
            data, data_seed = config.source, 0
        steps = config.steps or 1
        return TrainConfig(out=folder, data=data, n_train=config.n_train, data_seed=data_seed, model=model,
                           steps=steps, batch_size=config.batch_size, lr=config.lr, warmup_steps=config.warmup,
                           lr_schedule=config.schedule, max_minutes=config.max_minutes,
                           mixed_precision=config.mixed_precision, paint_weight=config.paint_weight,
                           data_cache=config.folder / "train-data.pt", timesteps=variant.timesteps,
                           augment=variant.augment, val_every=0, checkpoint_every=max(1, steps // 4),
                           log_every=max(1, steps // 50), seed=config.seed + seed_index)

    def train(self, train_config: Any, progress: bool) -> Path:
        from addp_agent.train.loop import train

        return train(train_config, progress=progress)

    def load(self, model_dir: Path) -> Any:
        import torch

        from addp_agent.engine import ADDPPipeline

        pipe = ADDPPipeline.from_pretrained(model_dir)
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                                         timestep_spacing="trailing"))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to("cuda") if torch.cuda.is_available() else pipe

    def samples(self, config: EffectsConfig, split: str, n: int) -> list:
        from addp_agent.data.sources import load_source

        return list(load_source(with_count(config.source, n), split=split))

    def _run(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting, steps: int,
             trajectory: bool):
        """(sample, final mask, trajectory) per sample; sample i draws its noise from eval_seed + i."""
        from addp_agent.engine.pipeline import seeded_generators

        for start in range(0, len(samples), config.eval_batch):
            chunk = samples[start : start + config.eval_batch]
            out = pipe.segment_batch(
                [s.expression for s in chunk], [s.image for s in chunk], num_inference_steps=steps,
                guidance_scale=setting.guidance_scale, image_guidance_scale=config.image_guidance,
                generator=seeded_generators([config.eval_seed + start + i for i in range(len(chunk))]),
                trajectory_every=1 if trajectory else 0)
            trajectories = out.trajectories if trajectory else [None] * len(chunk)
            yield from zip(chunk, out.masks, trajectories, strict=True)

    def score(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Scores:
        from addp_agent.metrics import RISMetrics

        every, confusable = RISMetrics(), RISMetrics()
        ids = []
        for sample, mask, _ in self._run(config, pipe, samples, setting, setting.steps, trajectory=False):
            every.update(mask, sample.mask)
            if sample.confusable:
                confusable.update(mask, sample.mask)
            ids.append(sample.sample_id)
        a, c = every.to_dict(), confusable.to_dict()
        return Scores(metrics={"mIoU": a["mIoU"], "oIoU": a["oIoU"], "conf_mIoU": c["mIoU"],
                               "conf_oIoU": c["oIoU"], "n": a["n"], "n_conf": c["n"]}, ids=ids)

    def curve(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Curve:
        from addp_agent.metrics import RISMetrics

        per_step: list[RISMetrics] = []
        timesteps: list[int] = []
        for sample, _, trajectory in self._run(config, pipe, samples, setting, config.curve_steps, trajectory=True):
            if not per_step:
                per_step = [RISMetrics() for _ in trajectory]
                timesteps = [int(point.timestep) for point in trajectory]
            for metrics, point in zip(per_step, trajectory, strict=True):
                metrics.update(point.mask, sample.mask)
        return Curve(metric="mIoU", timesteps=timesteps, values=[m.to_dict()["mIoU"] for m in per_step],
                     n=len(samples))

    def unet_passes(self, config: EffectsConfig, setting: SamplerSetting) -> int:
        from addp_agent.engine.guidance import guidance_branches

        return setting.steps * guidance_branches(setting.guidance_scale or 1.0, config.image_guidance)
