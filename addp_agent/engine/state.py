"""What a resume needs: cached encodings of a batch, the settings a call resolved, and the state after step k."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import torch

from addp_agent.engine.guidance import CorrectionMode

Generator = torch.Generator | list[torch.Generator]  # one for the batch, or one per sample (diffusers' convention)


class DenoiseSettings(TypedDict):
    """The sampler settings one pipeline call ran with, every default filled in (``ADDPPipeline.resolve_settings``)."""

    num_inference_steps: int
    guidance_scale: float
    image_guidance_scale: float
    correction_scale: float
    correction_mode: CorrectionMode


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

    @classmethod
    def concat(cls, batches: list[EncodedBatch]) -> EncodedBatch:
        """One batch of several encodings (of the same model), in order; each keeps its numbers bit for bit."""
        return cls(prompts=[p for b in batches for p in b.prompts], images=[i for b in batches for i in b.images],
                   image_latents=torch.cat([b.image_latents for b in batches]),
                   prompt_embeds=torch.cat([b.prompt_embeds for b in batches]), null_embeds=batches[0].null_embeds)


@dataclass
class DenoiseState:
    """The loop after ``step_index`` completed steps: enough to continue without recomputing them.

    A state can be resumed any number of times (each resume works on copies).
    """

    latents: torch.Tensor
    step_index: int
    scheduler: Any  # a configured scheduler whose internal counters sit at ``step_index``
    generator_state: torch.Tensor | list[torch.Tensor] | None
    generator_device: str
    encoded: EncodedBatch
    settings: DenoiseSettings

    @classmethod
    def capture(cls, latents: torch.Tensor, step_index: int, scheduler: Any, generator: Generator | None,
                encoded: EncodedBatch, settings: DenoiseSettings) -> DenoiseState:
        """Copies of everything the loop holds after ``step_index`` steps."""
        generators = generator if isinstance(generator, list) else [generator] if generator is not None else []
        states = [g.get_state() for g in generators]
        return cls(latents=latents.clone(), step_index=step_index, scheduler=copy.deepcopy(scheduler),
                   generator_state=states if isinstance(generator, list) else (states[0] if states else None),
                   generator_device=str(generators[0].device) if generators else "cpu", encoded=encoded,
                   settings=settings)

    @property
    def num_inference_steps(self) -> int:
        return self.settings["num_inference_steps"]

    def fresh_scheduler(self) -> Any:
        return copy.deepcopy(self.scheduler)

    def fresh_generator(self) -> Generator | None:
        """The random state as it was after ``step_index`` steps (new generator objects each time)."""
        if self.generator_state is None:
            return None
        if isinstance(self.generator_state, list):
            return [self._generator(state) for state in self.generator_state]
        return self._generator(self.generator_state)

    def _generator(self, state: torch.Tensor) -> torch.Generator:
        generator = torch.Generator(device=self.generator_device)
        generator.set_state(state.clone())
        return generator
