"""What runs after each denoising step: diffusers' step-end callbacks, with the stock InstructPix2Pix semantics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from addp_agent.engine.branches import GuidanceBranches

StepEnd = Callable[[int, torch.Tensor, torch.Tensor, GuidanceBranches], tuple[torch.Tensor, GuidanceBranches]]


def step_end_hook(pipe: Any, callback_on_step_end: Any, tensor_inputs: Sequence[str], callback: Any,
                  callback_steps: int | None, order: int) -> StepEnd | None:
    """``callback_on_step_end(pipe, i, t, tensors)`` with ``tensors`` among ``latents``, ``prompt_embeds`` and
    ``image_latents`` (the UNet batch's text embeddings and image latents of the base branches); it may return
    replacements, and change ``pipe._guidance_scale`` / ``pipe._image_guidance_scale`` for the steps after. Then the
    deprecated ``callback(step, t, latents)`` every ``callback_steps``. None when there is nothing to call."""
    if callback_on_step_end is None and callback is None:
        return None

    def step_end(i: int, t: torch.Tensor, latents: torch.Tensor,
                 branches: GuidanceBranches) -> tuple[torch.Tensor, GuidanceBranches]:
        if callback_on_step_end is not None:
            tensors = {"latents": latents, "prompt_embeds": branches.embeds, "image_latents": branches.images}
            outputs = callback_on_step_end(pipe, i, t, {k: tensors[k] for k in tensor_inputs}) or {}
            latents = outputs.pop("latents", latents)
            branches = replace(branches, embeds=outputs.pop("prompt_embeds", branches.embeds),
                               images=outputs.pop("image_latents", branches.images))
            scales = (pipe._guidance_scale, pipe._image_guidance_scale)
            if scales != (branches.settings["guidance_scale"], branches.settings["image_guidance_scale"]):
                branches = branches.with_scales(*scales)
        if callback is not None and i % (callback_steps or 1) == 0:
            callback(i // order, t, latents)
        return latents, branches

    return step_end
