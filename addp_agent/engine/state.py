"""What a resume needs: cached encodings of a batch, the settings a call resolved, and the state after step k."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import torch

from addp_agent.domain import DomainVerdict
from addp_agent.engine.guidance import CorrectionMode

Generator = torch.Generator | list[torch.Generator]  # one for the batch, or one per sample (diffusers' convention)


class DenoiseSettings(TypedDict):
    """The sampler settings one pipeline call ran with, every default filled in (``ADDPPipeline.resolve_settings``)."""

    num_inference_steps: int
    guidance_scale: float
    image_guidance_scale: float
    correction_scale: float
    correction_mode: CorrectionMode


IPAdapterEmbeds = list[tuple[torch.Tensor, torch.Tensor]]  # per IP-Adapter: (image, negative) embeds, row dim first


@dataclass
class EncodedBatch:
    """Encodings computed once per session and reused by every round.

    ``image_latents`` are the condition (unscaled VAE mode latents, or [-1, 1] pixels without a VAE);
    ``prompt_embeds`` the expressions; ``null_embeds`` the empty prompt; ``negative_embeds`` (B, L, D) the stock
    ``negative_prompt``'s (``None``: the empty prompt's); ``ip_adapter_embeds`` the IP-Adapter image embeddings
    shared by every sample; ``text_cache`` correction embeddings; ``original_sizes`` each input's (height, width),
    at which its masks are decoded.
    """

    prompts: list[str]
    original_sizes: list[tuple[int, int]]
    image_latents: torch.Tensor
    prompt_embeds: torch.Tensor
    null_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None = None
    ip_adapter_embeds: IPAdapterEmbeds | None = None
    text_cache: dict[str, torch.Tensor] = field(default_factory=dict)
    domain: list[DomainVerdict] = field(default_factory=list)  # each input's domain check (empty: not checked)

    @property
    def batch_size(self) -> int:
        return len(self.prompts)

    def negatives(self) -> torch.Tensor:
        """(B, L, D) embeddings of the image-only and unconditional branches: the negative prompt's, or empty."""
        if self.negative_embeds is not None:
            return self.negative_embeds
        return self.null_embeds.expand(self.batch_size, -1, -1)

    def repeat_samples(self, count: int) -> EncodedBatch:
        """Each sample ``count`` times in a row (``num_images_per_prompt``): p0, p0, p1, p1, each with its image."""
        if count == 1:
            return self
        index = torch.arange(self.batch_size).repeat_interleave(count)
        return replace(self, prompts=[p for p in self.prompts for _ in range(count)],
                       original_sizes=[s for s in self.original_sizes for _ in range(count)],
                       domain=[v for v in self.domain for _ in range(count)],
                       image_latents=self.image_latents[index.to(self.image_latents.device)],
                       prompt_embeds=self.prompt_embeds[index.to(self.prompt_embeds.device)],
                       negative_embeds=None if self.negative_embeds is None
                       else self.negative_embeds[index.to(self.negative_embeds.device)])

    @classmethod
    def concat(cls, batches: list[EncodedBatch]) -> EncodedBatch:
        """One batch of several encodings (of the same model), in order; each keeps its numbers bit for bit."""
        if any(b.ip_adapter_embeds is not batches[0].ip_adapter_embeds for b in batches):
            raise ValueError("encodings with different IP-Adapter images cannot share a batch")
        negative = None
        if any(b.negative_embeds is not None for b in batches):
            negative = torch.cat([b.negatives() for b in batches])
        return cls(prompts=[p for b in batches for p in b.prompts],
                   original_sizes=[s for b in batches for s in b.original_sizes],
                   image_latents=torch.cat([b.image_latents for b in batches]),
                   prompt_embeds=torch.cat([b.prompt_embeds for b in batches]), null_embeds=batches[0].null_embeds,
                   negative_embeds=negative, ip_adapter_embeds=batches[0].ip_adapter_embeds,
                   domain=[v for b in batches for v in (b.domain or [DomainVerdict()] * b.batch_size)])


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
