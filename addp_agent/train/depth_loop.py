"""The ADDP depth training loop (accelerate): depth timesteps, blur augmentation, clean target, v- or x₀-prediction.

Runs unchanged on one CPU, one GPU or many under ``accelerate launch``; resumes from the newest checkpoint in
``out/checkpoints``; validates the EMA weights with AbsRel and δ1; exports the EMA pipeline to ``out/model``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.errors import UserError
from addp_agent.limits import LearningRate, Seed
from addp_agent.models.depth_build import PixelDepthModelConfig
from addp_agent.train.checkpoints import (
    append_log,
    check_run_folder,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from addp_agent.train.depth_data import DepthTrainingData, load_depth_training_data
from addp_agent.train.depth_recipe import (
    MULTIRES_STRENGTH,
    blur_depth,
    latent_loss_mask,
    masked_mse,
    multi_resolution_noise,
    pixel_loss_mask,
    training_pair,
)
from addp_agent.train.timesteps import PRESETS, TimestepSampler


class DepthTrainConfig(BaseModel):
    """Everything one depth training run needs; saved as ``train_config.json`` next to the checkpoints."""

    model_config = ConfigDict(extra="forbid")
    out: Path
    data: str = Field("scenes-gen:20000:0:128", description="Depth source spec (see data/depth_sources.py).")
    split: str = "train"
    n_train: int | None = Field(None, ge=1, description="Use the first N training samples of the source.")
    val_data: str | None = Field(None, description="Validation source (default: --data's validation split).")
    val_split: str = "val"
    model: PixelDepthModelConfig = PixelDepthModelConfig()
    init_from: str | None = Field(None, description="Fine-tune this depth pipeline (folder or cached hub id).")
    steps: int = Field(20_000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: LearningRate = 3e-4
    weight_decay: float = Field(1e-2, ge=0, le=1.0, allow_inf_nan=False)  # AdamW shrinks by lr·wd ≤ 1 a step
    warmup_steps: int = Field(100, ge=0)
    lr_schedule: Literal["constant", "cosine", "exponential"] = Field(
        "exponential", description="exponential: Marigold's decay to final_lr_ratio × lr over the run.")
    final_lr_ratio: float = Field(0.01, gt=0, le=1)
    max_minutes: float | None = Field(None, gt=0)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    max_grad_norm: float = Field(1.0, gt=0.0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    timesteps: str = Field("depth", description="uniform | ris | depth | analytic | estimated")
    timesteps_file: Path | None = None
    augment: bool = Field(True, description="ADDP blur augmentation of the normalised ground truth.")
    augment_intensity: float = Field(10.0, ge=0)
    parameterization: Literal["v_prediction", "sample"] = "v_prediction"
    multires_noise: bool = Field(True, description="Marigold's annealed multi-resolution noise (strength 0.9·t/T).")
    hflip: float = Field(0.5, ge=0, le=1)
    data_cache: Path | None = Field(None, description="Keep the prepared training set in this file and reuse it.")
    val_every: int = Field(1000, ge=0)
    val_n: int = Field(64, ge=0)
    val_steps: int | None = Field(None, ge=1, description="Denoising steps for validation (default: the model's).")
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1)
    seed: Seed = 0


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass
class DepthBatch:
    """One training batch in the model's space: UNet inputs, target and loss mask, with what built them."""

    t: torch.Tensor
    sigmas: torch.Tensor  # blur σ per sample (0 without augmentation)
    condition: torch.Tensor
    clean: torch.Tensor  # z of the clean normalised depth
    augmented: torch.Tensor  # z of the blurred one (= clean without augmentation)
    noise: torch.Tensor
    noisy: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor


