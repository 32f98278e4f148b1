"""Build fresh ADDP models locally (no download): the small pixel-space model and tiny test models."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from addp_agent.models.config import PixelModelConfig, SchedulerName, TextEncoderConfig
from addp_agent.models.tokenizer import build_tokenizer

# The sampling defaults a model built here is saved with (a folder that names none runs with the stock
# InstructPix2Pix 100 steps / 7.5 / 1.5): the ADDP guidance 3.0 / 1.5 at 20 steps.
RECIPE_DEFAULTS: dict[str, float] = {"default_num_inference_steps": 20, "default_guidance_scale": 3.0,
                                     "default_image_guidance_scale": 1.5}


def build_scheduler(name: SchedulerName, prediction_type: str):
    """The SD scaled-linear β schedule (0.00085 → 0.012, T = 1000) with the chosen sampler."""
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                  prediction_type=prediction_type, steps_offset=1)
    if name == "ddim":
        return DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
    return EulerAncestralDiscreteScheduler(**common)


def build_text_encoder(config: TextEncoderConfig, seed: int = 0) -> tuple[CLIPTextModel, object]:
    """A CLIP text model and the local domain tokenizer, sized to each other."""
    tokenizer = build_tokenizer(model_max_length=config.max_length)
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.hidden_size * 4,
        num_hidden_layers=config.layers, num_attention_heads=config.heads,
        max_position_embeddings=config.max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(text_config), tokenizer


def build_pixel_pipeline(config: PixelModelConfig = PixelModelConfig(), seed: int = 0):
    """A randomly initialised pixel-space ADDPPipeline (no VAE)."""
    from addp_agent.engine.pipeline import ADDPPipeline

    text_encoder, tokenizer = build_text_encoder(config.text, seed)
    torch.manual_seed(seed)
    if config.resolution % config.patch_size:
        raise ValueError(f"resolution {config.resolution} is not a multiple of patch_size {config.patch_size}")
    channels = 3 * config.patch_size**2
    unet = UNet2DConditionModel(
        sample_size=config.resolution // config.patch_size, in_channels=2 * channels, out_channels=channels,
        block_out_channels=config.block_out_channels, down_block_types=config.down_block_types,
        up_block_types=config.up_block_types, layers_per_block=config.layers_per_block,
        cross_attention_dim=config.text.hidden_size, attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
    )
    scheduler = build_scheduler(config.scheduler, config.prediction_type)
    return ADDPPipeline(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=None,
                        pixel_patch_size=config.patch_size, **RECIPE_DEFAULTS)


def build_tiny_latent_pipeline(seed: int = 0, scheduler: SchedulerName = "euler_ancestral",
                               prediction_type: str = "epsilon"):
    """A tiny SD-shaped InstructPix2Pix model with a VAE (the shapes diffusers' own tests use)."""
    from addp_agent.engine.pipeline import ADDPPipeline

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
    )
    text_config = TextEncoderConfig(hidden_size=32, layers=2, heads=4, max_length=32)
    text_encoder, tokenizer = build_text_encoder(text_config, seed)
    return ADDPPipeline(unet=unet, scheduler=build_scheduler(scheduler, prediction_type), text_encoder=text_encoder,
                        tokenizer=tokenizer, vae=vae, **RECIPE_DEFAULTS)
