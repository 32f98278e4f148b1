"""What a resume needs: cached encodings of a batch and the denoising state after step k."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class EncodedBatch:
    """Encodings computed once per session and reused by every round.

    ``image_latents`` are the condition (unscaled VAE mode latents, or [-1, 1] pixels without a VAE);
    ``prompt_embeds`` the expressions; ``null_embeds`` the empty prompt; ``text_cache`` correction embeddings.
    """

    prompts: list[str]
    images: list[np.ndarray]  # the original RGB uint8 inputs
    image_latents: torch.Tensor
    prompt_embeds: torch.Tensor
    null_embeds: torch.Tensor
    text_cache: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return len(self.prompts)

    @property
    def original_sizes(self) -> list[tuple[int, int]]:
        return [(int(image.shape[0]), int(image.shape[1])) for image in self.images]


@dataclass
class DenoiseState:
    """The loop after ``step_index`` completed steps: enough to continue without recomputing them.

    A state can be resumed any number of times (each resume works on copies).
    """

    latents: torch.Tensor
    step_index: int
    num_inference_steps: int
    scheduler: Any  # a configured scheduler whose internal counters sit at ``step_index``
    generator_state: torch.Tensor | None
    generator_device: str
    encoded: EncodedBatch
    settings: dict[str, Any]

    def fresh_scheduler(self) -> Any:
        return copy.deepcopy(self.scheduler)

    def fresh_generator(self) -> torch.Generator | None:
        if self.generator_state is None:
            return None
        generator = torch.Generator(device=self.generator_device)
        generator.set_state(self.generator_state.clone())
        return generator
