"""The ADDP training loop (accelerate): timestep-aware sampling, diffusion-tailored augmentation, x₀ or ε loss.

Runs unchanged on one CPU, one GPU or many under ``accelerate launch``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.errors import UserError
from addp_agent.models.build import PixelModelConfig
from addp_agent.train.augment import augment_ris_targets, paint
from addp_agent.train.checkpoints import export_ema, latest_checkpoint, save_checkpoint
from addp_agent.train.data import TrainingData, load_training_data
from addp_agent.train.timesteps import PRESETS, TimestepSampler


class TrainConfig(BaseModel):
    """Everything one training run needs; saved as ``train_config.json`` next to the checkpoints."""

    model_config = ConfigDict(extra="forbid")
    out: Path
    data: str = Field("shapes", description="'shapes' or scenes-gen:N:SEED:SIZE[:PRESET[:MODE]] (generated in "
                                            "memory) or a loader spec: cris:ROOT:DATASET, refer:ROOT:DATASET:SPLITBY, "
                                            "shapes:DIR")
    split: str = "train"
    val_split: str = "val"
    n_train: int = 50_000
    data_seed: int = 0
    model: PixelModelConfig = PixelModelConfig()
    init_from: str | None = None
    train_text_encoder: bool = True
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine schedule: final lr / peak lr.")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this much training time (checkpoint, "
                                                              "export); the cosine decays over whichever of steps "
                                                              "and time runs out first.")
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    data_cache: Path | None = Field(None, description="Generated Shapes-Ref / Scenes-3D is kept in this file "
                                                                   "and reused.")
    data_workers: int = Field(0, ge=0, description="Processes generating Shapes-Ref / Scenes-3D "
                                                               "(0: automatic).")
    data_device: Literal["auto", "cpu"] = Field("auto", description="auto: keep the training set, its augmentation "
                                                                     "and the noise on the GPU when it fits (< 8 GiB)")
    max_grad_norm: float = 1.0
    ema_decay: float = 0.999
    timesteps: str = "ris"
    timesteps_file: Path | None = None
    augment: bool = True
    augment_intensity: float = 0.2
    paint_weight: float = Field(1.0, ge=1.0, description="Loss weight of the referent's pixels relative to the rest "
                                                        "(1 = plain MSE, the paper's objective).")
    parameterization: Literal["sample", "epsilon"] = "sample"
    cfg_dropout: float = 0.05
    val_every: int = 1000
    val_n: int = 128
    val_steps: int = 10
    checkpoint_every: int = 1000
    log_every: int = 50
    seed: int = 0


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


def _ema(model: torch.nn.Module, decay: float, foreach: bool = False):
    from diffusers.training_utils import EMAModel

    return EMAModel(model.parameters(), decay=decay, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4,
                    foreach=foreach)


def lr_factor(config: TrainConfig, step_index: int, progress: float) -> float:
    """Linear warm-up, then constant or a cosine from 1 to ``min_lr_ratio`` over ``progress`` ∈ [0, 1]."""
    warm = min(1.0, (step_index + 1) / max(1, config.warmup_steps))
    if config.lr_schedule == "constant":
        return warm
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return warm * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


def training_progress(config: TrainConfig, step: int, elapsed_s: float) -> float:
    """How far training is: steps done, or time used when ``max_minutes`` runs out first."""
    by_steps = step / max(1, config.steps)
    return max(by_steps, elapsed_s / (60 * config.max_minutes)) if config.max_minutes else by_steps


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the folder of the final EMA pipeline."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from tqdm.auto import tqdm

    from addp_agent.models.build import build_pixel_pipeline

    if config.timesteps not in PRESETS:
        raise UserError(f"unknown --timesteps {config.timesteps!r}; use one of {', '.join(PRESETS)}")
    # processes launched (accelerate launch --multi_gpu / torchrun) on a machine without a GPU train on CPU (gloo)
    gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # a later train() in this process may ask another precision; process group stays
    accelerator = Accelerator(cpu=int(os.environ.get("WORLD_SIZE", "1")) > 1 and not gpu,
                              mixed_precision=config.mixed_precision)
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    out = Path(config.out)
    checkpoints = out / "checkpoints"
    torch.manual_seed(config.seed + accelerator.process_index)

    if config.init_from:
        from addp_agent.models.registry import load_pipeline

        pipe = load_pipeline(config.init_from, device="cpu", dtype=torch.float32)  # fp32 master weights
    else:
        pipe = build_pixel_pipeline(config.model, seed=config.seed)
    pipe.set_progress_bar_config(disable=True)
    if pipe.scheduler.config.get("prediction_type") != config.parameterization:  # inference must match training
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=config.parameterization))
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)
    sampler = TimestepSampler.from_preset(config.timesteps, num_timesteps, config.timesteps_file,
                                          noise_scheduler.betas.double().numpy())
    data = load_training_data(config, pipe)
    device_generator = None  # None: every draw comes from the CPU generator (bit-identical runs on CPU)
    if config.data_device == "auto" and accelerator.device.type == "cuda" and data.nbytes < 8 * 2**30:
        data = data.to(accelerator.device)  # batches, augmentation and noise never leave the GPU
        device_generator = torch.Generator(accelerator.device).manual_seed(
            config.seed * 1000 + accelerator.process_index + 7919)

    unet, text_encoder = pipe.unet, pipe.text_encoder
    text_encoder.requires_grad_(config.train_text_encoder)
    if pipe.vae is not None:
        pipe.vae.requires_grad_(False)
        pipe.vae.to(accelerator.device)
    params = list(unet.parameters()) + (list(text_encoder.parameters()) if config.train_text_encoder else [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule_at = {"progress": 0.0}  # read by the lr schedule; updated every step (it may depend on wall time)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                    lambda i: lr_factor(config, i, schedule_at["progress"]))
    if config.train_text_encoder:
        unet, text_encoder, optimizer, lr_schedule = accelerator.prepare(unet, text_encoder, optimizer, lr_schedule)
    else:  # DDP refuses a module without trainable parameters
        unet, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
        text_encoder.to(accelerator.device)
    foreach = accelerator.device.type == "cuda"
    ema_unet = _ema(accelerator.unwrap_model(unet), config.ema_decay, foreach)
    ema_text = _ema(accelerator.unwrap_model(text_encoder), config.ema_decay, foreach)
    accelerator.register_for_checkpointing(ema_unet, ema_text)

    start_step, elapsed_before = 0, 0.0
    latest = latest_checkpoint(checkpoints)
    if latest is not None:
        try:
            accelerator.load_state(str(latest))
        except (RuntimeError, KeyError, ValueError) as error:
            raise UserError(f"{latest}: checkpoint does not fit this model/config ({error}); "
                            "use a new --out or the same settings") from None
        ema_unet.to(accelerator.device)  # load_state leaves the EMA shadow weights on the CPU
        ema_text.to(accelerator.device)
        marker = json.loads((latest / "step.json").read_text())
        start_step, elapsed_before = int(marker["step"]), float(marker.get("elapsed_s", 0.0))
        accelerator.print(f"resumed from {latest} at step {start_step}")
    accelerator.print(f"training on {accelerator.num_processes} process(es), device {accelerator.device}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(config.model_dump_json(indent=2))

    generator = torch.Generator().manual_seed(config.seed * 1000 + accelerator.process_index + start_step)
    log_path = out / "log.jsonl"
    bar = tqdm(total=config.steps, initial=start_step, disable=not (progress and accelerator.is_main_process),
               desc="train", dynamic_ncols=True)
    step = start_step
    started = last_log = time.perf_counter()

    def elapsed(shared: bool = True) -> float:
        """Training time; with several processes the main process's clock, so every process takes the same lr
        and stops at the same step (a stop that differed between processes would hang the next collective)."""
        seconds = elapsed_before + time.perf_counter() - started
        if shared and accelerator.num_processes > 1 and config.max_minutes is not None:
            from accelerate.utils import broadcast

            seconds = float(broadcast(torch.tensor([seconds], device=accelerator.device), from_process=0)[0])
        return seconds

    schedule_at["progress"] = training_progress(config, step, elapsed())
    stopped_by = "steps"
    try:
        while step < config.steps:
            spent = elapsed()
            if config.max_minutes is not None and spent >= 60 * config.max_minutes:
                stopped_by = "time"
                break
            loss = _train_step(config, pipe, unet, text_encoder, data, sampler, noise_scheduler, generator,
                               accelerator, num_timesteps, device_generator)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} at step {step + 1}; the last good checkpoint is "
                                       f"{latest_checkpoint(checkpoints) or 'none'} (lower --lr and resume)")
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            schedule_at["progress"] = training_progress(config, step + 1, spent)
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)
            ema_unet.step(accelerator.unwrap_model(unet).parameters())
            if config.train_text_encoder:
                ema_text.step(accelerator.unwrap_model(text_encoder).parameters())
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}")
            final = step == config.steps
            record: dict[str, float | int] = {}
            if step % config.log_every == 0:
                now = time.perf_counter()
                record = {"step": step, "loss": loss, "lr": lr_schedule.get_last_lr()[0],
                          "steps_per_s": config.log_every / (now - last_log), "elapsed_s": round(elapsed(), 1)}
                last_log = now
            if config.val_every and (step % config.val_every == 0 or final):
                record.update({"step": step, **validate(config, pipe, ema_unet, ema_text, accelerator)})
            _log(accelerator, log_path, record, bar)
            if step % config.checkpoint_every == 0 or final:
                save_checkpoint(accelerator, checkpoints, step, elapsed())
                export_ema(pipe, ema_unet, ema_text, accelerator, out / "model", config, step, final)
        if stopped_by == "time" and step > start_step:  # the time budget ended the run: finish it like the last step
            record = {"step": step, "elapsed_s": round(elapsed(), 1), "stopped_by": "time"}
            if config.val_every:
                record.update(validate(config, pipe, ema_unet, ema_text, accelerator))
            _log(accelerator, log_path, record, bar)
            save_checkpoint(accelerator, checkpoints, step, elapsed())
            export_ema(pipe, ema_unet, ema_text, accelerator, out / "model", config, step, True, stopped_by)
    except KeyboardInterrupt:
        save_checkpoint(accelerator, checkpoints, step, elapsed(shared=False))
        accelerator.print(f"\ninterrupted: checkpoint at step {step} saved in {checkpoints}; rerun to resume")
        raise
    finally:
        bar.close()
    return out / "model"


def _log(accelerator, path: Path, record: dict, bar) -> None:
    if not record or not accelerator.is_main_process:
        return
    with path.open("a") as log:
        log.write(json.dumps(record) + "\n")
    if "val_mIoU" in record:
        bar.write(f"step {record['step']}: val mIoU {record['val_mIoU']:.3f} oIoU {record['val_oIoU']:.3f}")


def _train_step(config: TrainConfig, pipe, unet, text_encoder, data: TrainingData, sampler: TimestepSampler,
                noise_scheduler, generator: torch.Generator, accelerator, num_timesteps: int = 1000,
                device_generator: torch.Generator | None = None) -> float:
    """One optimisation step's forward and backward; returns the loss value.

    Indices, timesteps and CFG dropout come from the CPU ``generator``; augmentation and noise from
    ``device_generator`` when the data live on the GPU (else from ``generator`` too).
    """
    draws = device_generator or generator
    index = torch.randint(0, len(data), (config.batch_size,), generator=generator)
    images, masks, input_ids = data.batch(index)
    device = accelerator.device
    batch = images.shape[0]
    t = sampler.sample(batch, generator)
    clean = paint(images, masks)
    augmented = augment_ris_targets(images, masks, t.to(images.device), num_timesteps, config.augment_intensity,
                                    draws) if config.augment else clean
    with torch.no_grad():
        target_clean = pipe.target_latents((clean * 2 - 1).to(device))
        target_aug = pipe.target_latents((augmented * 2 - 1).to(device)) if config.augment else target_clean
        condition = pipe.condition_latents((images * 2 - 1).to(device))
    noise = torch.randn(target_clean.shape, generator=draws, device=draws.device).to(device)
    t = t.to(device)
    noisy = noise_scheduler.add_noise(target_aug, noise, t)
    r = torch.rand(batch, generator=generator).to(device)
    p = config.cfg_dropout
    drop_text = (r < p) | ((r >= 2 * p) & (r < 3 * p))
    drop_image = (r >= p) & (r < 3 * p)
    ids = torch.where(drop_text[:, None], data.null_ids.to(device).expand_as(input_ids), input_ids.to(device))
    condition = condition * (~drop_image).to(condition.dtype)[:, None, None, None]
    embeds = text_encoder(ids)[0]
    prediction = unet(torch.cat([noisy, condition], dim=1), t, encoder_hidden_states=embeds).sample
    if config.parameterization == "sample":
        target = target_clean
    else:  # ε that maps the noisy augmented sample back to the clean target
        alphas = noise_scheduler.alphas_cumprod.to(device)[t].view(-1, 1, 1, 1)
        target = (noisy - alphas.sqrt() * target_clean) / (1 - alphas).sqrt()
    if config.paint_weight == 1.0:
        loss = F.mse_loss(prediction.float(), target.float())
    else:
        weight = _paint_weights(pipe, masks.to(device), config.paint_weight, target)
        loss = (weight * (prediction.float() - target.float()) ** 2).sum() / weight.sum()
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
    """mIoU/oIoU of the EMA weights on the validation split (main process only)."""
    from addp_agent.metrics import RISMetrics
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
        metrics = RISMetrics()
        for start in range(0, len(samples), 32):
            chunk = [samples[i] for i in range(start, min(start + 32, len(samples)))]
            out = pipe([s.expression for s in chunk], [s.image for s in chunk], num_inference_steps=config.val_steps,
                       generator=torch.Generator().manual_seed(0), output_type="np", show_progress=False)
            for sample, mask in zip(chunk, out.masks, strict=True):
                metrics.update(mask, sample.mask)
        result = metrics.to_dict()
    finally:
        ema_unet.restore(unet.parameters())
        ema_text.restore(text.parameters())
        unet.train()
        text.train()
    return {"val_mIoU": result["mIoU"], "val_oIoU": result["oIoU"]}