def lr_factor(config: DepthTrainConfig, step_index: int, progress: float) -> float:
    """Linear warm-up, then constant, cosine or exponential (to ``final_lr_ratio``) over ``progress`` ∈ [0, 1]."""
    warm = min(1.0, (step_index + 1) / max(1, config.warmup_steps))
    progress = min(1.0, max(0.0, progress))
    if config.lr_schedule == "constant":
        return warm
    if config.lr_schedule == "cosine":
        return warm * (config.final_lr_ratio + (1 - config.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    return warm * math.exp(progress * math.log(config.final_lr_ratio))


def make_sampler(config: DepthTrainConfig, noise_scheduler) -> TimestepSampler:
    if config.timesteps not in PRESETS:
        raise UserError(f"unknown --timesteps {config.timesteps!r}; use one of {', '.join(PRESETS)}")
    return TimestepSampler.from_preset(config.timesteps, int(noise_scheduler.config.num_train_timesteps),
                                       config.timesteps_file, noise_scheduler.betas.double().numpy())


@torch.no_grad()
def make_batch(config: DepthTrainConfig, pipe, data: DepthTrainingData, sampler: TimestepSampler,
               alphas_cumprod: torch.Tensor, generator: torch.Generator, device: torch.device) -> DepthBatch:
    """Draw samples, timesteps, blur and noise; build the noisy input from the blurred depth and the target from
    the clean one (module docstring of ``depth_recipe``)."""
    count = len(data)
    index = torch.randint(0, count, (config.batch_size,), generator=generator)
    flip = torch.rand(config.batch_size, generator=generator) < config.hflip
    images, depth, valid = data.batch(index, flip)
    images, depth, valid = images.to(device), depth.to(device), valid.to(device)
    num_timesteps = alphas_cumprod.shape[0]
    t = sampler.sample(config.batch_size, generator).to(device)
    if config.augment:
        blurred, sigmas = blur_depth(depth, t, num_timesteps, config.augment_intensity, generator)
    else:
        blurred, sigmas = depth, torch.zeros(config.batch_size, device=device)
    dtype = pipe.unet.dtype
    condition = pipe.image_to_model(images.to(dtype))
    clean = pipe.depth_to_model(depth.to(dtype))
    augmented = pipe.depth_to_model(blurred.to(dtype)) if config.augment else clean
    strength = MULTIRES_STRENGTH * t.float() / num_timesteps
    if pipe.vae is None:  # noise drawn in pixel space, then packed like the depth
        shape = tuple(depth.shape)
        noise = (multi_resolution_noise(shape, strength, generator, device) if config.multires_noise
                 else torch.randn(shape, generator=generator).to(device))
        noise = torch.nn.functional.pixel_unshuffle(noise, pipe.vae_scale_factor)
        mask = pixel_loss_mask(valid, pipe.vae_scale_factor)
    else:
        shape = tuple(clean.shape)
        noise = (multi_resolution_noise(shape, strength, generator, device) if config.multires_noise
                 else torch.randn(shape, generator=generator).to(device))
        mask = latent_loss_mask(valid, pipe.vae_scale_factor, clean.shape[1])
    noisy, target = training_pair(alphas_cumprod, clean.float(), augmented.float(), noise.float(), t,
                                  config.parameterization)
    return DepthBatch(t=t, sigmas=sigmas, condition=condition, clean=clean, augmented=augmented, noise=noise,
                      noisy=noisy.to(dtype), target=target, mask=mask)


def batch_loss(unet, batch: DepthBatch, text_embeds: torch.Tensor) -> torch.Tensor:
    """The objective: masked MSE between the UNet's output for [image, noisy depth] and the target."""
    embeds = text_embeds.expand(batch.noisy.shape[0], -1, -1)
    prediction = unet(torch.cat([batch.condition, batch.noisy], dim=1), batch.t, encoder_hidden_states=embeds).sample
    return masked_mse(prediction, batch.target, batch.mask)


def _build_pipeline(config: DepthTrainConfig):
    from addp_agent.models.depth_build import build_pixel_depth_pipeline

    if config.init_from:
        from addp_agent.models.registry import load_depth_pipeline

        pipe = load_depth_pipeline(config.init_from, device="cpu", dtype=torch.float32, progress=False)
    else:
        pipe = build_pixel_depth_pipeline(config.model, seed=config.seed)
    pipe.set_progress_bar_config(disable=True)
    if pipe.scheduler.config.get("prediction_type") != config.parameterization:  # inference must match training
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=config.parameterization))
    return pipe


