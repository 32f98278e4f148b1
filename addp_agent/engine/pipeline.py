"""ADDPPipeline: an InstructPix2Pix-format diffusion pipeline for referring segmentation by painting.

A drop-in for diffusers' ``StableDiffusionInstructPix2PixPipeline``: the same components, ``__call__`` arguments (in
the same order, with the same meaning), inputs, sizes, outputs, loaders and helpers. On top of it, one readable
denoising loop adds ADDP correctional guidance (additive, replace or the paper's form, see
``guidance.py``), masks decoded from the red
paint, x̂₀ trajectories, and stop/resume at any step. Latent models (with a VAE) and pixel-space models
(``vae=None``) share the loop.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin, UNet2DConditionModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.loaders import (
    FromSingleFileMixin,
    IPAdapterMixin,
    StableDiffusionLoraLoaderMixin,
    TextualInversionLoaderMixin,
)
from diffusers.pipelines.pipeline_utils import StableDiffusionMixin
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm
from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

from addp_agent.domain import DomainCheck, DomainVerdict
from addp_agent.engine.branches import GuidanceBranches
from addp_agent.engine.callbacks import StepEnd, step_end_hook
from addp_agent.engine.decode import DEFAULT_THRESHOLD, DecodedMask, FoundRule, MaskDecoding
from addp_agent.engine.guidance import CorrectionMode, guidance_branches
from addp_agent.engine.inputs import Size, image_items, prepare_images
from addp_agent.engine.ip_adapter import embeds_from_images, embeds_from_rows
from addp_agent.engine.outputs import ADDPPipelineOutput, SegmentationResult, TrajectoryPoint
from addp_agent.engine.sampling import x0_capable
from addp_agent.engine.state import DenoiseSettings, DenoiseState, EncodedBatch, Generator, IPAdapterEmbeds
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array
from addp_agent.limits import MAX_STEPS, check_sampler_settings, check_threshold
from addp_agent.reliability import ConfidenceMap
from addp_agent.text import clean_corrections, clean_text

logger = logging.get_logger(__name__)

# diffusers' InstructPix2Pix defaults: what a model folder that names none of its own runs with
STOCK_DEFAULTS: dict[str, float] = {"num_inference_steps": 100, "guidance_scale": 7.5, "image_guidance_scale": 1.5}
WORKING = "working"  # ``resolution="working"``: the model's square working resolution (the segmentation path)
Resolution = int | tuple[int, int] | Literal["working"] | None
RawX0 = tuple[int, int, torch.Tensor]  # (step index, timestep, x̂₀) recorded during the loop


def placement_fixed(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a pipeline method with its device and dtype looked up once (:meth:`ADDPPipeline.fixed_placement`)."""
    @functools.wraps(method)
    def wrapper(self: ADDPPipeline, *args: Any, **kwargs: Any) -> Any:
        with self.fixed_placement():
            return method(self, *args, **kwargs)
    return wrapper


