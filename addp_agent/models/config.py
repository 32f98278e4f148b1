"""Sizes of the models built here (pydantic only: training configs and the CLI read them without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SchedulerName = Literal["ddim", "euler_ancestral"]


class TextEncoderConfig(BaseModel):
    """A small CLIP text transformer trained from scratch with the UNet."""

    model_config = ConfigDict(frozen=True)
    hidden_size: int = 128
    layers: int = 2
    heads: int = 4
    max_length: int = 32


class PixelModelConfig(BaseModel):
    """A pixel-space InstructPix2Pix-style model.

    Pixels are packed into ``patch_size``² × 3 channels (space-to-depth), so the UNet sees the noisy sample and
    the condition image on a (resolution / patch_size)² grid: 2 × 48 input channels at 16×16 by default.
    """

    model_config = ConfigDict(frozen=True)
    resolution: int = 64
    patch_size: int = 4
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    text: TextEncoderConfig = TextEncoderConfig()
    prediction_type: Literal["sample", "epsilon", "v_prediction"] = "sample"
    scheduler: SchedulerName = "ddim"
