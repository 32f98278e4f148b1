"""The ADDP training loop (accelerate): timestep-aware sampling, diffusion-tailored augmentation, x₀ or ε loss.

Runs unchanged on one CPU, one GPU or many under ``accelerate launch``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from addp_agent import presets
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.engine.sampling import set_resolution
from addp_agent.errors import UserError
from addp_agent.train.augment import augment_ris_targets, paint
from addp_agent.train.checkpoints import (
    append_log,
    check_run_folder,
    export_ema,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from addp_agent.train.config import TrainConfig
from addp_agent.train.data import TrainingData, check_sources, load_training_data
from addp_agent.train.plan import RunPlan, accumulation_steps, plan_run
from addp_agent.train.recipe import find_recipe
from addp_agent.train.timesteps import PRESETS, TimestepSampler


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def _ema(model: torch.nn.Module, config: TrainConfig, foreach: bool = False):
    """EMA of ``model``; warm-up ``power``: decay 1 − (1 + n)^−¾, ``ldm``: (1 + n)/(10 + n), capped at ``ema_decay``."""
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=config.ema_warmup == "power",
                    inv_gamma=1.0, power=3 / 4, foreach=foreach)


def lr_factor(config: TrainConfig, step_index: int, progress: float) -> float:
    """Linear warm-up, then constant or a cosine from 1 to ``min_lr_ratio`` over ``progress`` ∈ [0, 1]."""
    warm = min(1.0, (step_index + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "constant":
        return warm
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def training_progress(config: TrainConfig, step: int, elapsed_s: float, steps: int | None = None) -> float:
    """How far training is: steps done (of ``steps``, default ``config.steps``), or time used when ``max_minutes``
    runs out first."""
    by_steps = step / max(1, steps or config.steps)
    return max(by_steps, elapsed_s / (60 * config.max_minutes)) if config.max_minutes else by_steps


@dataclass
class TrainingRun:
    """What one training run works on: the model, its prepared modules, optimiser, schedules, EMA, data, samplers."""

    config: TrainConfig
    accelerator: Any
    pipe: ADDPPipeline
    unet: torch.nn.Module  # prepared by accelerate (possibly DDP-wrapped)
    text_encoder: torch.nn.Module
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_schedule: Any
    ema_unet: Any
    ema_text: Any
    noise_scheduler: Any
    sampler: TimestepSampler
    data: TrainingData
    device_generator: torch.Generator | None  # None: every draw comes from the CPU generator
    plan: RunPlan
    schedule_at: dict[str, float] = field(default_factory=lambda: {"progress": 0.0})  # read by the lr schedule
    elapsed_before: float = 0.0  # training time of the runs this one resumes
    started: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def elapsed(self, shared: bool = True) -> float:
        """Training time; with several processes the main process's clock, so every process takes the same lr
        and stops at the same step (a stop that differed between processes would hang the next collective)."""
        seconds = self.elapsed_before + time.perf_counter() - self.started
        accelerator = self.accelerator
        if shared and accelerator.num_processes > 1 and self.config.max_minutes is not None:
            from accelerate.utils import broadcast

            seconds = float(broadcast(torch.tensor([seconds], device=accelerator.device), from_process=0)[0])
        return seconds


def make_accelerator(config: TrainConfig):
    """An Accelerator for this run; processes launched on a machine without a GPU train on the CPU (gloo)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    AcceleratorState._reset_state()  # a later train() in this process may ask another precision; process group stays
    accelerator = Accelerator(cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not gpu,
                              mixed_precision=config.mixed_precision)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return accelerator


def _model(config: TrainConfig, pipe: ADDPPipeline | None = None) -> ADDPPipeline:
    """The pipeline to train (fp32 master weights; ``pipe`` when given), its scheduler predicting what training
    targets, at the configured resolution."""
    if pipe is not None:
        if pipe.unet.dtype != torch.float32:
            pipe.to(torch.float32)
    elif config.init_from:
        from addp_agent.models.registry import load_pipeline

        pipe = load_pipeline(config.init_from, device="cpu", dtype=torch.float32)
    else:
        from addp_agent.models.build import build_pixel_pipeline

        pipe = build_pixel_pipeline(config.model, seed=config.seed)
    pipe.set_progress_bar_config(disable=True)
    if config.resolution is not None:
        set_resolution(pipe, config.resolution)
    if pipe.scheduler.config.get("prediction_type") != config.parameterization:  # inference must match training
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=config.parameterization))
    return pipe


