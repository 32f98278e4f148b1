"""ADDPPipeline: an InstructPix2Pix-format diffusion pipeline for referring segmentation by painting.

One readable denoising loop with: dual (text, image) guidance as in diffusers, ADDP correctional guidance
(additive, replace or the paper's form, see ``guidance.py``), x̂₀ trajectories decoded to masks, and stop/resume at
any step.
Latent models (with a VAE) and pixel-space models (``vae=None``) share the loop.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from addp_agent.domain import DomainCheck, DomainVerdict
from addp_agent.engine.branches import GuidanceBranches
from addp_agent.engine.decode import DEFAULT_THRESHOLD, DecodedMask, FoundRule, decode_paint
from addp_agent.engine.guidance import CORRECTION_MODES, CorrectionMode
from addp_agent.engine.outputs import ADDPPipelineOutput, SegmentationResult, TrajectoryPoint
from addp_agent.engine.state import DenoiseSettings, DenoiseState, EncodedBatch, Generator
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array
from addp_agent.reliability import ConfidenceMap
from addp_agent.text import clean_corrections, clean_text

RawX0 = tuple[int, int, torch.Tensor]  # (step index, timestep, x̂₀) recorded during the loop


def seeded_generators(seeds: int | Sequence[int] | None) -> Generator | None:
    """CPU generators for ``generator=``: one seed → one generator (``None`` → unseeded), a sequence → one per sample,
    so each sample draws the noise a one-sample call with its own seed draws, whatever the batch."""
    if seeds is None:
        return None
    if isinstance(seeds, Sequence):
        return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    return torch.Generator(device="cpu").manual_seed(int(seeds))


class ADDPPipeline(DiffusionPipeline):
    """InstructPix2Pix-style referring segmentation with ADDP correctional guidance."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae"]

    def __init__(self, unet, scheduler, text_encoder, tokenizer, vae=None, default_num_inference_steps: int = 20,
                 default_guidance_scale: float = 3.0, default_image_guidance_scale: float = 1.5,
                 default_correction_scale: float = 1.0, default_correction_mode: str = "additive",
                 resolution: int | None = None, pixel_patch_size: int = 1):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                              vae=vae)
        self.register_to_config(
            default_num_inference_steps=default_num_inference_steps, default_guidance_scale=default_guidance_scale,
            default_image_guidance_scale=default_image_guidance_scale,
            default_correction_scale=default_correction_scale, default_correction_mode=default_correction_mode,
            resolution=resolution, pixel_patch_size=pixel_patch_size,
        )
        self.vae_scale_factor = (2 ** (len(vae.config.block_out_channels) - 1) if vae is not None
                                 else int(pixel_patch_size))
        # A calibrated model's found rule, confidence map and domain check (set by models.registry.load_pipeline)
        self.found_rule: FoundRule | None = None
        self.confidence_map: ConfidenceMap | None = None
        self.domain_check: DomainCheck | None = None
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def resolution(self) -> int:
        """Square working resolution in pixels (images are resized to it, as the paper does)."""
        if self.config.resolution:
            return int(self.config.resolution)
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def num_channels_out(self) -> int:
        if self.vae is not None:
            return int(self.vae.config.latent_channels)
        return 3 * int(self.config.pixel_patch_size) ** 2

    # ------------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """CLIP hidden states (B, L, D) for ``texts``; warns when a text is truncated."""
        tokenizer = self.tokenizer
        inputs = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                           return_tensors="pt")
        untruncated = tokenizer(texts, padding="longest", return_tensors="pt").input_ids
        if untruncated.shape[-1] > inputs.input_ids.shape[-1]:
            warnings.warn(f"text longer than {tokenizer.model_max_length} tokens was truncated", stacklevel=2)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = inputs.attention_mask.to(self.device)
        embeds = self.text_encoder(inputs.input_ids.to(self.device), attention_mask=mask)[0]
        return embeds.to(dtype=self.unet.dtype, device=self.device)

    @torch.no_grad()
    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        """Condition latents for RGB uint8 images resized (LANCZOS) to the working resolution."""
        size = self.resolution
        pils = [PIL.Image.fromarray(image) for image in images]
        pils = [p if p.size == (size, size) else p.resize((size, size), PIL.Image.Resampling.LANCZOS) for p in pils]
        pixels = self.image_processor.preprocess(pils, height=size, width=size)
        return self.condition_latents(pixels.to(device=self.device, dtype=self.unet.dtype))

    def condition_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Condition for (B, 3, H, W) images in [-1, 1]: unscaled VAE mode latents, or packed pixels."""
        if self.vae is None:
            return torch.nn.functional.pixel_unshuffle(pixels, self.vae_scale_factor)
        return self.vae.encode(pixels).latent_dist.mode()

    def target_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """Diffusion target for (B, 3, H, W) painted images in [-1, 1]: scaled VAE latents, or packed pixels."""
        if self.vae is None:
            return torch.nn.functional.pixel_unshuffle(pixels, self.vae_scale_factor)
        return self.vae.encode(pixels).latent_dist.sample() * self.vae.config.scaling_factor

    def encode(self, prompt: str | list[str], image: Any) -> EncodedBatch:
        """Encode a batch of (image, expression) pairs once; every later round reuses the result."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        images = image if isinstance(image, list) else [image]
        if len(images) == 1 and len(prompts) > 1:
            images = images * len(prompts)
        if len(images) != len(prompts):
            raise UserError(f"{len(prompts)} expressions but {len(images)} images; give one image per expression")
        if not prompts:
            raise UserError("no expressions given")
        prompts = [clean_text(p, "expression") for p in prompts]
        arrays = [as_rgb_array(i) for i in images]
        self.check_unet_channels()
        return EncodedBatch(prompts=prompts, images=arrays, image_latents=self.encode_images(arrays),
                            prompt_embeds=self.encode_text(prompts), null_embeds=self.encode_text([""]))

    def check_unet_channels(self) -> None:
        """A clear error when the UNet does not take noisy + image channels of this model's space."""
        expected = 2 * self.num_channels_out
        if self.unet.config.in_channels != expected:
            raise UserError(f"UNet takes {self.unet.config.in_channels} input channels, but an InstructPix2Pix "
                            f"model {'without' if self.vae is None else 'with'} a VAE needs {expected} "
                            f"({self.num_channels_out} noisy + {self.num_channels_out} image)")

    # ---------------------------------------------------------------------------------- the call's steps
    def check_inputs(self, prompt: Any, image: Any, encoded: EncodedBatch | None, state: DenoiseState | None,
                     settings: DenoiseSettings) -> None:
        """Something to denoise (prompts and images, their encodings, or a state to resume) and valid settings."""
        if state is None and encoded is None and (prompt is None or image is None):
            raise UserError("give `prompt` and `image` (or `encoded=`, or `state=` to resume)")
        if settings["num_inference_steps"] < 1:
            raise UserError(f"num_inference_steps must be ≥ 1, got {settings['num_inference_steps']}")
        if settings["correction_mode"] not in CORRECTION_MODES:
            raise UserError(f"correction_mode must be one of {', '.join(CORRECTION_MODES)}, got "
                            f"{settings['correction_mode']!r}")

    def resolve_settings(self, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                         image_guidance_scale: float | None = None, correction_scale: float | None = None,
                         correction_mode: CorrectionMode | None = None,
                         resume: DenoiseState | None = None) -> DenoiseSettings:
        """The settings a call runs with: those given, else (steps and guidance scales) the resumed state's, else the
        model's defaults. Every caller that needs them (the batcher's grouping, sessions, tools) asks here;
        :meth:`check_inputs` validates them when the call runs."""
        cfg = self.config
        inherited: dict[str, Any] = dict(resume.settings) if resume is not None else {}
        return DenoiseSettings(
            num_inference_steps=resume.num_inference_steps if resume is not None else int(
                num_inference_steps or cfg.default_num_inference_steps),
            guidance_scale=float(guidance_scale if guidance_scale is not None
                                 else inherited.get("guidance_scale", cfg.default_guidance_scale)),
            image_guidance_scale=float(image_guidance_scale if image_guidance_scale is not None
                                       else inherited.get("image_guidance_scale", cfg.default_image_guidance_scale)),
            correction_scale=float(correction_scale if correction_scale is not None else cfg.default_correction_scale),
            correction_mode=correction_mode or cfg.default_correction_mode)

    @staticmethod
    def prepare_corrections(corrections: Any, batch_size: int) -> list[list[str]]:
        """``None | str | list[str] | list[list[str]]`` → one cleaned list per sample."""
        if corrections is None:
            return [[] for _ in range(batch_size)]
        if isinstance(corrections, str):
            corrections = [corrections]
        corrections = list(corrections)
        if corrections and all(isinstance(c, (list, tuple)) for c in corrections):
            if len(corrections) != batch_size:
                raise UserError(f"{len(corrections)} correction lists for {batch_size} samples")
            per_sample = [list(c) for c in corrections]
        else:
            per_sample = [list(corrections) for _ in range(batch_size)]
        return [clean_corrections(sample) for sample in per_sample]

    def prepare_scheduler(self, num_inference_steps: int) -> Any:
        """A copy of the scheduler set to ``num_inference_steps`` (the pipeline's own is never advanced)."""
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        return scheduler

    def prepare_latents(self, batch_size: int, scheduler: Any, generator: Generator | None,
                        latents: torch.Tensor | None = None) -> torch.Tensor:
        """Starting noise (drawn, or ``latents``) scaled by the scheduler's initial sigma."""
        side = self.resolution // self.vae_scale_factor
        shape = (batch_size, self.num_channels_out, side, side)
        dtype = self.unet.dtype
        latents = randn_tensor(shape, generator=generator, device=self.device, dtype=dtype) if latents is None \
            else latents.to(device=self.device, dtype=dtype)
        return latents * scheduler.init_noise_sigma

    def prepare_branches(self, encoded: EncodedBatch, corrections: list[list[str]],
                         settings: DenoiseSettings) -> GuidanceBranches:
        """The conditioning of every guidance branch; correction embeddings are cached on ``encoded``."""
        missing = [t for t in dict.fromkeys(t for c in corrections for t in c) if t not in encoded.text_cache]
        if missing:
            for text, embed in zip(missing, self.encode_text(missing), strict=True):
                encoded.text_cache[text] = embed[None]
        return GuidanceBranches.build(encoded, corrections, encoded.text_cache, settings)

    @staticmethod
    def prepare_extra_step_kwargs(scheduler: Any, generator: Generator | None, eta: float) -> dict[str, Any]:
        """``eta`` and ``generator`` for schedulers whose ``step`` takes them."""
        parameters = set(inspect.signature(scheduler.step).parameters)
        extra: dict[str, Any] = {}
        if "eta" in parameters:
            extra["eta"] = eta
        if "generator" in parameters:
            extra["generator"] = generator
        return extra

    def denoise(self, latents: torch.Tensor, scheduler: Any, branches: GuidanceBranches, steps: range,
                extra_step_kwargs: dict[str, Any], correction_start_step: int = 0, trajectory_every: int = 0,
                show_progress: bool | None = None) -> tuple[torch.Tensor, list[RawX0]]:
        """Run ``steps`` of the loop: one batched UNet call per step for every branch; x̂₀ kept every
        ``trajectory_every``-th step (and the last of the schedule)."""
        timesteps, last = scheduler.timesteps, len(scheduler.timesteps) - 1
        recorded: list[RawX0] = []
        configured = getattr(self, "_progress_bar_config", {}).get("disable", False)
        disable = (not show_progress if show_progress is not None else configured) or len(steps) == 0
        with tqdm(total=len(steps), disable=disable, desc="denoise", leave=False) as progress:
            for i in steps:
                t = timesteps[i]
                corrected = branches.num_corrections > 0 and i >= correction_start_step
                count = branches.count(corrected)
                model_input = torch.cat([latents] * count) if count > 1 else latents
                cond_images, cond_embeds = branches.conditioning(corrected)
                model_input = torch.cat([scheduler.scale_model_input(model_input, t), cond_images], dim=1)
                prediction = self.unet(model_input, t, encoder_hidden_states=cond_embeds, return_dict=False)[0]
                out = scheduler.step(branches.combine(prediction, corrected), t, latents, **extra_step_kwargs,
                                     return_dict=True)
                latents = out.prev_sample
                if trajectory_every and ((i + 1) % trajectory_every == 0 or i == last):
                    x0 = getattr(out, "pred_original_sample", None)
                    if x0 is None:
                        raise UserError(f"{type(scheduler).__name__} does not report x̂₀; trajectories need DDIM, "
                                        "Euler or EulerAncestral")
                    recorded.append((i, int(t), x0.clone()))
                progress.update()
        return latents, recorded

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space samples → images in [-1, 1] (VAE decode, or un-packing of pixel patches)."""
        if self.vae is None:
            return torch.nn.functional.pixel_shuffle(latents, self.vae_scale_factor)
        return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

    def decode_masks(self, images: torch.Tensor, sizes: list[tuple[int, int]], threshold: float,
                     outside: Sequence[bool] = ()) -> list[DecodedMask]:
        """Decoded images in [-1, 1] → the red paint's mask of each, at ``sizes`` (cycled over the rows); a target is
        found as :attr:`found_rule` says (``None``: found = something is painted); confidences go through
        :attr:`confidence_map` when the model has one (the decoder's score stays as ``raw_confidence``). A row whose
        image is ``outside`` the model's domain (cycled like ``sizes``) gets confidence 0: nothing says its mask is
        right."""
        array = self.image_processor.postprocess(images.float(), output_type="np")
        painted = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        masks = [decode_paint(p, size=sizes[r % len(sizes)], threshold=threshold, rule=self.found_rule)
                 for r, p in enumerate(painted)]
        if self.confidence_map is None and not any(outside):
            return masks
        mapped = self.confidence_map or (lambda c: c)
        out = [bool(outside) and outside[r % len(outside)] for r in range(len(masks))]
        return [dataclasses.replace(m, confidence=0.0 if out[r] else mapped(m.confidence), raw_confidence=m.confidence)
                for r, m in enumerate(masks)]

    def check_domain(self, images: list[np.ndarray]) -> list[DomainVerdict]:
        """Each input image's domain check (:attr:`domain_check`; an ``open`` verdict for a model without one)."""
        if self.domain_check is None:
            return [DomainVerdict() for _ in images]
        return [self.domain_check.check(image) for image in images]

    def decode_trajectories(self, recorded: list[RawX0], encoded: EncodedBatch, threshold: float,
                            outside: Sequence[bool] = ()) -> list[list[TrajectoryPoint]]:
        """Decode every recorded x̂₀ in one batch and threshold it at each input's original size."""
        trajectories: list[list[TrajectoryPoint]] = [[] for _ in range(encoded.batch_size)]
        if not recorded:
            return trajectories
        decoded = self.decode_masks(self.decode_latents(torch.cat([x0 for _, _, x0 in recorded])),
                                    encoded.original_sizes, threshold, outside)
        for r, (step, timestep, _) in enumerate(recorded):
            for k in range(encoded.batch_size):
                mask = decoded[r * encoded.batch_size + k]
                trajectories[k].append(TrajectoryPoint(step=step, timestep=timestep, mask=mask.mask,
                                                       confidence=mask.confidence))
        return trajectories

    # ------------------------------------------------------------------------------------------ main call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        generator: Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        *,
        eta: float = 0.0,
        latents: torch.Tensor | None = None,
        corrections: Any = None,
        correction_scale: float | None = None,
        correction_mode: CorrectionMode | None = None,
        correction_start_step: int = 0,
        trajectory_every: int = 0,
        stop_after_step: int | None = None,
        state: DenoiseState | None = None,
        encoded: EncodedBatch | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        show_progress: bool | None = None,
    ) -> ADDPPipelineOutput | tuple:
        """Paint the referred objects red and decode masks.

        Shares diffusers' InstructPix2Pix argument names. ADDP additions: ``corrections`` (one or more D⁻ per
        call or per sample) with ``correction_scale``/``correction_mode``, switched on from
        ``correction_start_step``; ``trajectory_every=k`` records the decoded x̂₀ every k-th step (and the last);
        ``stop_after_step=k`` returns after k steps with ``output.state``; ``state=`` resumes such a state;
        ``encoded=`` reuses encodings from :meth:`encode`. ``generator`` may be a list, one per sample
        (:func:`seeded_generators`).
        """
        start = time.perf_counter()
        # 1. Resolve the settings (given, else a resumed state's steps and guidance scales, else the model's) and
        #    check the inputs
        settings = self.resolve_settings(num_inference_steps, guidance_scale, image_guidance_scale,
                                         correction_scale, correction_mode, resume=state)
        self.check_inputs(prompt, image, encoded, state, settings)
        steps = settings["num_inference_steps"]

        # 2. Encode the prompts and images (once per session: `encoded=` and `state=` bring them)
        if state is not None:
            encoded = state.encoded
        elif encoded is None:
            encoded = self.encode(prompt, image)

        # 3. Clean each sample's corrections
        per_sample = self.prepare_corrections(corrections, encoded.batch_size)
        timings = {"encode_s": time.perf_counter() - start}

        # 4. Set the timesteps and prepare the latents: fresh, or copies of a state's (a state resumes many times)
        if state is not None:
            scheduler, latents, first_step = state.fresh_scheduler(), state.latents.clone(), state.step_index
            generator = state.fresh_generator() if generator is None else generator
        else:
            scheduler, first_step = self.prepare_scheduler(steps), 0
            latents = self.prepare_latents(encoded.batch_size, scheduler, generator, latents)
        last_step = steps if stop_after_step is None else min(int(stop_after_step), steps)

        # 5. Prepare the guidance branches: text, image-only, unconditional and one per correction, one UNet batch
        branches = self.prepare_branches(encoded, per_sample, settings)

        # 6. Prepare extra step kwargs
        extra_step_kwargs = self.prepare_extra_step_kwargs(scheduler, generator, eta)

        # 7. Denoising loop
        loop_start = time.perf_counter()
        latents, recorded = self.denoise(latents, scheduler, branches, range(first_step, last_step),
                                         extra_step_kwargs, correction_start_step, trajectory_every, show_progress)
        timings["denoise_s"] = time.perf_counter() - loop_start

        # 8. Keep a resumable state when the call stops before the end (or is asked to)
        new_state = None
        if last_step < steps or stop_after_step is not None:
            new_state = DenoiseState.capture(latents, last_step, scheduler, generator, encoded, settings)

        # 9. Decode: the recorded x̂₀ and the final sample → painted images → masks
        decode_start = time.perf_counter()
        domain = self.check_domain(encoded.images)
        outside = [verdict.in_domain is False for verdict in domain]
        trajectories = self.decode_trajectories(recorded, encoded, threshold, outside) if trajectory_every else None
        resolved = {"prompts": encoded.prompts, "corrections": per_sample, "settings": settings}
        if output_type == "latent":
            if not return_dict:
                return (latents,)
            return ADDPPipelineOutput(images=latents, masks=[], soft_masks=[], confidences=[],
                                      trajectories=trajectories, state=new_state, timings=timings, **resolved)
        images = self.decode_latents(latents)
        masks = self.decode_masks(images, encoded.original_sizes, threshold, outside)
        images = self.image_processor.postprocess(images, output_type=output_type)
        timings["decode_s"] = time.perf_counter() - decode_start
        timings["total_s"] = time.perf_counter() - start
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ADDPPipelineOutput(images=images, masks=[m.mask for m in masks], soft_masks=[m.soft for m in masks],
                                  confidences=[m.confidence for m in masks], trajectories=trajectories,
                                  state=new_state, timings=timings, found=[m.found for m in masks],
                                  paint=[m.paint for m in masks], raw_confidences=[m.raw_confidence for m in masks],
                                  domain=domain, **resolved)

    def segment(self, image: Any, expression: str, corrections: Any = None, num_inference_steps: int | None = None,
                seed: int | None = 0, trajectory_every: int = 0, **kwargs: Any) -> SegmentationResult:
        """One round for one image, seeded with ``seed`` (``None``: unseeded)."""
        output = self(expression, image, num_inference_steps=num_inference_steps, generator=seeded_generators(seed),
                      corrections=corrections, trajectory_every=trajectory_every, output_type="np", **kwargs)
        return output.results(seed)[0]
