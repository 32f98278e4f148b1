"""ADDPPipeline: an InstructPix2Pix-format diffusion pipeline for referring segmentation by painting.

One readable denoising loop with: dual (text, image) guidance as in diffusers, ADDP correctional guidance
(additive or replace, see ``guidance.py``), x̂₀ trajectories decoded to masks, and stop/resume at any step.
Latent models (with a VAE) and pixel-space models (``vae=None``) share the loop.
"""

from __future__ import annotations

import copy
import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from addp_agent.engine.decode import DEFAULT_THRESHOLD, decode_paint
from addp_agent.engine.guidance import CorrectionMode, correctional_guidance, guidance_branches
from addp_agent.engine.state import DenoiseState, EncodedBatch
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array
from addp_agent.text import clean_corrections, clean_text


@dataclass
class TrajectoryPoint:
    """The decoded x̂₀ prediction after one denoising step."""

    step: int  # 0-based index of the step that produced it
    timestep: int
    mask: np.ndarray  # bool, at the input image's size
    confidence: float


@dataclass
class ADDPPipelineOutput(BaseOutput):
    """Painted images (like diffusers), decoded masks, optional trajectories and a resumable state."""

    images: Any
    masks: list[np.ndarray]
    soft_masks: list[np.ndarray]
    confidences: list[float]
    trajectories: list[list[TrajectoryPoint]] | None
    state: DenoiseState | None
    timings: dict[str, float]


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
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def pixel_space(self) -> bool:
        return self.vae is None

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
        self._check_unet_channels()
        return EncodedBatch(prompts=prompts, images=arrays, image_latents=self.encode_images(arrays),
                            prompt_embeds=self.encode_text(prompts), null_embeds=self.encode_text([""]))

    def _check_unet_channels(self) -> None:
        expected = 2 * self.num_channels_out
        if self.unet.config.in_channels != expected:
            raise UserError(f"UNet takes {self.unet.config.in_channels} input channels, but an InstructPix2Pix "
                            f"model {'without' if self.vae is None else 'with'} a VAE needs {expected} "
                            f"({self.num_channels_out} noisy + {self.num_channels_out} image)")

    def _correction_embeds(self, encoded: EncodedBatch, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in encoded.text_cache]
        if missing:
            for text, embed in zip(missing, self.encode_text(missing), strict=True):
                encoded.text_cache[text] = embed[None]
        return torch.cat([encoded.text_cache[t] for t in texts])

    @staticmethod
    def normalize_corrections(corrections: Any, batch_size: int) -> list[list[str]]:
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

    # -------------------------------------------------------------------------------------------- helpers
    def _prepare_extra_step_kwargs(self, scheduler, generator, eta: float) -> dict[str, Any]:
        parameters = set(inspect.signature(scheduler.step).parameters)
        extra: dict[str, Any] = {}
        if "eta" in parameters:
            extra["eta"] = eta
        if "generator" in parameters:
            extra["generator"] = generator
        return extra

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space samples → images in [-1, 1] (VAE decode, or un-packing of pixel patches)."""
        if self.vae is None:
            return torch.nn.functional.pixel_shuffle(latents, self.vae_scale_factor)
        return self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

    def _to_uint8(self, images: torch.Tensor) -> np.ndarray:
        array = self.image_processor.postprocess(images.float(), output_type="np")
        return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    # ------------------------------------------------------------------------------------------ main call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
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
        ``encoded=`` reuses encodings from :meth:`encode`.
        """
        timings: dict[str, float] = {}
        start = time.perf_counter()
        cfg = self.config
        if state is not None:
            encoded = state.encoded
            settings = dict(state.settings)
            num_inference_steps = state.num_inference_steps
        else:
            if encoded is None:
                if prompt is None or image is None:
                    raise UserError("give `prompt` and `image` (or `encoded=`, or `state=` to resume)")
                encoded = self.encode(prompt, image)
            num_inference_steps = int(num_inference_steps or cfg.default_num_inference_steps)
            settings = {}
        if num_inference_steps < 1:
            raise UserError(f"num_inference_steps must be ≥ 1, got {num_inference_steps}")
        settings["guidance_scale"] = float(
            guidance_scale if guidance_scale is not None
            else settings.get("guidance_scale", cfg.default_guidance_scale))
        settings["image_guidance_scale"] = float(
            image_guidance_scale if image_guidance_scale is not None
            else settings.get("image_guidance_scale", cfg.default_image_guidance_scale))
        settings["correction_scale"] = float(
            correction_scale if correction_scale is not None else cfg.default_correction_scale)
        settings["correction_mode"] = correction_mode or cfg.default_correction_mode
        if settings["correction_mode"] not in ("additive", "replace"):
            raise UserError(f"correction_mode must be 'additive' or 'replace', got {settings['correction_mode']!r}")
        timings["encode_s"] = time.perf_counter() - start

        batch = encoded.batch_size
        device = self.device
        dtype = self.unet.dtype
        text_scale, image_scale = settings["guidance_scale"], settings["image_guidance_scale"]
        branches_needed = guidance_branches(text_scale, image_scale)  # image guidance 1 skips the ε_u branch
        do_cfg, with_uncond = branches_needed > 1, branches_needed == 3
        base_branches = 3 if with_uncond else 2
        per_sample = self.normalize_corrections(corrections, batch)
        num_corrections = max((len(c) for c in per_sample), default=0) if do_cfg else 0

        # scheduler, latents and RNG: fresh, or copies from the state so a state can be resumed many times
        if state is not None:
            scheduler = state.fresh_scheduler()
            generator = state.fresh_generator() if generator is None else generator
            latents = state.latents.clone()
            first_step = state.step_index
        else:
            scheduler = copy.deepcopy(self.scheduler)
            scheduler.set_timesteps(num_inference_steps, device=device)
            height = width = self.resolution // self.vae_scale_factor
            shape = (batch, self.num_channels_out, height, width)
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype) if latents is None \
                else latents.to(device=device, dtype=dtype)
            latents = latents * scheduler.init_noise_sigma
            first_step = 0
        timesteps = scheduler.timesteps
        last_step = num_inference_steps if stop_after_step is None else min(int(stop_after_step), num_inference_steps)
        extra_step_kwargs = self._prepare_extra_step_kwargs(scheduler, generator, eta)

        # conditioning for the branches [text, image-only, (uncond,) correction_1..K] in one UNet batch
        image_latents = encoded.image_latents
        null = encoded.null_embeds.expand(batch, -1, -1)
        if do_cfg:
            base_embeds = torch.cat([encoded.prompt_embeds, null] + ([null] if with_uncond else []))
            base_images = torch.cat([image_latents, image_latents]
                                    + ([torch.zeros_like(image_latents)] if with_uncond else []))
        else:
            base_embeds, base_images = encoded.prompt_embeds, image_latents
        corr_embeds, corr_weights = None, None
        if num_corrections:
            texts = [c[k] if k < len(c) else "" for k in range(num_corrections) for c in per_sample]
            embeds = self._correction_embeds(encoded, [t for t in texts if t])
            rows, used = [], 0
            for text in texts:
                if text:
                    rows.append(embeds[used : used + 1])
                    used += 1
                else:
                    rows.append(encoded.null_embeds)
            corr_embeds = torch.cat(rows)
            corr_weights = torch.tensor([[settings["correction_scale"] if k < len(c) else 0.0
                                          for k in range(num_corrections)] for c in per_sample], device=device)
        corr_images = torch.cat([image_latents] * num_corrections) if num_corrections else None

        trajectory_raw: list[tuple[int, int, torch.Tensor]] = []
        loop_start = time.perf_counter()
        configured = getattr(self, "_progress_bar_config", {}).get("disable", False)
        disable = (not show_progress if show_progress is not None else configured) or last_step <= first_step
        with tqdm(total=last_step - first_step, disable=disable, desc="denoise", leave=False) as progress:
            for i in range(first_step, last_step):
                t = timesteps[i]
                corrected = num_corrections > 0 and i >= correction_start_step
                branches = (base_branches + (num_corrections if corrected else 0)) if do_cfg else 1
                model_input = torch.cat([latents] * branches) if branches > 1 else latents
                model_input = scheduler.scale_model_input(model_input, t)
                cond_images, cond_embeds = base_images, base_embeds
                if corrected:
                    cond_images = torch.cat([base_images, corr_images])
                    cond_embeds = torch.cat([base_embeds, corr_embeds])
                model_input = torch.cat([model_input, cond_images], dim=1)
                prediction = self.unet(model_input, t, encoder_hidden_states=cond_embeds, return_dict=False)[0]
                if do_cfg:
                    chunks = prediction.chunk(branches)
                    eps_uncond = chunks[2] if with_uncond else chunks[1]
                    prediction = correctional_guidance(
                        chunks[0], chunks[1], eps_uncond, list(chunks[base_branches:]),
                        corr_weights if corrected else torch.zeros(batch, 0), text_scale, image_scale,
                        settings["correction_mode"])
                out = scheduler.step(prediction, t, latents, **extra_step_kwargs, return_dict=True)
                latents = out.prev_sample
                if trajectory_every and ((i + 1) % trajectory_every == 0 or i == num_inference_steps - 1):
                    x0 = getattr(out, "pred_original_sample", None)
                    if x0 is None:
                        raise UserError(f"{type(scheduler).__name__} does not report x̂₀; trajectories need DDIM, "
                                        "Euler or EulerAncestral")
                    trajectory_raw.append((i, int(t), x0.clone()))
                progress.update()
        timings["denoise_s"] = time.perf_counter() - loop_start

        new_state = None
        if last_step < num_inference_steps or stop_after_step is not None:
            gen_state = generator.get_state() if generator is not None else None
            new_state = DenoiseState(
                latents=latents.clone(), step_index=last_step, num_inference_steps=num_inference_steps,
                scheduler=copy.deepcopy(scheduler), generator_state=gen_state,
                generator_device=str(generator.device) if generator is not None else "cpu",
                encoded=encoded, settings=settings)

        decode_start = time.perf_counter()
        trajectories = self._decode_trajectories(trajectory_raw, encoded, threshold) if trajectory_every else None
        if output_type == "latent":
            result = ADDPPipelineOutput(images=latents, masks=[], soft_masks=[], confidences=[],
                                        trajectories=trajectories, state=new_state, timings=timings)
            return result if return_dict else (latents,)
        decoded_images = self.decode_latents(latents)
        painted = self._to_uint8(decoded_images)
        masks, softs, confidences = [], [], []
        for k, size in enumerate(encoded.original_sizes):
            decoded = decode_paint(painted[k], size=size, threshold=threshold)
            masks.append(decoded.mask)
            softs.append(decoded.soft)
            confidences.append(decoded.confidence)
        images: Any = self.image_processor.postprocess(decoded_images, output_type=output_type)
        timings["decode_s"] = time.perf_counter() - decode_start
        timings["total_s"] = time.perf_counter() - start
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ADDPPipelineOutput(images=images, masks=masks, soft_masks=softs, confidences=confidences,
                                  trajectories=trajectories, state=new_state, timings=timings)

    def segment(self, image: Any, expression: str, corrections: Any = None, num_inference_steps: int | None = None,
                seed: int | None = 0, trajectory_every: int = 0, **kwargs: Any):
        """One round for one image: a :class:`~addp_agent.engine.result.SegmentationResult`."""
        from addp_agent.engine.result import results_from_output

        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        output = self(expression, image, num_inference_steps=num_inference_steps, generator=generator,
                      corrections=corrections, trajectory_every=trajectory_every, output_type="np", **kwargs)
        cfg = self.config

        def chosen(name: str, default: Any) -> Any:
            return kwargs[name] if kwargs.get(name) is not None else default

        settings = {"num_inference_steps": int(num_inference_steps or cfg.default_num_inference_steps),
                    "guidance_scale": chosen("guidance_scale", cfg.default_guidance_scale),
                    "image_guidance_scale": chosen("image_guidance_scale", cfg.default_image_guidance_scale),
                    "correction_scale": chosen("correction_scale", cfg.default_correction_scale),
                    "correction_mode": chosen("correction_mode", cfg.default_correction_mode)}
        prompt = clean_text(expression)
        return results_from_output(output, [prompt], self.normalize_corrections(corrections, 1), seed, settings)[0]

    def _decode_trajectories(self, raw: list[tuple[int, int, torch.Tensor]], encoded: EncodedBatch,
                             threshold: float) -> list[list[TrajectoryPoint]]:
        """Decode every recorded x̂₀ in one batch and threshold it at each input's original size."""
        trajectories: list[list[TrajectoryPoint]] = [[] for _ in range(encoded.batch_size)]
        if not raw:
            return trajectories
        stacked = torch.cat([x0 for _, _, x0 in raw])
        painted = self._to_uint8(self.decode_latents(stacked))
        batch = encoded.batch_size
        for r, (step, timestep, _) in enumerate(raw):
            for k, size in enumerate(encoded.original_sizes):
                decoded = decode_paint(painted[r * batch + k], size=size, threshold=threshold)
                trajectories[k].append(TrajectoryPoint(step=step, timestep=timestep, mask=decoded.mask,
                                                       confidence=decoded.confidence))
        return trajectories