def prepare_run(config: TrainConfig, accelerator, pipe: ADDPPipeline | None = None) -> TrainingRun:
    """Model (``pipe``, or as the config says), data, samplers, optimiser, lr schedule and EMA, prepared for
    ``accelerator``, with the run's plan (its gradient accumulation is set on ``accelerator``)."""
    from diffusers import DDPMScheduler

    torch.manual_seed(config.seed + accelerator.process_index)
    pipe = _model(config, pipe)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    sampler = TimestepSampler.from_preset(config.timesteps, int(noise_scheduler.config.num_train_timesteps),
                                          config.timesteps_file, noise_scheduler.betas.double().numpy())
    data = load_training_data(config, pipe)
    plan = plan_run(config, accelerator.num_processes, len(data))
    accelerator.gradient_accumulation_steps = plan.accumulation
    device_generator = None
    if config.data_device == "auto" and accelerator.device.type == "cuda" and data.nbytes < 8 * 2**30:
        data = data.to(accelerator.device)  # batches, augmentation and noise never leave the GPU
        device_generator = torch.Generator(accelerator.device).manual_seed(
            config.seed * 1000 + accelerator.process_index + 7919)
    unet, text_encoder = pipe.unet, pipe.text_encoder
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    text_encoder.requires_grad_(config.train_text_encoder)
    if pipe.vae is not None:
        pipe.vae.requires_grad_(False)
        pipe.vae.to(accelerator.device)
    params = list(unet.parameters()) + (list(text_encoder.parameters()) if config.train_text_encoder else [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule_at = {"progress": 0.0}  # updated every step (the schedule may depend on wall time)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                    lambda i: lr_factor(config, i, schedule_at["progress"]))
    if config.train_text_encoder:
        unet, text_encoder, optimizer, lr_schedule = accelerator.prepare(unet, text_encoder, optimizer, lr_schedule)
    else:  # DDP refuses a module without trainable parameters
        unet, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
        text_encoder.to(accelerator.device)
    foreach = accelerator.device.type == "cuda"
    ema_unet = _ema(accelerator.unwrap_model(unet), config, foreach)
    ema_text = _ema(accelerator.unwrap_model(text_encoder), config, foreach)
    accelerator.register_for_checkpointing(ema_unet, ema_text)
    return TrainingRun(config, accelerator, pipe, unet, text_encoder, params, optimizer, lr_schedule, ema_unet,
                       ema_text, noise_scheduler, sampler, data, device_generator, plan, schedule_at)


def _resume(run: TrainingRun) -> int:
    """Load the newest checkpoint, if any; returns the step it reached (0 for a new run)."""
    latest = latest_checkpoint(run.checkpoints)
    if latest is None:
        return 0
    step, run.elapsed_before = load_checkpoint(run.accelerator, latest)
    run.ema_unet.to(run.accelerator.device)  # load_state leaves the EMA shadow weights on the CPU
    run.ema_text.to(run.accelerator.device)
    run.accelerator.print(f"resumed from {latest} at step {step}")
    return step


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the folder of the final EMA pipeline."""
    from tqdm.auto import tqdm

    if config.timesteps not in PRESETS:
        raise UserError(f"unknown --timesteps {config.timesteps!r}; use one of {', '.join(PRESETS)}")
    recipe = find_recipe(config.recipe) if config.recipe is not None else None
    accelerator = make_accelerator(config)
    if recipe is not None:
        accelerator.print("\n".join(presets.describe(recipe, config.model_dump(mode="json"), "recipe",
                                                      presets.as_flag)))
    accumulation_steps(config, accelerator.num_processes)  # bad sizes and data fail before the model loads
    check_sources(config)
    check_run_folder(Path(config.out), config.data_cache)
    run = prepare_run(config, accelerator)
    steps = run.plan.steps
    start_step = step = _resume(run)
    accelerator.print(run.plan.describe())
    accelerator.print(f"training on {accelerator.num_processes} process(es), device {accelerator.device}")
    if accelerator.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        (run.out / "train_config.json").write_text(config.model_dump_json(indent=2))
        (run.out / "recipe.json").write_text(json.dumps(
            {"recipe": presets.record(recipe, config.model_dump(mode="json")) if recipe else None,
             "plan": run.plan.model_dump()}, indent=2))
    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index + start_step)
    bar = tqdm(total=steps, initial=start_step, disable=not (progress and accelerator.is_main_process),
               desc="train", dynamic_ncols=True)
    run.started = last_log = time.perf_counter()
    run.schedule_at["progress"] = training_progress(config, step, run.elapsed(), run.plan.steps)
    try:
        while step < steps:
            spent = run.elapsed()
            # a new run takes one step whatever the budget, so there is always a model to export
            if config.max_minutes is not None and step > 0 and spent >= 60 * config.max_minutes:
                if step > start_step:  # the time budget ends the run: finish it like the last step
                    _end_of_step(run, step, {"step": step, "elapsed_s": round(run.elapsed(), 1),
                                             "stopped_by": "time"}, bar, finished=True, stopped_by="time")
                break
            loss = optimisation_step(run, generator, step, spent)
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}")
            row: dict[str, float | int] = {}
            if step % config.log_every == 0:
                now = time.perf_counter()
                row = {"step": step, "loss": loss, "lr": run.lr_schedule.get_last_lr()[0],
                       "steps_per_s": config.log_every / (now - last_log), "elapsed_s": round(run.elapsed(), 1)}
                last_log = now
            _end_of_step(run, step, row, bar, finished=step == steps)
    except KeyboardInterrupt:
        save_checkpoint(accelerator, run.checkpoints, step, run.elapsed(shared=False))
        accelerator.print(f"\ninterrupted: checkpoint at step {step} saved in {run.checkpoints}; rerun to resume")
        raise
    finally:
        bar.close()
    return run.out / "model"


def accumulate_gradients(run: TrainingRun, generator: torch.Generator) -> float:
    """Forward and backward of ``plan.accumulation`` micro-batches under ``accelerator.accumulate`` (gradients of
    their mean loss, synchronised across processes on the last one); returns the mean loss."""
    accelerator = run.accelerator
    models = (run.unet, run.text_encoder) if run.config.train_text_encoder else (run.unet,)
    losses = []
    for _ in range(run.plan.accumulation):
        with accelerator.accumulate(*models):
            losses.append(_train_step(run.config, run.pipe, run.unet, run.text_encoder, run.data, run.sampler,
                                      run.noise_scheduler, generator, accelerator,
                                      int(run.noise_scheduler.config.num_train_timesteps), run.device_generator))
    return sum(losses) / len(losses)


def optimisation_step(run: TrainingRun, generator: torch.Generator, step: int, spent: float = 0.0) -> float:
    """Accumulated forward and backward, clip, optimiser and lr steps, EMA update; returns the loss (raises on
    NaN/inf)."""
    config, accelerator = run.config, run.accelerator
    loss = accumulate_gradients(run, generator)
    if not math.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss} at step {step + 1}; the last good checkpoint is "
                               f"{latest_checkpoint(run.checkpoints) or 'none'} (lower --lr and resume)")
    if config.max_grad_norm is not None:
        accelerator.clip_grad_norm_(run.params, config.max_grad_norm)
    run.optimizer.step()
    run.schedule_at["progress"] = training_progress(config, step + 1, spent, run.plan.steps)
    run.lr_schedule.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.ema_unet.step(accelerator.unwrap_model(run.unet).parameters())
    if config.train_text_encoder:
        run.ema_text.step(accelerator.unwrap_model(run.text_encoder).parameters())
    return loss


def _end_of_step(run: TrainingRun, step: int, record: dict, bar, finished: bool, stopped_by: str = "steps") -> None:
    """Validate, log, checkpoint and export when due: every ``val_every``/``checkpoint_every`` steps, and at the
    end of the run (the last step, or the step the time budget stopped at)."""
    config = run.config
    if config.val_every and (finished or step % config.val_every == 0):
        record.update({"step": step, **validate(config, run.pipe, run.ema_unet, run.ema_text, run.accelerator)})
    _log(run.accelerator, run.out / "log.jsonl", record, bar)
    if finished or step % config.checkpoint_every == 0:
        save_checkpoint(run.accelerator, run.checkpoints, step, run.elapsed())
        export_ema(run.pipe, run.ema_unet, run.ema_text, run.accelerator, run.out / "model", config, step, finished,
                   stopped_by)


def _log(accelerator, path: Path, record: dict, bar) -> None:
    summary = (f"step {record['step']}: val mIoU {record['val_mIoU']:.3f} oIoU {record['val_oIoU']:.3f}"
               if "val_mIoU" in record else None)
    append_log(accelerator, path, record, bar, summary)


@dataclass
class RISBatch:
    """One training batch of the ADDP RIS recipe, everything the loss reads and what it was made from.

    ``clean`` paints every target of a sample red (their union; a no-target sample stays the unchanged image);
    ``augmented`` is its diffusion-tailored corruption at ``t``. The noisy input comes from the *augmented* target
    (``noisy = √ᾱ_t·x'_0 + √(1−ᾱ_t)·noise``); the regression target from the *clean* one (x₀-prediction: the clean
    latents; ε-prediction: the ε that maps ``noisy`` back to the clean latents).
    """

    t: torch.Tensor
    images: torch.Tensor  # (B, 3, H, W) in [0, 1]
    masks: torch.Tensor  # (B, H, W) bool, the union of each sample's targets
    clean: torch.Tensor  # painted images in [0, 1]
    augmented: torch.Tensor  # augmented painted images in [0, 1] (``clean`` without augmentation)
    clean_latents: torch.Tensor
    noise: torch.Tensor
    noisy: torch.Tensor
    target: torch.Tensor
    condition: torch.Tensor  # image condition, zero where the image is dropped
    input_ids: torch.Tensor  # expressions, the null prompt where the text is dropped
    drop_text: torch.Tensor  # (B,) bool
    drop_image: torch.Tensor  # (B,) bool


def cfg_drops(r: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """InstructPix2Pix's classifier-free-guidance dropout from uniform draws ``r``: text only with chance p, image
    only with chance p, both with chance p (``drop_text``, ``drop_image``)."""
    drop_text = (r < p) | ((r >= 2 * p) & (r < 3 * p))
    drop_image = (r >= p) & (r < 3 * p)
    return drop_text, drop_image


def make_batch(config: TrainConfig, pipe, data: TrainingData, sampler: TimestepSampler, noise_scheduler,
               generator: torch.Generator, device: torch.device | str, num_timesteps: int = 1000,
               device_generator: torch.Generator | None = None) -> RISBatch:
    """Draw one batch: indices, timesteps and CFG dropout from the CPU ``generator``; augmentation and noise from
    ``device_generator`` when the data live on the GPU (else from ``generator`` too)."""
    draws = device_generator or generator
    index = torch.randint(0, len(data), (config.batch_size,), generator=generator)
    images, masks, input_ids = data.batch(index, generator)
    batch = images.shape[0]
    t = sampler.sample(batch, generator)
    clean = paint(images, masks)
    augmented = augment_ris_targets(images, masks, t.to(images.device), num_timesteps, config.augment_intensity,
                                    draws) if config.augment else clean
    with torch.no_grad():
        clean_latents = pipe.target_latents((clean * 2 - 1).to(device))
        augmented_latents = pipe.target_latents((augmented * 2 - 1).to(device)) if config.augment else clean_latents
        condition = pipe.condition_latents((images * 2 - 1).to(device))
    noise = torch.randn(clean_latents.shape, generator=draws, device=draws.device).to(device)
    t = t.to(device)
    noisy = noise_scheduler.add_noise(augmented_latents, noise, t)
    drop_text, drop_image = cfg_drops(torch.rand(batch, generator=generator).to(device), config.cfg_dropout)
    ids = torch.where(drop_text[:, None], data.null_ids.to(device).expand_as(input_ids), input_ids.to(device))
    condition = condition * (~drop_image).to(condition.dtype)[:, None, None, None]
    if config.parameterization == "sample":
        target = clean_latents
    else:  # ε that maps the noisy augmented sample back to the clean target
        alphas = noise_scheduler.alphas_cumprod.to(device)[t].view(-1, 1, 1, 1)
        target = (noisy - alphas.sqrt() * clean_latents) / (1 - alphas).sqrt()
    return RISBatch(t=t, images=images, masks=masks, clean=clean, augmented=augmented, clean_latents=clean_latents,
                    noise=noise, noisy=noisy, target=target, condition=condition, input_ids=ids, drop_text=drop_text,
                    drop_image=drop_image)


def batch_loss(config: TrainConfig, pipe, unet, text_encoder, batch: RISBatch) -> torch.Tensor:
    """MSE between the UNet's prediction for the noisy input (with its image condition and text) and the target;
    ``paint_weight`` > 1 weighs the referent's elements more."""
    embeds = text_encoder(batch.input_ids)[0]
    prediction = unet(torch.cat([batch.noisy, batch.condition], dim=1), batch.t, encoder_hidden_states=embeds).sample
    if config.paint_weight == 1.0:
        return F.mse_loss(prediction.float(), batch.target.float())
    weight = _paint_weights(pipe, batch.masks.to(batch.target.device), config.paint_weight, batch.target)
    return (weight * (prediction.float() - batch.target.float()) ** 2).sum() / weight.sum()


def _train_step(config: TrainConfig, pipe, unet, text_encoder, data: TrainingData, sampler: TimestepSampler,
                noise_scheduler, generator: torch.Generator, accelerator, num_timesteps: int = 1000,
                device_generator: torch.Generator | None = None) -> float:
    """One optimisation step's forward and backward (:func:`make_batch`, :func:`batch_loss`); returns the loss."""
    batch = make_batch(config, pipe, data, sampler, noise_scheduler, generator, accelerator.device, num_timesteps,
                       device_generator)
    loss = batch_loss(config, pipe, unet, text_encoder, batch)
    accelerator.backward(loss)
    return float(accelerator.reduce(loss.detach(), reduction="mean"))  # NaN on any process stops all of them


def _paint_weights(pipe, masks: torch.Tensor, paint_weight: float, like: torch.Tensor) -> torch.Tensor:
    """Per-element loss weights in the model's space: ``paint_weight`` on the referent, 1 elsewhere."""
    m = masks[:, None].float()
    if pipe.vae is None:
        m = F.pixel_unshuffle(m.expand(-1, 3, -1, -1), pipe.vae_scale_factor)
    else:
        m = (F.adaptive_max_pool2d(m, like.shape[-2:]) > 0).float().expand(-1, like.shape[1], -1, -1)
    return 1.0 + (paint_weight - 1.0) * m


@torch.no_grad()
def validate(config: TrainConfig, pipe, ema_unet, ema_text, accelerator) -> dict[str, float]:
    """mIoU/oIoU of the EMA weights on the validation split (main process only); with no-target samples there
    also gIoU, N-acc and T-acc (found = something painted: the model is not calibrated yet)."""
    from addp_agent.generalized_metrics import GeneralizedMetrics
    from addp_agent.metrics import RISMetrics, iou_counts
    from addp_agent.train.data import validation_samples

    if not accelerator.is_main_process or config.val_n <= 0:
        return {}
    unet, text = accelerator.unwrap_model(pipe.unet), accelerator.unwrap_model(pipe.text_encoder)
    ema_unet.store(unet.parameters())
    ema_text.store(text.parameters())
    ema_unet.copy_to(unet.parameters())
    ema_text.copy_to(text.parameters())
    unet.eval()
    text.eval()
    try:
        samples = validation_samples(config, pipe.resolution)
        metrics, generalized = RISMetrics(), GeneralizedMetrics()
        for start in range(0, len(samples), 32):
            chunk = [samples[i] for i in range(start, min(start + 32, len(samples)))]
            out = pipe.segment_batch([s.expression for s in chunk], [s.image for s in chunk],
                                     num_inference_steps=config.val_steps, generator=torch.Generator().manual_seed(0))
            for sample, mask in zip(chunk, out.masks, strict=True):
                counts = iou_counts(mask, sample.mask)
                metrics.add(*counts)
                generalized.add(*counts, sample.n_targets, bool(mask.any()))
        result, extra = metrics.to_dict(), generalized.to_dict()
    finally:
        ema_unet.restore(unet.parameters())
        ema_text.restore(text.parameters())
        unet.train()
        text.train()
    record = {"val_mIoU": result["mIoU"], "val_oIoU": result["oIoU"]}
    if extra["n_no_target"]:
        record |= {"val_gIoU": extra["gIoU"], "val_N-acc": extra["N-acc"], "val_T-acc": extra["T-acc"]}
    return record