def _validation_samples(config: DepthTrainConfig) -> list:
    from itertools import islice

    from addp_agent.data.depth_sources import load_depth_source

    if config.val_every == 0 or config.val_n == 0:
        return []
    samples = list(islice(iter(load_depth_source(config.val_data or config.data, config.val_split)), config.val_n))
    if not samples:
        raise UserError(f"{config.val_data or config.data}: validation split {config.val_split!r} is empty "
                        "(set --val-every 0)")
    return samples


def train_depth(config: DepthTrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the folder of the final EMA pipeline."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    gpu = torch.cuda.is_available()
    AcceleratorState._reset_state()
    accelerator = Accelerator(cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not gpu,
                              mixed_precision=config.mixed_precision)
    out = Path(config.out)
    checkpoints = out / "checkpoints"
    check_run_folder(out, config.data_cache)
    torch.manual_seed(config.seed + accelerator.process_index)
    pipe = _build_pipeline(config)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    sampler = make_sampler(config, noise_scheduler)
    resolution = config.model.resolution if not config.init_from else pipe.default_resolution
    data = load_depth_training_data(config.data, config.split, resolution,
                                    int(pipe.image_processor.config.vae_scale_factor), config.n_train,
                                    config.data_cache)
    val_samples = _validation_samples(config) if accelerator.is_main_process else []
    if accelerator.device.type == "cuda" and data.nbytes < 8 * 2**30:
        data = data.to(accelerator.device)

    unet = pipe.unet
    for frozen in (pipe.vae, pipe.text_encoder):
        if frozen is not None:
            frozen.requires_grad_(False)
            frozen.to(accelerator.device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule_at = {"progress": 0.0}
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(config, i, schedule_at["progress"]))
    unet, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
    ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=config.ema_decay, use_ema_warmup=True,
                   inv_gamma=1.0, power=3 / 4, foreach=accelerator.device.type == "cuda")
    accelerator.register_for_checkpointing(ema)

    start_step, elapsed_before = 0, 0.0
    latest = latest_checkpoint(checkpoints)
    if latest is not None:
        start_step, elapsed_before = load_checkpoint(accelerator, latest)
        ema.to(accelerator.device)
        accelerator.print(f"resumed from {latest} at step {start_step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(config.model_dump_json(indent=2))

    text_embeds = pipe.empty_text_embeds().to(accelerator.device)
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(accelerator.device)
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index + start_step)
    bar = tqdm(total=config.steps, initial=start_step, disable=not (progress and accelerator.is_main_process),
               desc="train depth", dynamic_ncols=True)
    step, started, last_log = start_step, time.perf_counter(), time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - started

    def progress_of(done: int) -> float:
        by_steps = done / config.steps
        return max(by_steps, elapsed() / (60 * config.max_minutes)) if config.max_minutes else by_steps

    def finish(record: dict, final: bool, stopped_by: str = "steps") -> None:
        if config.val_every and (final or step % config.val_every == 0):
            record.update({"step": step, **validate_depth(pipe, ema, accelerator, val_samples, config)})
        _log(accelerator, out / "log.jsonl", record, bar)
        if final or step % config.checkpoint_every == 0:
            save_checkpoint(accelerator, checkpoints, step, elapsed())
            export_depth_ema(pipe, ema, accelerator, out / "model", config, step, final, stopped_by)

    schedule_at["progress"] = progress_of(step)
    try:
        while step < config.steps:
            # a new run takes one step whatever the budget, so there is always a model to export
            if config.max_minutes is not None and step > 0 and elapsed() >= 60 * config.max_minutes:
                if step > start_step:
                    finish({"step": step, "stopped_by": "time"}, True, "time")
                break
            batch = make_batch(config, pipe, data, sampler, alphas_cumprod, generator, accelerator.device)
            with accelerator.autocast():
                loss = batch_loss(unet, batch, text_embeds)
            accelerator.backward(loss)
            value = float(accelerator.reduce(loss.detach(), reduction="mean"))
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at step {step + 1}; the last good checkpoint is "
                                       f"{latest_checkpoint(checkpoints) or 'none'} (lower --lr and resume)")
            accelerator.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule_at["progress"] = progress_of(step + 1)
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema.step(accelerator.unwrap_model(unet).parameters())
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{value:.4f}")
            record: dict = {}
            if step % config.log_every == 0:
                now = time.perf_counter()
                record = {"step": step, "loss": value, "lr": lr_schedule.get_last_lr()[0],
                          "steps_per_s": config.log_every / (now - last_log), "elapsed_s": round(elapsed(), 1)}
                last_log = now
            finish(record, step == config.steps)
    except KeyboardInterrupt:
        save_checkpoint(accelerator, checkpoints, step, elapsed())
        accelerator.print(f"\ninterrupted: checkpoint at step {step} saved in {checkpoints}; rerun to resume")
        raise
    finally:
        bar.close()
    return out / "model"


