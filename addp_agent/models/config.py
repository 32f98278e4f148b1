"""Sizes of the models built here (pydantic only: training configs and the CLI read them without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SchedulerName = Literal["ddim", "euler_ancestral"]
DownBlock = Literal["DownBlock2D", "CrossAttnDownBlock2D"]
UpBlock = Literal["UpBlock2D", "CrossAttnUpBlock2D"]
NORM_GROUPS = 8  # group-norm groups of the UNets built here; block widths are multiples of it


class TextEncoderConfig(BaseModel):
    """A small CLIP text transformer trained from scratch with the UNet."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    hidden_size: int = Field(128, ge=1)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    max_length: int = Field(32, ge=2, le=512, description="tokens, with the start and end tokens")

    @model_validator(mode="after")
    def _check(self) -> TextEncoderConfig:
        if self.hidden_size % self.heads:
            raise ValueError(f"text hidden_size {self.hidden_size} is not a multiple of heads {self.heads}")
        return self


class PixelModelConfig(BaseModel):
    """A pixel-space InstructPix2Pix-style model.

    Pixels are packed into ``patch_size``² × 3 channels (space-to-depth), so the UNet sees the noisy sample and
    the condition image on a (resolution / patch_size)² grid: 2 × 48 input channels at 16×16 by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    resolution: int = Field(64, ge=1, le=4096)
    patch_size: int = Field(4, ge=1, le=64)
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    down_block_types: tuple[DownBlock, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    up_block_types: tuple[UpBlock, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    layers_per_block: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    norm_num_groups: int = Field(NORM_GROUPS, ge=1)
    text: TextEncoderConfig = TextEncoderConfig()
    prediction_type: Literal["sample", "epsilon", "v_prediction"] = "sample"
    scheduler: SchedulerName = "ddim"

    @model_validator(mode="after")
    def _check(self) -> PixelModelConfig:
        check_unet_shape(self.resolution, self.patch_size, self.block_out_channels, self.down_block_types,
                         self.up_block_types, self.norm_num_groups)
        return self


def check_unet_shape(resolution: int, patch_size: int, block_out_channels: tuple[int, ...],
                     down_block_types: tuple[str, ...], up_block_types: tuple[str, ...], norm_num_groups: int) -> None:
    """What a pixel UNet would refuse (or crash on) when it is built, said before any work: the resolution a
    multiple of the patch, one block type per level, widths that are positive multiples of the norm groups. Shared
    by the RIS and depth model configs."""
    if resolution % patch_size:
        raise ValueError(f"resolution {resolution} is not a multiple of patch_size {patch_size}")
    if not block_out_channels or not (len(block_out_channels) == len(down_block_types) == len(up_block_types)):
        raise ValueError("block_out_channels, down_block_types and up_block_types need one entry per level")
    if not widths_fit_groups(block_out_channels, norm_num_groups):
        raise ValueError(f"block_out_channels {list(block_out_channels)} must be positive multiples of "
                         f"norm_num_groups {norm_num_groups}")


def widths_fit_groups(widths: tuple[int, ...], groups: int = NORM_GROUPS) -> bool:
    """Whether UNet block widths can be built: at least one, each a positive multiple of the group-norm groups."""
    return bool(widths) and all(c >= 1 and c % groups == 0 for c in widths)
