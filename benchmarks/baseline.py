"""The straightforward loop the engine is measured against (for models the stock pipeline cannot run).

Each round re-encodes the image and every text, restarts from noise, and calls the UNet once per guidance branch
(text, image-only, unconditional, one per correction) at every step; the guidance arithmetic is the engine's, so
the painted result is the same and only the schedule of work differs.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from addp_agent.engine.guidance import correctional_guidance
from addp_agent.engine.pipeline import ADDPPipeline


@torch.no_grad()
def straightforward_round(pipe: ADDPPipeline, prompt: str, image: np.ndarray, steps: int, seed: int,
                          corrections: list[str] | None = None) -> np.ndarray:
    """One round for one image; the painted image (1, H, W, 3) in [0, 1]."""
    cfg, settings = pipe.config, pipe.resolve_settings()
    device, dtype = pipe.device, pipe.unet.dtype
    corrections = list(corrections or [])
    condition = pipe.encode_images([image])
    text, null = pipe.encode_text([prompt]), pipe.encode_text([""])
    negatives = [pipe.encode_text([c]) for c in corrections]
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    grid = pipe.resolution // pipe.vae_scale_factor
    latents = randn_tensor((1, pipe.num_channels_out, grid, grid), generator=generator, device=device, dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    weights = torch.full((1, len(corrections)), float(cfg.default_correction_scale), device=device)
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    zeros = torch.zeros_like(condition)
    for t in scheduler.timesteps:
        scaled = scheduler.scale_model_input(latents, t)

        def eps(cond_image: torch.Tensor, embeds: torch.Tensor, scaled: torch.Tensor = scaled,
                t: torch.Tensor = t) -> torch.Tensor:
            return pipe.unet(torch.cat([scaled, cond_image], dim=1), t, encoder_hidden_states=embeds,
                             return_dict=False)[0]

        eps_text, eps_image, eps_uncond = eps(condition, text), eps(condition, null), eps(zeros, null)
        eps_corr = [eps(condition, negative) for negative in negatives]
        guided = correctional_guidance(eps_text, eps_image, eps_uncond, eps_corr, weights,
                                       settings["guidance_scale"], settings["image_guidance_scale"],
                                       cfg.default_correction_mode)
        latents = scheduler.step(guided, t, latents, **extra, return_dict=False)[0]
    images = pipe.image_processor.postprocess(pipe.decode_latents(latents), output_type="np")
    return np.asarray(images)

