"""How a pipeline samples: its scheduler (x₀-prediction with every sampler) and its working resolution.

diffusers' ``EulerAncestralDiscreteScheduler`` has no x₀ mode (``prediction_type="sample"`` raises), yet the official
ADDP RIS models predict x₀ and are sampled with k-diffusion's Euler-ancestral sampler. :class:`EulerAncestralScheduler`
adds that mode. With σ↑ = √(σ_to²(σ² − σ_to²)/σ²) and σ↓ = √(σ_to² − σ↑²), one step from x at σ is

    x' = x̂₀ + (x − x̂₀)·σ↓/σ + σ↑·z,

the ε step of the stock scheduler with ε = (x − x̂₀)/σ. Any other prediction type runs the stock step unchanged.
Pipelines keep (and save) the stock class, which any diffusers install loads; the pipeline's denoising loop steps with
:func:`x0_capable` of it.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from addp_agent.errors import UserError

SCHEDULER_NAMES: tuple[str, ...] = ("ddim", "euler_ancestral")


class EulerAncestralScheduler(EulerAncestralDiscreteScheduler):
    """diffusers' Euler-ancestral scheduler, plus x₀-prediction (``prediction_type="sample"``)."""

    def step(self, model_output: torch.Tensor, timestep: float | torch.Tensor, sample: torch.Tensor,
             generator: torch.Generator | list[torch.Generator] | None = None, return_dict: bool = True
             ) -> EulerAncestralDiscreteSchedulerOutput | tuple:
        if self.config.prediction_type != "sample":
            return super().step(model_output, timestep, sample, generator=generator, return_dict=return_dict)
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma, sigma_to = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        sigma_up = (sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2) ** 0.5
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        x0 = model_output.to(torch.float32)
        prev = x0 + (sample.to(torch.float32) - x0) * (sigma_down / sigma)
        noise = randn_tensor(model_output.shape, dtype=model_output.dtype, device=model_output.device,
                             generator=generator)
        prev = (prev + noise * sigma_up).to(model_output.dtype)
        self._step_index += 1
        if not return_dict:
            return prev, x0
        return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev, pred_original_sample=x0)


def switch_scheduler(scheduler: Any, name: str | None = None, **overrides: Any) -> Any:
    """A (stock) ``ddim`` or ``euler_ancestral`` scheduler (``None``: the same kind as ``scheduler``) with
    ``scheduler``'s noise schedule and prediction type, changed by ``overrides`` (e.g. ``timestep_spacing``)."""
    if name is None:
        return type(scheduler).from_config(scheduler.config, **overrides)
    if name not in SCHEDULER_NAMES:
        raise UserError(f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULER_NAMES)}")
    cls = DDIMScheduler if name == "ddim" else EulerAncestralDiscreteScheduler
    return cls.from_config(scheduler.config, **overrides)


def x0_capable(scheduler: Any) -> Any:
    """``scheduler`` itself, or, for a stock Euler-ancestral scheduler configured for x₀, the one that can step it."""
    if type(scheduler) is EulerAncestralDiscreteScheduler and scheduler.config.prediction_type == "sample":
        return EulerAncestralScheduler.from_config(scheduler.config)
    return scheduler


def set_resolution(pipe: Any, resolution: int) -> None:
    """Make ``pipe`` work at ``resolution`` × ``resolution`` pixels (images and targets are resized to it).

    It must give a latent side the UNet can halve at each of its down blocks.
    """
    factor = int(pipe.vae_scale_factor) * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    if resolution < 1 or resolution % factor:
        raise UserError(f"resolution {resolution} px does not fit this model: use a multiple of {factor} px")
    pipe.register_to_config(resolution=int(resolution))
