"""The guidance branches of one denoising step, stacked into a single UNet batch, and their combination.

Row blocks of ``batch`` samples each: [text, image-only, (unconditional,) correction_1 … correction_K], the stock
InstructPix2Pix order (text, image-only, unconditional) first. The image-only and unconditional branches take the
stock ``negative_prompt`` (the empty prompt when there is none). Without guidance (s_T ≤ 1 or s_I < 1) only the text
branch runs; at s_I = 1 the unconditional branch has zero weight and is skipped
(:func:`~addp_agent.engine.guidance.guidance_branches`). A sample with fewer than K corrections gets zero-weight
null-prompt rows, so samples with different corrections share the batch. IP-Adapter image embeddings follow the
same rows: the image's on the text and correction branches, the negative one on the others.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from addp_agent.engine.guidance import correctional_guidance, guidance_branches
from addp_agent.engine.state import DenoiseSettings, EncodedBatch


@dataclass
class GuidanceBranches:
    """Conditioning (embeddings, image latents, IP-Adapter embeddings) of every branch, and the correction weights."""

    settings: DenoiseSettings
    batch: int
    guided: bool  # more than the text branch runs
    with_uncond: bool
    embeds: torch.Tensor
    images: torch.Tensor
    correction_embeds: torch.Tensor | None = None
    correction_images: torch.Tensor | None = None
    correction_weights: torch.Tensor | None = None  # (batch, K)
    ip_embeds: list[torch.Tensor] | None = None  # per IP-Adapter, rows of the base branches
    correction_ip_embeds: list[torch.Tensor] | None = None  # per IP-Adapter, rows of the correction branches

    @classmethod
    def build(cls, encoded: EncodedBatch, corrections: list[list[str]], correction_embeds: dict[str, torch.Tensor],
              settings: DenoiseSettings) -> GuidanceBranches:
        """``corrections``: each sample's texts; ``correction_embeds``: each text's (1, L, D) embedding."""
        count = guidance_branches(settings["guidance_scale"], settings["image_guidance_scale"])
        batch, guided, with_uncond = encoded.batch_size, count > 1, count == 3
        images = encoded.image_latents
        ip = [(_rows(image, batch), _rows(negative, batch)) for image, negative in encoded.ip_adapter_embeds or []]
        if not guided:
            return cls(settings, batch, False, False, encoded.prompt_embeds, images,
                       ip_embeds=[image for image, _ in ip] or None)
        negative = encoded.negatives()
        branches = cls(settings, batch, True, with_uncond,
                       embeds=torch.cat([encoded.prompt_embeds, negative] + ([negative] if with_uncond else [])),
                       images=torch.cat([images, images] + ([torch.zeros_like(images)] if with_uncond else [])),
                       ip_embeds=[torch.cat([image, negative_image] + ([negative_image] if with_uncond else []))
                                  for image, negative_image in ip] or None)
        k_max = max((len(c) for c in corrections), default=0)
        if k_max:
            rows = [correction_embeds[c[k]] if k < len(c) else encoded.null_embeds
                    for k in range(k_max) for c in corrections]
            branches.correction_embeds = torch.cat(rows)
            branches.correction_images = torch.cat([images] * k_max)
            branches.correction_weights = torch.tensor(
                [[settings["correction_scale"] if k < len(c) else 0.0 for k in range(k_max)] for c in corrections],
                device=images.device)
            branches.correction_ip_embeds = [torch.cat([image] * k_max) for image, _ in ip] or None
        return branches

    def with_scales(self, guidance_scale: float, image_guidance_scale: float) -> GuidanceBranches:
        """The same branches with other guidance scales (a step-end callback changed them); the number of branches
        cannot change mid-loop, as in diffusers."""
        if guidance_branches(guidance_scale, image_guidance_scale) != guidance_branches(
                self.settings["guidance_scale"], self.settings["image_guidance_scale"]):
            raise ValueError("a step-end callback cannot switch guidance on or off, or move the image guidance "
                             "scale to or from 1, once the loop has started")
        settings = DenoiseSettings(**{**self.settings, "guidance_scale": float(guidance_scale),
                                      "image_guidance_scale": float(image_guidance_scale)})
        return replace(self, settings=settings)

    @property
    def num_corrections(self) -> int:
        return 0 if self.correction_weights is None else int(self.correction_weights.shape[1])

    @property
    def num_base(self) -> int:
        return (3 if self.with_uncond else 2) if self.guided else 1

    def count(self, corrected: bool) -> int:
        """Branches in this step's UNet batch."""
        return self.num_base + (self.num_corrections if corrected else 0)

    def conditioning(self, corrected: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(image latents, text embeddings) of this step's UNet batch, correction branches included when on."""
        if not corrected or self.correction_embeds is None:
            return self.images, self.embeds
        return torch.cat([self.images, self.correction_images]), torch.cat([self.embeds, self.correction_embeds])

    def added_conditioning(self, corrected: bool) -> dict[str, Any] | None:
        """The UNet's ``added_cond_kwargs`` of this step's batch (IP-Adapter image embeddings), or None."""
        if self.ip_embeds is None:
            return None
        if not corrected or self.correction_ip_embeds is None:
            return {"image_embeds": self.ip_embeds}
        return {"image_embeds": [torch.cat([base, extra])
                                 for base, extra in zip(self.ip_embeds, self.correction_ip_embeds, strict=True)]}

    def combine(self, prediction: torch.Tensor, corrected: bool) -> torch.Tensor:
        """The guided prediction of each sample from the batched branch predictions."""
        if not self.guided:
            return prediction
        chunks = prediction.chunk(self.count(corrected))
        eps_uncond = chunks[2] if self.with_uncond else chunks[1]
        weights = self.correction_weights if corrected and self.correction_weights is not None \
            else torch.zeros(self.batch, 0)
        return correctional_guidance(chunks[0], chunks[1], eps_uncond, list(chunks[self.num_base:]), weights,
                                     self.settings["guidance_scale"], self.settings["image_guidance_scale"],
                                     self.settings["correction_mode"])


def _rows(embeds: torch.Tensor, batch: int) -> torch.Tensor:
    """IP-Adapter embeddings with one row (shared) or ``batch`` rows, as ``batch`` rows."""
    return embeds.expand(batch, *embeds.shape[1:]) if embeds.shape[0] == 1 else embeds