def seeded_generators(seeds: int | Sequence[int] | None) -> Generator | None:
    """CPU generators for ``generator=``: one seed → one generator (``None`` → unseeded), a sequence → one per sample,
    so each sample draws the noise a one-sample call with its own seed draws, whatever the batch."""
    if seeds is None:
        return None
    if isinstance(seeds, Sequence):
        return [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
    return torch.Generator(device="cpu").manual_seed(int(seeds))


class ADDPPipeline(DiffusionPipeline, StableDiffusionMixin, TextualInversionLoaderMixin,
                   StableDiffusionLoraLoaderMixin, IPAdapterMixin, FromSingleFileMixin):
    """InstructPix2Pix-style referring segmentation with ADDP correctional guidance.

    Takes the stock pipeline's components (``ADDPPipeline(**stock.components)``, ``ADDPPipeline.from_pipe(stock)``)
    and its loaders: LoRA, textual inversion, IP-Adapter, single files; and helpers: FreeU, fused QKV, attention
    slicing, VAE slicing/tiling, offloading. ``vae=None`` makes a pixel-space model (``pixel_patch_size``² × 3
    channels). ``default_*`` are the model's own defaults; a folder without them runs with the stock ones
    (:data:`STOCK_DEFAULTS`). ``resolution`` is the square working resolution of the segmentation path (default:
    the UNet's sample size × the VAE factor).
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "safety_checker", "feature_extractor", "image_encoder"]
    _exclude_from_cpu_offload = ["safety_checker"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "image_latents"]

    def __init__(self, vae: AutoencoderKL | None, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer,
                 unet: UNet2DConditionModel, scheduler: SchedulerMixin,
                 safety_checker: StableDiffusionSafetyChecker | None = None,
                 feature_extractor: CLIPImageProcessor | None = None,
                 image_encoder: CLIPVisionModelWithProjection | None = None, requires_safety_checker: bool = False,
                 default_num_inference_steps: int | None = None, default_guidance_scale: float | None = None,
                 default_image_guidance_scale: float | None = None, default_correction_scale: float = 1.0,
                 default_correction_mode: str = "additive", default_correction_steps: int | None = None,
                 resolution: int | None = None, pixel_patch_size: int = 1):
        super().__init__()
        if safety_checker is None and requires_safety_checker:
            logger.warning(f"{type(self).__name__}: the safety checker is disabled (safety_checker=None) although "
                           "requires_safety_checker=True")
        if safety_checker is not None and feature_extractor is None:
            raise ValueError("a safety_checker needs a feature_extractor; pass both, or safety_checker=None")
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                              safety_checker=safety_checker, feature_extractor=feature_extractor,
                              image_encoder=image_encoder)
        self.register_to_config(
            requires_safety_checker=requires_safety_checker, default_num_inference_steps=default_num_inference_steps,
            default_guidance_scale=default_guidance_scale, default_image_guidance_scale=default_image_guidance_scale,
            default_correction_scale=default_correction_scale, default_correction_mode=default_correction_mode,
            default_correction_steps=default_correction_steps, resolution=resolution, pixel_patch_size=pixel_patch_size,
        )
        self.vae_scale_factor = (2 ** (len(vae.config.block_out_channels) - 1) if vae is not None
                                 else int(pixel_patch_size))
        # A calibrated model's found rule, confidence map and domain check (set by models.registry.load_pipeline)
        self.found_rule: FoundRule | None = None
        self.confidence_map: ConfidenceMap | None = None
        self.domain_check: DomainCheck | None = None
        # a tensor input with these channels is image latents (pixel models of patch 1 have none: 3 = RGB)
        latent_channels = self.num_channels_out if self.num_channels_out != 3 else 0
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor,
                                                 vae_latent_channels=latent_channels)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def resolution(self) -> int:
        """Square working resolution in pixels of the segmentation path (images are resized to it, as the paper
        does)."""
        if self.config.resolution:
            return int(self.config.resolution)
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def execution_device(self) -> torch.device:
        """Where the models compute (diffusers' ``_execution_device``: offload hooks included)."""
        placement = getattr(self, "_placement", None)
        return placement[0] if placement is not None else self._execution_device

    @property
    def compute_dtype(self) -> torch.dtype:
        """The UNet's compute dtype (diffusers' ``unet.dtype``: layerwise casting included)."""
        placement = getattr(self, "_placement", None)
        return placement[1] if placement is not None else self.unet.dtype

    @contextmanager
    def fixed_placement(self) -> Iterator[None]:
        """Device and dtype looked up once for a block (diffusers walks every module of every component to find
        them, several milliseconds a time), re-entrant."""
        if getattr(self, "_placement", None) is not None:
            yield
            return
        self._placement = (self._execution_device, self.unet.dtype)
        try:
            yield
        finally:
            self._placement = None

    @property
    def num_channels_out(self) -> int:
        if self.vae is not None:
            return int(self.vae.config.latent_channels)
        return 3 * int(self.config.pixel_patch_size) ** 2

    @property
    def guidance_scale(self) -> float:
        """The text guidance scale of the running call (a step-end callback may change it, as in diffusers)."""
        return self._guidance_scale

    @property
    def image_guidance_scale(self) -> float:
        return self._image_guidance_scale

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def do_classifier_free_guidance(self) -> bool:
        return guidance_branches(self.guidance_scale, self.image_guidance_scale) > 1

    def working_size(self, resolution: Resolution) -> Size | None:
        """(height, width) images are resized to: ``"working"`` → the square :attr:`resolution`, an int → that
        square, ``None`` → none (the stock rule: each input's size floored to a multiple of the VAE factor)."""
        if resolution is None:
            return None
        if resolution == WORKING:
            return self.resolution, self.resolution
        size = (int(resolution), int(resolution)) if isinstance(resolution, int) else tuple(int(s) for s in resolution)
        if len(size) != 2 or min(size) < 1 or any(s % self.vae_scale_factor for s in size):
            raise UserError(f"resolution must be 'working', a size or (height, width) in multiples of "
                            f"{self.vae_scale_factor}, got {resolution!r}")
        return size[0], size[1]

    # ------------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """CLIP hidden states (B, L, D) for ``texts`` (textual-inversion tokens expanded); warns when a text is
        truncated."""
        tokenizer, device = self.tokenizer, self.execution_device
        texts = self.maybe_convert_prompt(list(texts), tokenizer)
        inputs = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                           return_tensors="pt")
        untruncated = tokenizer(texts, padding="longest", return_tensors="pt").input_ids
        if untruncated.shape[-1] > inputs.input_ids.shape[-1]:
            warnings.warn(f"text longer than {tokenizer.model_max_length} tokens was truncated", stacklevel=2)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = inputs.attention_mask.to(device)
        embeds = self.text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0]
        return embeds.to(dtype=self.compute_dtype, device=device)

    @torch.no_grad()
    def encode_images(self, image: Any, resolution: Resolution = WORKING) -> torch.Tensor:
        """Condition latents of any accepted image input (see ``inputs.py``), at ``resolution``."""
        return self.prepare_image_latents(image, resolution)[0]

    def prepare_image_latents(self, image: Any, resolution: Resolution) -> tuple[torch.Tensor, list[Size]]:
        """(condition latents, each input's original (height, width)); image latents pass through unchanged."""
        latent_channels = self.image_processor.config.vae_latent_channels or None
        prepared = prepare_images(image, self.image_processor, self.working_size(resolution), latent_channels)
        tensor = prepared.tensor.to(device=self.execution_device, dtype=self.compute_dtype)
        return (tensor if prepared.is_latents else self.condition_latents(tensor)), prepared.original_sizes

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

    @torch.no_grad()
    @placement_fixed
    def encode(self, prompt: str | list[str] | None, image: Any, *, resolution: Resolution = WORKING,
               negative_prompt: str | list[str] | None = None, prompt_embeds: torch.Tensor | None = None,
               negative_prompt_embeds: torch.Tensor | None = None, ip_adapter_image: Any = None,
               ip_adapter_image_embeds: list[torch.Tensor] | None = None) -> EncodedBatch:
        """Encode a batch of (image, expression) pairs once; every later round reuses the result.

        The default ``resolution="working"`` is the segmentation path: images are resized to the model's square
        working resolution; ``resolution=None`` keeps the stock size rule (what ``__call__`` does by default). One
        image serves every expression; as in diffusers, B expressions may share a divisor of B images (repeated).
        """
        if prompt_embeds is not None:
            prompts = [""] * int(prompt_embeds.shape[0])
        else:
            prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
            if not prompts:
                raise UserError("no expressions given")
            prompts = [clean_text(p, "expression") for p in prompts]
        batch = len(prompts)
        self.check_unet_channels()
        image_latents, sizes = self.prepare_image_latents(image, resolution)
        count = image_latents.shape[0]
        if count != batch:
            if batch % count:
                raise UserError(f"{batch} expressions but {count} images; give one image per expression")
            image_latents, sizes = torch.cat([image_latents] * (batch // count)), sizes * (batch // count)
        domain = self.check_domain(image)
        domain = domain * (batch // len(domain)) if len(domain) == count else [DomainVerdict()] * batch
        device, dtype = self.execution_device, self.compute_dtype
        embeds = self.encode_text(prompts) if prompt_embeds is None else prompt_embeds.to(device=device, dtype=dtype)
        return EncodedBatch(
            prompts=prompts, original_sizes=sizes, image_latents=image_latents, prompt_embeds=embeds,
            null_embeds=self.encode_text([""]), domain=domain,
            negative_embeds=self.encode_negatives(negative_prompt, negative_prompt_embeds, batch),
            ip_adapter_embeds=self.encode_ip_adapter(ip_adapter_image, ip_adapter_image_embeds))

    def encode_negatives(self, negative_prompt: str | list[str] | None, negative_prompt_embeds: torch.Tensor | None,
                         batch: int) -> torch.Tensor | None:
        """(B, L, D) embeddings of the stock ``negative_prompt`` (one for all, or one per prompt), or None."""
        if negative_prompt_embeds is not None:
            embeds = negative_prompt_embeds.to(device=self.execution_device, dtype=self.compute_dtype)
        elif negative_prompt is not None:
            texts = [negative_prompt] if isinstance(negative_prompt, str) else list(negative_prompt)
            if not all(isinstance(t, str) for t in texts):
                raise UserError("negative_prompt must be text or a list of texts")
            embeds = self.encode_text(texts)
        else:
            return None
        if embeds.shape[0] not in (1, batch):
            raise UserError(f"{embeds.shape[0]} negative prompts for {batch} prompts; give one, or one per prompt")
        return embeds.expand(batch, -1, -1) if embeds.shape[0] == 1 else embeds

    def encode_ip_adapter(self, ip_adapter_image: Any, ip_adapter_image_embeds: list[torch.Tensor] | None
                          ) -> IPAdapterEmbeds | None:
        """Per loaded IP-Adapter: (image, negative) embeddings shared by the batch (``ip_adapter.py``)."""
        device, dtype = self.execution_device, self.compute_dtype
        if ip_adapter_image_embeds is not None:
            return embeds_from_rows(ip_adapter_image_embeds, device, dtype)
        if ip_adapter_image is None:
            return None
        return embeds_from_images(ip_adapter_image, self.unet, self.image_encoder, self.feature_extractor, device,
                                  dtype)

    def check_unet_channels(self) -> None:
        """A clear error when the UNet does not take noisy + image channels of this model's space."""
        expected = 2 * self.num_channels_out
        if self.unet.config.in_channels != expected:
            raise UserError(f"UNet takes {self.unet.config.in_channels} input channels, but an InstructPix2Pix "
                            f"model {'without' if self.vae is None else 'with'} a VAE needs {expected} "
                            f"({self.num_channels_out} noisy + {self.num_channels_out} image)")

    # ---------------------------------------------------------------------------------- the call's steps
    def check_inputs(self, prompt: Any, image: Any, encoded: EncodedBatch | None, state: DenoiseState | None,
                     settings: DenoiseSettings, negative_prompt: Any = None, prompt_embeds: Any = None,
                     negative_prompt_embeds: Any = None, ip_adapter_image: Any = None,
                     ip_adapter_image_embeds: Any = None, num_images_per_prompt: int = 1,
                     callback_on_step_end_tensor_inputs: Sequence[str] | None = None,
                     callback_steps: int | None = None) -> None:
        """Something to denoise (prompts or their embeddings and images, their encodings, or a state to resume), the
        stock pipeline's rules between its arguments, and valid settings."""
        if state is not None or encoded is not None:
            inputs = {"prompt": prompt, "image": image, "negative_prompt": negative_prompt,
                      "prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds,
                      "ip_adapter_image": ip_adapter_image, "ip_adapter_image_embeds": ip_adapter_image_embeds}
            given = [name for name, value in inputs.items() if value is not None]
            if given:
                raise UserError(f"{', '.join(given)} cannot change {'a state' if state is not None else 'encodings'}; "
                                "pass them to encode() instead")
        else:
            if prompt is not None and prompt_embeds is not None:
                raise UserError("give `prompt` or `prompt_embeds`, not both")
            if (prompt is None and prompt_embeds is None) or image is None:
                raise UserError("give `prompt` (or `prompt_embeds`) and `image` (or `encoded=`, or `state=` to "
                                "resume)")
            if prompt is not None and not isinstance(prompt, (str, list, tuple)):
                raise UserError(f"`prompt` must be text or a list of texts, got {type(prompt).__name__}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise UserError("give `negative_prompt` or `negative_prompt_embeds`, not both")
        if prompt_embeds is not None and negative_prompt_embeds is not None \
                and prompt_embeds.shape != negative_prompt_embeds.shape:
            raise UserError(f"`prompt_embeds` {tuple(prompt_embeds.shape)} and `negative_prompt_embeds` "
                            f"{tuple(negative_prompt_embeds.shape)} must have the same shape")
        if ip_adapter_image is not None and ip_adapter_image_embeds is not None:
            raise UserError("give `ip_adapter_image` or `ip_adapter_image_embeds`, not both")
        if ip_adapter_image_embeds is not None and (not isinstance(ip_adapter_image_embeds, list) or any(
                e.ndim not in (3, 4) for e in ip_adapter_image_embeds)):
            raise UserError("`ip_adapter_image_embeds` must be a list of 3-d or 4-d tensors, one per IP-Adapter")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise UserError(f"callback_on_step_end_tensor_inputs must be among {self._callback_tensor_inputs}, "
                            f"got {unknown}")
        if callback_steps is not None and (not isinstance(callback_steps, int) or callback_steps <= 0):
            raise UserError(f"callback_steps must be a positive integer, got {callback_steps!r}")
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise UserError(f"num_images_per_prompt must be ≥ 1, got {num_images_per_prompt!r}")
        if state is not None and num_images_per_prompt != 1:
            raise UserError("num_images_per_prompt applies when a call starts, not to a resumed state")
        check_sampler_settings(settings)  # the bounds the CLI and the tools use (addp_agent.limits)
        trained = int(self.scheduler.config.get("num_train_timesteps", MAX_STEPS))
        if settings["num_inference_steps"] > trained:
            raise UserError(f"num_inference_steps: this model's scheduler has {trained} timesteps, so at most "
                            f"{trained} steps; got {settings['num_inference_steps']}")

    def resolve_settings(self, num_inference_steps: int | None = None, guidance_scale: float | None = None,
                         image_guidance_scale: float | None = None, correction_scale: float | None = None,
                         correction_mode: CorrectionMode | None = None,
                         resume: DenoiseState | None = None) -> DenoiseSettings:
        """The settings a call runs with: those given, else (steps and guidance scales) the resumed state's, else the
        model's defaults, else the stock pipeline's (:data:`STOCK_DEFAULTS`). Every caller that needs them (the
        batcher's grouping, sessions, tools) asks here; :meth:`check_inputs` validates them when the call runs."""
        cfg = self.config
        inherited: dict[str, Any] = dict(resume.settings) if resume is not None else {}

        def pick(name: str, given: float | None) -> float:
            if given is not None:
                return given
            if name in inherited:
                return inherited[name]
            model = getattr(cfg, f"default_{name}", None)
            return model if model is not None else STOCK_DEFAULTS[name]

        return DenoiseSettings(
            num_inference_steps=resume.num_inference_steps if resume is not None else int(
                pick("num_inference_steps", num_inference_steps)),
            guidance_scale=float(pick("guidance_scale", guidance_scale)),
            image_guidance_scale=float(pick("image_guidance_scale", image_guidance_scale)),
            correction_scale=float(correction_scale if correction_scale is not None else cfg.default_correction_scale),
            correction_mode=correction_mode or cfg.default_correction_mode)

    @staticmethod
    def prepare_corrections(corrections: Any, batch_size: int, repeats: int = 1) -> list[list[str]]:
        """``None | str | list[str] | list[list[str]]`` → one cleaned list per sample; a list of lists has one per
        prompt, each repeated ``repeats`` times (``num_images_per_prompt``)."""
        if corrections is None:
            return [[] for _ in range(batch_size * repeats)]
        if isinstance(corrections, str):
            corrections = [corrections]
        corrections = list(corrections)
        if corrections and all(isinstance(c, (list, tuple)) for c in corrections):
            if len(corrections) != batch_size:
                raise UserError(f"{len(corrections)} correction lists for {batch_size} samples")
            per_sample = [list(c) for c in corrections for _ in range(repeats)]
        else:
            per_sample = [list(corrections) for _ in range(batch_size * repeats)]
        return [clean_corrections(sample) for sample in per_sample]

    def prepare_scheduler(self, num_inference_steps: int) -> Any:
        """A copy of the scheduler set to ``num_inference_steps`` (the pipeline's own is never advanced); an x₀ model's
        Euler-ancestral scheduler steps with :class:`~addp_agent.engine.sampling.EulerAncestralScheduler`."""
        scheduler = copy.deepcopy(x0_capable(self.scheduler))
        scheduler.set_timesteps(num_inference_steps, device=self.execution_device)
        return scheduler

    def prepare_latents(self, encoded: EncodedBatch, scheduler: Any, generator: Generator | None,
                        latents: torch.Tensor | None = None) -> torch.Tensor:
        """Starting noise (drawn, or ``latents``) of the image latents' size, scaled by the scheduler's initial
        sigma."""
        height, width = encoded.image_latents.shape[-2:]
        shape = (encoded.batch_size, self.num_channels_out, height, width)
        if isinstance(generator, list) and len(generator) != encoded.batch_size:
            raise UserError(f"{len(generator)} generators for a batch of {encoded.batch_size}; give one per image")
        device, dtype = self.execution_device, self.compute_dtype
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise UserError(f"`latents` of shape {tuple(latents.shape)} do not match the batch's {shape}")
        else:
            latents = latents.to(device=device, dtype=dtype)
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

    def prepare_step_end(self, callback_on_step_end: Any, tensor_inputs: Sequence[str], callback: Any,
                         callback_steps: int | None, order: int) -> StepEnd | None:
        """What runs after each step: the step-end callbacks (``callbacks.py``)."""
        return step_end_hook(self, callback_on_step_end, tensor_inputs, callback, callback_steps, order)

    def denoise(self, latents: torch.Tensor, scheduler: Any, branches: GuidanceBranches, steps: range,
                extra_step_kwargs: dict[str, Any], correction_start_step: int = 0, trajectory_every: int = 0,
                show_progress: bool | None = None, unet_kwargs: dict[str, Any] | None = None,
                step_end: StepEnd | None = None) -> tuple[torch.Tensor, list[RawX0], GuidanceBranches]:
        """Run ``steps`` of the loop: one batched UNet call per step for every branch; x̂₀ kept every
        ``trajectory_every``-th step (and the last of the schedule). ``unet_kwargs``: extra UNet arguments
        (``cross_attention_kwargs``); ``step_end``: :meth:`prepare_step_end`'s hook."""
        timesteps, last = scheduler.timesteps, len(scheduler.timesteps) - 1
        recorded: list[RawX0] = []
        unet_kwargs = {k: v for k, v in (unet_kwargs or {}).items() if v is not None}
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
                added = branches.added_conditioning(corrected)
                prediction = self.unet(model_input, t, encoder_hidden_states=cond_embeds, return_dict=False,
                                       **({"added_cond_kwargs": added} if added else {}), **unet_kwargs)[0]
                out = scheduler.step(branches.combine(prediction, corrected), t, latents, **extra_step_kwargs,
                                     return_dict=True)
                latents = out.prev_sample
                if trajectory_every and ((i + 1) % trajectory_every == 0 or i == last):
                    x0 = getattr(out, "pred_original_sample", None)
                    if x0 is None:
                        raise UserError(f"{type(scheduler).__name__} does not report x̂₀; trajectories need DDIM, "
                                        "Euler or EulerAncestral")
                    recorded.append((i, int(t), x0.clone()))
                if step_end is not None:
                    latents, branches = step_end(i, t, latents, branches)
                progress.update()
        return latents, recorded, branches

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space samples → images in [-1, 1] (VAE decode, or un-packing of pixel patches)."""
        if self.vae is None:
            return torch.nn.functional.pixel_shuffle(latents, self.vae_scale_factor)
        return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

    def run_safety_checker(self, images: torch.Tensor) -> tuple[torch.Tensor, list[bool] | None]:
        """diffusers' NSFW check of decoded images in [-1, 1] when a ``safety_checker`` is loaded (flagged images
        come back black); ``None`` without one."""
        if self.safety_checker is None:
            return images, None
        pils = self.image_processor.postprocess(images, output_type="pil")
        clip_input = self.feature_extractor(pils, return_tensors="pt").pixel_values
        images, nsfw = self.safety_checker(images=images, clip_input=clip_input.to(images.device, images.dtype))
        return images, [bool(flag) for flag in nsfw]

    def masks_from_images(self, array: np.ndarray, sizes: list[Size], decoding: MaskDecoding,
                          outside: Sequence[bool] = ()) -> list[DecodedMask]:
        """Painted images (B, H, W, 3) in [0, 1] → the red paint's mask of each, by ``decoding`` for inputs of
        ``sizes`` (cycled over rows); a target is found as :attr:`found_rule` says (``None``: found = something is
        painted); confidences go through :attr:`confidence_map` when the model has one (the decoder's score stays as
        ``raw_confidence``). A row whose image is ``outside`` the model's domain (cycled like ``sizes``) gets
        confidence 0: nothing says its mask is right."""
        painted = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        masks = [decoding.decode(p, sizes[r % len(sizes)], self.found_rule) for r, p in enumerate(painted)]
        if self.confidence_map is None and not any(outside):
            return masks
        mapped = self.confidence_map or (lambda c: c)
        out = [bool(outside) and outside[r % len(outside)] for r in range(len(masks))]
        return [dataclasses.replace(m, confidence=0.0 if out[r] else mapped(m.confidence), raw_confidence=m.confidence)
                for r, m in enumerate(masks)]

    def decode_masks(self, images: torch.Tensor, sizes: list[Size], decoding: MaskDecoding,
                     outside: Sequence[bool] = ()) -> list[DecodedMask]:
        """Decoded images in [-1, 1] → the red paint's mask of each, by ``decoding`` (sizes cycled over the rows)."""
        return self.masks_from_images(self.image_processor.postprocess(images.float(), output_type="np"), sizes,
                                      decoding, outside)

    def check_domain(self, image: Any) -> list[DomainVerdict]:
        """The domain check (:attr:`domain_check`) of each image of an input (as ``encode`` takes it); an ``open``
        verdict for a model without one, and an unchecked one for tensors and latents."""
        items = image_items(image)
        if self.domain_check is None:
            return [DomainVerdict() for _ in items]
        check = self.domain_check
        readable = (str, os.PathLike, PIL.Image.Image)
        return [check.check(as_rgb_array(item)) if isinstance(item, readable) or (
            isinstance(item, np.ndarray) and item.dtype == np.uint8) else DomainVerdict(check.name)
                for item in items]

    def decode_trajectories(self, recorded: list[RawX0], encoded: EncodedBatch, decoding: MaskDecoding,
                            outside: Sequence[bool] = ()) -> list[list[TrajectoryPoint]]:
        """Decode every recorded x̂₀ in one batch and threshold it like the final sample."""
        trajectories: list[list[TrajectoryPoint]] = [[] for _ in range(encoded.batch_size)]
        if not recorded:
            return trajectories
        decoded = self.decode_masks(self.decode_latents(torch.cat([x0 for _, _, x0 in recorded])),
                                    encoded.original_sizes, decoding, outside)
        for r, (step, timestep, _) in enumerate(recorded):
            for k in range(encoded.batch_size):
                mask = decoded[r * encoded.batch_size + k]
                trajectories[k].append(TrajectoryPoint(step=step, timestep=timestep, mask=mask.mask,
                                                       confidence=mask.confidence))
        return trajectories

    # ------------------------------------------------------------------------------------------ main call
    @torch.no_grad()
    @placement_fixed
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int | None = 1,
        eta: float = 0.0,
        generator: Generator | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        ip_adapter_image: Any = None,
        ip_adapter_image_embeds: list[torch.Tensor] | None = None,
        output_type: str | None = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[..., dict[str, Any]] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        cross_attention_kwargs: dict[str, Any] | None = None,
        *,
        corrections: Any = None,
        correction_scale: float | None = None,
        correction_mode: CorrectionMode | None = None,
        correction_start_step: int = 0,
        trajectory_every: int = 0,
        stop_after_step: int | None = None,
        state: DenoiseState | None = None,
        encoded: EncodedBatch | None = None,
        resolution: Resolution = None,
        threshold: float = DEFAULT_THRESHOLD,
        decode_size: int | None = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> ADDPPipelineOutput | tuple:
        """Paint the referred objects red and decode masks.

        The arguments up to ``cross_attention_kwargs`` are diffusers' ``StableDiffusionInstructPix2PixPipeline``'s,
        in its order and with its meaning (``**kwargs`` takes its deprecated ``callback``/``callback_steps``). The
        steps and guidance scales default to the model's own defaults, else the stock 100 / 7.5 / 1.5.

        ``negative_prompt`` (stock): replaces the empty prompt in the image-only and unconditional branches,
        ε_i = ε(x_t | image, N) and ε_u = ε(x_t | 0, N). A correction D⁻ is ADDP's own and adds a branch
        ε_c = ε(x_t | image, D⁻) instead: additive mode adds w(ε_t − ε_c), replace mode puts ε_c in the negative's
        place in the text term only, s_T(ε_t − ε_c), leaving the image term as it was. Both can be given together.

        ADDP's keywords: ``corrections`` (one or more D⁻ per call, or a list per prompt) with
        ``correction_scale``/``correction_mode``, switched on from ``correction_start_step``; ``trajectory_every=k``
        records the decoded x̂₀ every k-th step (and the last); ``stop_after_step=k`` returns after k steps with
        ``output.state``; ``state=`` resumes such a state; ``encoded=`` reuses :meth:`encode`'s encodings;
        ``threshold`` and ``decode_size`` decode the masks: at each input's size, or at ``decode_size``² (the
        paper's evaluation: 512), keeping pixels within ``threshold`` of pure red (:class:`MaskDecoding`).

        Sizes: with ``resolution=None`` (default) the painted output follows the stock rule: each input keeps its
        size floored to a multiple of the VAE factor, aspect ratio kept. ``resolution="working"`` (what
        :meth:`segment`, :meth:`encode`, the tools and evaluation use) resizes every image to the model's square
        working resolution, as the paper does; an int or (height, width) resizes to that. Masks always come back at
        each input's own size.

        Returns :class:`ADDPPipelineOutput` (``images``, ``nsfw_content_detected`` as in diffusers, plus masks,
        trajectories, state and what the call resolved), or with ``return_dict=False`` the stock tuple
        ``(images, nsfw_content_detected)``.
        """
        callback, callback_steps = kwargs.pop("callback", None), kwargs.pop("callback_steps", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}.__call__() got unexpected keyword argument(s): "
                            f"{', '.join(sorted(kwargs))}")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        start = time.perf_counter()
        # 1. Resolve the settings (given, else a resumed state's steps and guidance scales, else the model's, else
        #    the stock defaults) and check the inputs
        settings = self.resolve_settings(num_inference_steps, guidance_scale, image_guidance_scale,
                                         correction_scale, correction_mode, resume=state)
        repeats = 1 if num_images_per_prompt is None else num_images_per_prompt
        self.check_inputs(prompt, image, encoded, state, settings, negative_prompt, prompt_embeds,
                          negative_prompt_embeds, ip_adapter_image, ip_adapter_image_embeds, repeats,
                          callback_on_step_end_tensor_inputs, callback_steps)
        check_threshold(threshold)
        decoding = MaskDecoding(decode_size, threshold)
        steps = settings["num_inference_steps"]
        self._guidance_scale, self._image_guidance_scale = settings["guidance_scale"], settings["image_guidance_scale"]

        # 2. Encode the prompts and images (once per session: `encoded=` and `state=` bring them), each prompt's
        #    sample repeated `num_images_per_prompt` times
        if state is not None:
            encoded = state.encoded
        else:
            if encoded is None:
                encoded = self.encode(prompt, image, resolution=resolution, negative_prompt=negative_prompt,
                                      prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
                                      ip_adapter_image=ip_adapter_image,
                                      ip_adapter_image_embeds=ip_adapter_image_embeds)
            encoded = encoded.repeat_samples(repeats)

        # 3. Clean each sample's corrections
        per_sample = self.prepare_corrections(corrections, encoded.batch_size // repeats, repeats)
        timings = {"encode_s": time.perf_counter() - start}

        # 4. Set the timesteps and prepare the latents: fresh, or copies of a state's (a state resumes many times)
        if state is not None:
            scheduler, latents, first_step = state.fresh_scheduler(), state.latents.clone(), state.step_index
            generator = state.fresh_generator() if generator is None else generator
        else:
            scheduler, first_step = self.prepare_scheduler(steps), 0
            latents = self.prepare_latents(encoded, scheduler, generator, latents)
        last_step = steps if stop_after_step is None else min(int(stop_after_step), steps)
        self._num_timesteps = len(scheduler.timesteps)

        # 5. Prepare the guidance branches: text, image-only, unconditional and one per correction, one UNet batch
        branches = self.prepare_branches(encoded, per_sample, settings)

        # 6. Prepare extra step kwargs and what runs after each step (callbacks)
        extra_step_kwargs = self.prepare_extra_step_kwargs(scheduler, generator, eta)
        step_end = self.prepare_step_end(callback_on_step_end, callback_on_step_end_tensor_inputs, callback,
                                         callback_steps, getattr(scheduler, "order", 1))

        # 7. Denoising loop
        loop_start = time.perf_counter()
        latents, recorded, branches = self.denoise(
            latents, scheduler, branches, range(first_step, last_step), extra_step_kwargs, correction_start_step,
            trajectory_every, show_progress, {"cross_attention_kwargs": cross_attention_kwargs}, step_end)
        timings["denoise_s"] = time.perf_counter() - loop_start

        # 8. Keep a resumable state when the call stops before the end (or is asked to)
        new_state = None
        if last_step < steps or stop_after_step is not None:
            new_state = DenoiseState.capture(latents, last_step, scheduler, generator, encoded, branches.settings)

        # 9. Decode: the recorded x̂₀ and the final sample → painted images (NSFW-checked when a checker is loaded)
        #    → masks
        decode_start = time.perf_counter()
        outside = [verdict.in_domain is False for verdict in encoded.domain]
        trajectories = self.decode_trajectories(recorded, encoded, decoding, outside) if trajectory_every else None
        resolved = {"prompts": encoded.prompts, "corrections": per_sample, "settings": branches.settings}
        if output_type == "latent":
            self.maybe_free_model_hooks()
            if not return_dict:
                return latents, None
            return ADDPPipelineOutput(images=latents, masks=[], soft_masks=[], confidences=[],
                                      trajectories=trajectories, state=new_state, timings=timings, **resolved)
        decoded, nsfw = self.run_safety_checker(self.decode_latents(latents))
        denormalize = None if nsfw is None else [not flagged for flagged in nsfw]
        array = self.image_processor.postprocess(decoded, output_type="np", do_denormalize=denormalize)
        masks = self.masks_from_images(array, encoded.original_sizes, decoding, outside)
        if output_type == "pil":
            images = self.image_processor.numpy_to_pil(array)
        elif output_type == "np" or output_type is None:
            images = array
        else:
            images = self.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=denormalize)
        timings["decode_s"] = time.perf_counter() - decode_start
        timings["total_s"] = time.perf_counter() - start
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, nsfw
        return ADDPPipelineOutput(images=images, masks=[m.mask for m in masks], soft_masks=[m.soft for m in masks],
                                  confidences=[m.confidence for m in masks], trajectories=trajectories,
                                  state=new_state, timings=timings, nsfw_content_detected=nsfw,
                                  found=[m.found for m in masks], paint=[m.paint for m in masks],
                                  raw_confidences=[m.raw_confidence for m in masks], domain=list(encoded.domain),
                                  **resolved)

    def segment(self, image: Any, expression: str, corrections: Any = None, num_inference_steps: int | None = None,
                seed: int | None = 0, trajectory_every: int = 0, **kwargs: Any) -> SegmentationResult:
        """One round for one image at the model's square working resolution (the paper's), seeded with ``seed``
        (``None``: unseeded); the mask comes back at the image's own size."""
        kwargs.setdefault("resolution", WORKING)
        output = self(expression, image, num_inference_steps=num_inference_steps, generator=seeded_generators(seed),
                      corrections=corrections, trajectory_every=trajectory_every, output_type="np", **kwargs)
        return output.results(seed)[0]

    def segment_batch(self, expressions: list[str], images: list[Any], **kwargs: Any) -> ADDPPipelineOutput:
        """One round for a batch of (expression, image) pairs on the segmentation path: the square working
        resolution, numpy outputs, masks at each image's own size, no progress bar. ``kwargs`` go to ``__call__``."""
        kwargs.setdefault("show_progress", False)
        return self(expressions, images, output_type="np", resolution=WORKING, **kwargs)
