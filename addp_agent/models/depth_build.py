"""Build depth models locally (no download): the pixel-space depth model and a tiny Marigold-format model for tests."""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from pydantic import BaseModel, ConfigDict, Field, model_validator

from addp_agent.models.config import NORM_GROUPS, check_unet_shape


class PixelDepthModelConfig(BaseModel):
    """A pixel-space Marigold-style depth model (no VAE, no text encoder).

    The image (3 channels) and the depth (1 channel) are packed into ``patch_size``² channels each, so the UNet sees
    4·p² channels on a (resolution / p)² grid and predicts p² depth channels. Default: 128 px, p = 4 → 64 → 16
    channels at 32×32, self-attention only at the coarsest level (8×8). Sized for ≤ 0.3 s per image on a 2-core CPU
    at ``default_steps`` (docs/depth.md has the benchmark).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    resolution: int = Field(128, ge=1, le=4096)
    patch_size: int = Field(4, ge=1, le=64)
    block_out_channels: tuple[int, ...] = (64, 128, 192)
    down_block_types: tuple[Literal["DownBlock2D", "AttnDownBlock2D"], ...] = ("DownBlock2D", "DownBlock2D",
                                                                             "AttnDownBlock2D")
    up_block_types: tuple[Literal["UpBlock2D", "AttnUpBlock2D"], ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    mid_block_type: Literal["UNetMidBlock2D"] | None = "UNetMidBlock2D"
    layers_per_block: int = Field(1, ge=1)
    attention_head_dim: int = Field(8, ge=1)
    norm_num_groups: int = Field(NORM_GROUPS, ge=1)
    prediction_type: Literal["v_prediction", "sample", "epsilon"] = "v_prediction"
    timestep_spacing: Literal["trailing", "leading", "linspace"] = "trailing"
    default_steps: int = 2

    @model_validator(mode="after")
    def _check(self) -> PixelDepthModelConfig:
        check_unet_shape(self.resolution, self.patch_size, self.block_out_channels, self.down_block_types,
                         self.up_block_types, self.norm_num_groups)
        if self.default_steps < 1:
            raise ValueError("default_steps must be ≥ 1")
        return self


def depth_scheduler(prediction_type: str = "v_prediction", timestep_spacing: str = "trailing") -> DDIMScheduler:
    """Marigold's DDIM: SD scaled-linear β (0.00085 → 0.012, T = 1000), no clipping, α_final from ᾱ_0."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing=timestep_spacing)


def build_pixel_depth_pipeline(config: PixelDepthModelConfig = PixelDepthModelConfig(), seed: int = 0):
    """A randomly initialised pixel-space :class:`~addp_agent.engine.depth_pipeline.DepthPipeline`."""
    from addp_agent.engine.depth_pipeline import DepthPipeline

    torch.manual_seed(seed)
    depth_channels = config.patch_size**2
    unet = UNet2DConditionModel(
        sample_size=config.resolution // config.patch_size, in_channels=4 * depth_channels,
        out_channels=depth_channels, block_out_channels=config.block_out_channels,
        down_block_types=config.down_block_types, up_block_types=config.up_block_types,
        mid_block_type=config.mid_block_type, layers_per_block=config.layers_per_block, cross_attention_dim=8,
        attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups,
    )
    return DepthPipeline(unet=unet, scheduler=depth_scheduler(config.prediction_type, config.timestep_spacing),
                         prediction_type="depth", default_denoising_steps=config.default_steps,
                         default_processing_resolution=config.resolution, pixel_patch_size=config.patch_size)


def tiny_marigold_components(seed: int = 0, timestep_spacing: str = "trailing") -> dict:
    """Components of a tiny Marigold-format model (the shapes diffusers' Marigold tests use): UNet 8 → 4 channels,
    a 2-level VAE, a small CLIP text encoder and the local tokenizer, DDIM v-prediction."""
    from addp_agent.models.build import TextEncoderConfig, build_text_encoder

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_encoder, tokenizer = build_text_encoder(TextEncoderConfig(hidden_size=32, layers=2, heads=4), seed)
    return {"unet": unet, "vae": vae, "scheduler": depth_scheduler("v_prediction", timestep_spacing),
            "text_encoder": text_encoder, "tokenizer": tokenizer}
