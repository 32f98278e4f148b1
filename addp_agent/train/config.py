"""The settings of one training run (``addp train`` takes its options from here)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from addp_agent.limits import LearningRate, Seed, Steps
from addp_agent.models.config import PixelModelConfig


class TrainConfig(BaseModel):
    """Everything one training run needs; saved as ``train_config.json`` next to the checkpoints."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    out: Path = Field(description="Run folder: checkpoints/, log.jsonl, model/ (EMA pipeline); a run there resumes.")
    data: str = Field("shapes", description="'shapes' or scenes-gen:N:SEED:SIZE[:PRESET[:MODE]][:KNOB=VALUE] "
                                            "(generated in memory) or a loader spec: cris:ROOT:DATASET, "
                                            "refer:ROOT:DATASET:SPLITBY, shapes:DIR, scenes:DIR")
    split: str = Field("train", description="Split of the source to train on.")
    val_split: str = Field("val", description="Split of the source to validate on.")
    n_train: int = Field(50_000, ge=0, description="Training samples (generated, or the first N expressions of a "
                                                   "source; 0: all of a source).")
    data_seed: Seed = Field(0, description="Shapes-Ref seed (val/test are disjoint seed streams).")
    model: PixelModelConfig = PixelModelConfig()
    init_from: str | None = Field(None, description="Fine-tune this pipeline (path or hub id) instead of a new model.")
    resolution: int | None = Field(None, ge=8, description="Working resolution in px: images and targets are resized "
                                                           "to it (default: the model's).")
    train_text_encoder: bool = Field(True, description="Train the text encoder with the UNet.")
    steps: int = Field(10_000, ge=1, description="Optimisation steps.")
    epochs: float | None = Field(None, gt=0, description="Run length in epochs instead of --steps: passes over the "
                                                         "referred objects, one random expression each.")
    batch_size: int = Field(32, ge=1, description="Samples per micro-batch on each process.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimisation step.")
    effective_batch_size: int | None = Field(None, ge=1, description="Samples per optimisation step over all "
                                                                     "processes; sets the gradient accumulation to "
                                                                     "this / (batch size × processes).")
    lr: LearningRate = Field(3e-4, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(1e-2, ge=0.0, le=1.0, allow_inf_nan=False)  # AdamW shrinks by lr·wd ≤ 1 a step
    warmup_steps: int = Field(200, ge=0, description="Linear lr warm-up steps.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="constant | cosine (to "
                                                                               "--min-lr-ratio × lr).")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine schedule: final lr / peak lr.")
    max_minutes: float | None = Field(None, gt=0, description="Stop after this much training time (checkpoint, "
                                                              "export); the cosine decays over whichever of steps "
                                                              "and time runs out first.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field("no", description="no | bf16 | fp16 (autocast; fp32 "
                                                                             "master weights).")
    data_cache: Path | None = Field(None, description="Generated Shapes-Ref / Scenes-3D is kept in this file "
                                                                   "and reused.")
    data_workers: int = Field(0, ge=0, description="Processes generating Shapes-Ref / Scenes-3D "
                                                               "(0: automatic).")
    data_device: Literal["auto", "cpu"] = Field("auto", description="auto: keep the training set, its augmentation "
                                                                     "and the noise on the GPU when it fits (< 8 GiB) "
                                                                     "| cpu: batches are built on the CPU.")
    gradient_checkpointing: bool = Field(False, description="Recompute UNet activations in the backward pass: far "
                                                            "less memory, about a third more UNet compute.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping (none in the recipe file: "
                                                               "no clipping).")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    ema_warmup: Literal["power", "ldm"] = Field("power", description="EMA decay warm-up: power (1 − (1 + n)^−¾) | "
                                                                     "ldm ((1 + n)/(10 + n), the official code's).")
    timesteps: str = Field("ris", description="Timestep sampler: uniform | ris | depth | analytic | estimated.")
    timesteps_file: Path | None = Field(None, description="c_t file for --timesteps estimated "
                                                          "(addp analyze-timesteps).")
    augment: bool = Field(True, description="Diffusion-tailored ground-truth augmentation.")
    augment_intensity: float = Field(0.2, ge=0.0)
    paint_weight: float = Field(1.0, ge=1.0, description="Loss weight of the referent's pixels relative to the rest "
                                                        "(1 = plain MSE, the paper's objective).")
    parameterization: Literal["sample", "epsilon"] = Field("sample", description="sample (x₀, the official RIS "
                                                                                 "code) | epsilon")
    cfg_dropout: float = Field(0.05, ge=0.0, le=1.0, description="Chance of dropping the text, the image, or both, "
                                                                 "per sample.")
    val_every: int = Field(1000, ge=0, description="Steps between validations (0: none).")
    val_n: int = Field(128, ge=1, description="Validation samples.")
    val_steps: Steps = Field(10, description="Denoising steps at validation (and the exported model's default).")
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(50, ge=1, description="Steps between log.jsonl rows (loss, lr, steps/s).")
    seed: Seed = 0
    recipe: str | None = Field(None, description="Start from a named recipe (paper-refcoco: the ADDP paper's RefCOCO "
                                                 "training) or a .json preset; flags given override it.")

    ALTERNATIVES: ClassVar[tuple[tuple[str, ...], ...]] = (("steps", "epochs"),
                                                            ("gradient_accumulation_steps", "effective_batch_size"))