def _log(accelerator, path: Path, record: dict, bar) -> None:
    summary = (f"step {record['step']}: val AbsRel {record['val_abs_rel']:.4f} δ1 {record['val_delta1']:.4f}"
               if "val_abs_rel" in record else None)
    append_log(accelerator, path, record, bar, summary)


@torch.no_grad()
def validate_depth(pipe, ema, accelerator, samples: list, config: DepthTrainConfig) -> dict[str, float]:
    """AbsRel and δ1 of the EMA weights on the validation samples (main process only; seed 0, ensemble 1)."""
    from addp_agent.data.depth_sources import depth_range
    from addp_agent.depth_metrics import DepthMetrics

    if not accelerator.is_main_process or not samples:
        return {}
    unet = accelerator.unwrap_model(pipe.unet)
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.eval()
    limits = depth_range(config.val_data or config.data)
    metrics = DepthMetrics()
    try:
        for sample in samples:
            estimate = pipe.estimate(sample.image, num_inference_steps=config.val_steps, seed=0, show_progress=False)
            try:
                metrics.update(estimate.depth, sample.depth, sample.valid, min_depth=limits.min_depth,
                               max_depth=limits.max_depth)
            except ValueError:  # too few valid pixels: not scored
                continue
    finally:
        ema.restore(unet.parameters())
        unet.train()
    result = metrics.to_dict()
    return {"val_abs_rel": result["abs_rel"], "val_delta1": result["delta1"], "val_n": result["n"]}


def export_depth_ema(pipe, ema, accelerator, folder: Path, config: DepthTrainConfig, step: int,
                     finished: bool = False, stopped_by: str = "steps") -> None:
    """Save the EMA weights as a depth pipeline folder (safetensors) with ``training.json``; weights restored after."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    unet = accelerator.unwrap_model(pipe.unet)
    ema.store(unet.parameters())
    try:
        ema.copy_to(unet.parameters())
        pipe.register_modules(unet=unet)
        if config.val_steps:
            pipe.register_to_config(default_denoising_steps=config.val_steps)
        staging = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        pipe.save_pretrained(staging, safe_serialization=True)
        rows = [json.loads(line) for line in (folder.parent / "log.jsonl").read_text().splitlines()
                if "val_abs_rel" in line] if (folder.parent / "log.jsonl").exists() else []
        metrics = {k: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else {}
        (staging / "training.json").write_text(json.dumps(
            {"task": "depth", "config": json.loads(config.model_dump_json()), "step": step, "finished": finished,
             "stopped_by": stopped_by if finished else None, "metrics": metrics}, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        ema.restore(unet.parameters())
