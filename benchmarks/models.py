"""The models the benchmark compares on: the bundled pixel model, a tiny SD-shaped latent model, SD-1.5-size."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.errors import ModelLoadError
from addp_agent.models.build import (
    RECIPE_DEFAULTS,
    PixelModelConfig,
    build_pixel_pipeline,
    build_scheduler,
    build_tiny_latent_pipeline,
)
from addp_agent.models.registry import load_pipeline
from addp_agent.models.tokenizer import build_tokenizer


def bundled_pixel(device: torch.device, dtype: torch.dtype, model: str | None = None) -> tuple[ADDPPipeline, str]:
    """The bundled default model (or ``model``: a bundled name or a folder), or (when this install has no default
    yet) its architecture with random weights."""
    if model is not None:
        return load_pipeline(model, device=device, dtype=dtype), f"{model} weights"
    try:
        return load_pipeline(None, device=device, dtype=dtype), "bundled weights (addp_agent/models/shapes_ref_small)"
    except ModelLoadError:
        pipe = build_pixel_pipeline(PixelModelConfig()).to(device=device, dtype=dtype)
        return pipe, "bundled architecture, random weights (no bundled model in this install)"


def tiny_latent(device: torch.device, dtype: torch.dtype) -> tuple[ADDPPipeline, str]:
    """diffusers' tiny InstructPix2Pix test shapes (32 px, VAE ×2, EulerAncestral), random weights."""
    return build_tiny_latent_pipeline().to(device=device, dtype=dtype), "tiny SD-shaped latent model, random weights"


def sd15_instruct_pix2pix(resolution: int, device: torch.device, dtype: torch.dtype,
                          seed: int = 0) -> tuple[ADDPPipeline, str]:
    """SD-1.5-size InstructPix2Pix (859.5 M UNet, 8 input channels, VAE ×8, CLIP-L-size text model), random."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=resolution // 8, in_channels=8, out_channels=4, cross_attention_dim=768,
                                attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=resolution)
    tokenizer = build_tokenizer(model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    pipe = ADDPPipeline(unet=unet, scheduler=build_scheduler("euler_ancestral", "epsilon"), text_encoder=text_encoder,
                        tokenizer=tokenizer, vae=vae, resolution=resolution, **RECIPE_DEFAULTS)
    return pipe.to(device=device, dtype=dtype), f"SD-1.5-size InstructPix2Pix at {resolution} px, random weights"


def stock_from(pipe: ADDPPipeline) -> Any:
    """diffusers' StableDiffusionInstructPix2PixPipeline on the very same modules."""
    stock = StableDiffusionInstructPix2PixPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    return stock
