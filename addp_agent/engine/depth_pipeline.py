"""DepthPipeline: monocular depth by diffusion, for Marigold checkpoints and the project's pixel-space models.

One readable denoising loop, as in diffusers' ``MarigoldDepthPipeline`` (same arguments, same outputs, same numbers
for the same inputs and seed; a test checks it), with the engine's additions:

- encode once (:meth:`DepthPipeline.encode` → :class:`EncodedDepth`), run many times (``encoded=``);
- every ensemble member of every image runs in one UNet batch per step (``batch_size`` only to cap memory);
- ``output_trajectory=True`` decodes the x̂₀ prediction after every step (the AbsRel-vs-t curve);
- pixel-space models (``vae=None``): the image and the depth are packed with ``pixel_unshuffle`` like the RIS pixel
  models (3p² + p² input channels, p² output channels), and no text encoder is needed.

Depth convention: the prediction is affine-invariant relative depth in [0, 1], 0 = near, 1 = far.
"""

from __future__ import annotations

import copy
import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline
from diffusers.pipelines.marigold.marigold_image_processing import MarigoldImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from addp_agent.domain import DomainCheck, DomainVerdict
from addp_agent.engine.depth_ensemble import ensemble_depth
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array

RESAMPLE_METHODS = ("nearest", "nearest-exact", "bilinear", "bicubic", "area")
MARIGOLD_V1_0_STEPS = 10  # Marigold v1-0's model_index has no defaults; its run script used 10 steps at 768 px
MARIGOLD_V1_0_RESOLUTION = 768


@dataclass
class EncodedDepth:
    """Encodings of a batch of same-sized images, computed once and reused by every call.

    ``condition`` is the UNet's image input at the processing resolution (scaled VAE mode latents, or packed
    pixels), padded to the alignment; ``padding`` = (rows, cols) added at the bottom/right; ``text_embeds`` the
    empty-prompt embedding (zeros for models without a text encoder).
    """

    images: list[np.ndarray]  # RGB uint8 (or float32 in [0, 1]) inputs
    condition: torch.Tensor
    padding: tuple[int, int]
    original_size: tuple[int, int]
    processing_resolution: int
    text_embeds: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.condition.shape[0])


@dataclass
class DepthTrajectoryPoint:
    """The decoded x̂₀ depth of every ensemble member after one denoising step, (E, H, W) in [0, 1]."""

    step: int
    timestep: int
    prediction: np.ndarray


@dataclass
class DepthPipelineOutput(BaseOutput):
    """Like diffusers' ``MarigoldDepthOutput`` (prediction N×H×W×1 for "np", N×1×H×W for "pt"), plus extras."""

    prediction: Any
    uncertainty: Any
    latent: torch.Tensor | None
    trajectories: list[list[DepthTrajectoryPoint]] | None = None
    timings: dict[str, float] | None = None


class DepthPipeline(DiffusionPipeline):
    """Marigold-format depth estimation with encode-once, one-batch ensembles and x̂₀ trajectories."""

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "text_encoder", "tokenizer"]

    def __init__(self, unet, scheduler, vae=None, text_encoder=None, tokenizer=None, prediction_type: str = "depth",
                 scale_invariant: bool = True, shift_invariant: bool = True,
                 default_denoising_steps: int | None = None, default_processing_resolution: int | None = None,
                 pixel_patch_size: int | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                              tokenizer=tokenizer)
        self.register_to_config(
            prediction_type=prediction_type, scale_invariant=scale_invariant, shift_invariant=shift_invariant,
            default_denoising_steps=default_denoising_steps,
            default_processing_resolution=default_processing_resolution, pixel_patch_size=pixel_patch_size)
        if vae is not None:
            self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
            pad_multiple = self.vae_scale_factor  # as diffusers (its UNet blocks take any latent size)
        else:  # pixel models pad to the UNet's full down-sampling factor (self-attention up blocks need it)
            self.vae_scale_factor = int(pixel_patch_size or 1)
            pad_multiple = self.vae_scale_factor * 2 ** (len(unet.config.block_out_channels) - 1)
        self.image_processor = MarigoldImageProcessor(vae_scale_factor=pad_multiple)
        self._empty_text: torch.Tensor | None = None
        self.domain_check: DomainCheck | None = None  # a calibrated model's domain (models.registry sets it)

    # ----------------------------------------------------------------------------------------- properties
    @property
    def pixel_space(self) -> bool:
        return self.vae is None

    @property
    def depth_channels(self) -> int:
        """Channels of the denoised sample: VAE latent channels, or p² packed depth pixels."""
        if self.vae is not None:
            return int(self.vae.config.latent_channels)
        return self.vae_scale_factor**2

    @property
    def default_steps(self) -> int:
        """The model's default step count (Marigold v1-0 files name none: 10, as its run script)."""
        return int(self.config.default_denoising_steps or MARIGOLD_V1_0_STEPS)

    @property
    def default_resolution(self) -> int:
        """The model's default processing resolution (v1-0: 768; pixel models: their training size)."""
        if self.config.default_processing_resolution is not None:
            return int(self.config.default_processing_resolution)
        if self.vae is None:
            return int(self.unet.config.sample_size) * self.vae_scale_factor
        return MARIGOLD_V1_0_RESOLUTION

    def check_model(self) -> None:
        """The UNet's channels must fit the format: image + depth in, depth out."""
        image_channels = (int(self.vae.config.latent_channels) if self.vae is not None
                          else 3 * self.vae_scale_factor**2)
        expected_in, expected_out = image_channels + self.depth_channels, self.depth_channels
        config = self.unet.config
        if (config.in_channels, config.out_channels) != (expected_in, expected_out):
            kind = "latent (VAE)" if self.vae is not None else f"pixel (patch {self.vae_scale_factor})"
            raise UserError(f"the UNet maps {config.in_channels} → {config.out_channels} channels, but a {kind} depth "
                            f"model needs {expected_in} → {expected_out} (image + depth in, depth out)")
        if self.vae is not None and self.text_encoder is None:
            raise UserError("a latent depth model needs its text encoder (Marigold conditions on the empty prompt)")

    # ------------------------------------------------------------------------------------------- encoding
    @torch.no_grad()
    def empty_text_embeds(self) -> torch.Tensor:
        """The empty prompt's embedding (1, L, D), tokenised without padding as Marigold does; cached."""
        if self._empty_text is None:
            if self.text_encoder is None:
                width = self.unet.config.cross_attention_dim
                width = int(width[0] if isinstance(width, (list, tuple)) else width)
                self._empty_text = torch.zeros(1, 1, width)
            else:
                ids = self.tokenizer("", padding="do_not_pad", max_length=self.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt").input_ids
                self._empty_text = self.text_encoder(ids.to(self.text_encoder.device))[0]
        return self._empty_text.to(device=self.device, dtype=self.unet.dtype)

    def image_to_model(self, pixels: torch.Tensor) -> torch.Tensor:
        """UNet image input for (B, 3, H, W) images in [-1, 1]: scaled VAE mode latents, or packed pixels."""
        if self.vae is None:
            return F.pixel_unshuffle(pixels, self.vae_scale_factor)
        return self.vae.encode(pixels).latent_dist.mode() * self.vae.config.scaling_factor

    def depth_to_model(self, depth: torch.Tensor) -> torch.Tensor:
        """Diffusion sample for (B, 1, H, W) depth in [-1, 1]: the VAE mean of the 3-channel copy, or packed pixels."""
        if self.vae is None:
            return F.pixel_unshuffle(depth, self.vae_scale_factor)
        encoded = self.vae.encode(depth.repeat(1, 3, 1, 1)).latent_dist.mean
        return encoded * self.vae.config.scaling_factor

    def model_to_depth(self, sample: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) diffusion samples → (B, 1, H, W) depth in [0, 1] (channel mean, clipped, as Marigold)."""
        if self.vae is None:
            depth = F.pixel_shuffle(sample, self.vae_scale_factor)
        else:
            depth = self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False)[0]
            depth = depth.mean(dim=1, keepdim=True)
        return (depth.clip(-1.0, 1.0) + 1.0) / 2.0

    @staticmethod
    def _canonical(image: Any) -> np.ndarray:
        """RGB uint8 (paths, PIL, arrays of any mode), or a float (H, W, 3) array that already lies in [0, 1]."""
        if isinstance(image, torch.Tensor):
            image = image.detach().cpu().numpy()
            if image.ndim == 3 and image.shape[0] in (1, 3):
                image = image.transpose(1, 2, 0)
        if isinstance(image, np.ndarray) and np.issubdtype(image.dtype, np.floating):
            if image.size and (image.min() < 0 or image.max() > 1):
                raise UserError("float images must lie in [0, 1]")
            array = image[:, :, None] if image.ndim == 2 else image
            if array.ndim != 3 or array.shape[2] not in (1, 3):
                raise UserError(f"float image must be (H, W), (H, W, 1) or (H, W, 3), got {image.shape}")
            return np.repeat(array, 3, axis=2).astype(np.float32) if array.shape[2] == 1 else array.astype(np.float32)
        return as_rgb_array(image)

    @torch.no_grad()
    def encode(self, image: Any, processing_resolution: int | None = None,
               resample_method_input: str = "bilinear") -> EncodedDepth:
        """Encode one image or a list of same-sized images once (see :class:`EncodedDepth`)."""
        images = [self._canonical(i) for i in (image if isinstance(image, list) else [image])]
        if not images:
            raise UserError("no images given")
        if len({i.shape[:2] for i in images}) > 1:
            raise UserError("all images of one call must share a size; call once per size")
        resolution = self.default_resolution if processing_resolution is None else int(processing_resolution)
        if resolution < 0 or resolution % self.vae_scale_factor:
            raise UserError(f"processing resolution must be 0 (native) or a positive multiple of "
                            f"{self.vae_scale_factor}, got {resolution}")
        if resample_method_input not in RESAMPLE_METHODS:
            raise UserError(f"resample method must be one of {', '.join(RESAMPLE_METHODS)}")
        self.check_model()
        height, width = images[0].shape[:2]
        if resolution and min(height, width) * resolution // max(height, width) == 0:
            raise UserError(f"image of {width}×{height} is too elongated for processing resolution {resolution}")
        pixels, padding, original = self.image_processor.preprocess(
            images, resolution, resample_method_input, self.device, self.unet.dtype)
        return EncodedDepth(images=images, condition=self.image_to_model(pixels), padding=tuple(padding),
                            original_size=(int(original[0]), int(original[1])), processing_resolution=resolution,
                            text_embeds=self.empty_text_embeds())

    # ------------------------------------------------------------------------------------------ main call
    @staticmethod
    def _step_kwargs(scheduler, generator) -> dict[str, Any]:
        return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}

    @torch.no_grad()
    def __call__(
        self,
        image: Any = None,
        num_inference_steps: int | None = None,
        ensemble_size: int = 1,
        processing_resolution: int | None = None,
        match_input_resolution: bool = True,
        resample_method_input: str = "bilinear",
        resample_method_output: str = "bilinear",
        batch_size: int | None = None,
        ensembling_kwargs: dict[str, Any] | None = None,
        latents: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        output_uncertainty: bool = False,
        output_latent: bool = False,
        return_dict: bool = True,
        *,
        encoded: EncodedDepth | None = None,
        output_trajectory: bool = False,
        show_progress: bool | None = None,
    ) -> DepthPipelineOutput | tuple:
        """Predict relative depth (0 = near, 1 = far) for an image or a list of same-sized images.

        Takes diffusers' ``MarigoldDepthPipeline`` arguments. ``batch_size=None`` (default) runs all N·E
        members in one UNet batch per step. ``encoded=`` reuses :meth:`encode`; ``output_trajectory=True`` adds
        the decoded x̂₀ of every member after every step.
        """
        timings: dict[str, float] = {}
        start = time.perf_counter()
        steps = self.default_steps if num_inference_steps is None else int(num_inference_steps)
        self._check_call(steps, ensemble_size, resample_method_output, batch_size, output_type,
                         output_uncertainty, latents, generator, ensembling_kwargs)
        if encoded is None:
            if image is None:
                raise UserError("give `image` (or `encoded=` from pipe.encode)")
            encoded = self.encode(image, processing_resolution, resample_method_input)
        timings["encode_s"] = time.perf_counter() - start

        count = encoded.batch_size * ensemble_size
        condition = encoded.condition.repeat_interleave(ensemble_size, dim=0)
        shape = (count, self.depth_channels, *condition.shape[2:])
        if isinstance(generator, list) and len(generator) != count:
            raise UserError(f"{len(generator)} generators for {count} ensemble members (images × ensemble size)")
        if latents is None:
            sample = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise UserError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            sample = latents.to(device=self.device, dtype=self.unet.dtype)
        chunk = count if batch_size is None else batch_size

        loop_start = time.perf_counter()
        finals, raw_trajectory = [], []
        configured = getattr(self, "_progress_bar_config", {}).get("disable", False)
        disable = not show_progress if show_progress is not None else configured
        with tqdm(total=steps * -(-count // chunk), disable=disable, desc="depth", leave=False) as progress:
            for begin in range(0, count, chunk):
                final, trajectory = self._denoise(sample[begin : begin + chunk], condition[begin : begin + chunk],
                                                  encoded.text_embeds, steps, generator, output_trajectory, progress)
                finals.append(final)
                raw_trajectory.append(trajectory)
        sample = torch.cat(finals)
        timings["denoise_s"] = time.perf_counter() - loop_start

        decode_start = time.perf_counter()
        prediction = torch.cat([self._finish_decode(sample[b : b + chunk], encoded) for b in range(0, count, chunk)])
        trajectories = self._trajectories(raw_trajectory, encoded, ensemble_size, match_input_resolution,
                                          resample_method_output) if output_trajectory else None
        uncertainty = None
        if ensemble_size > 1:
            members = prediction.reshape(encoded.batch_size, ensemble_size, *prediction.shape[1:])
            combined = [ensemble_depth(members[k], self.config.scale_invariant, self.config.shift_invariant,
                                       output_uncertainty, **(ensembling_kwargs or {}))
                        for k in range(encoded.batch_size)]
            prediction = torch.cat([c[0] for c in combined])
            uncertainty = torch.cat([c[1] for c in combined]) if output_uncertainty else None
        if match_input_resolution:
            prediction = self.image_processor.resize_antialias(prediction, encoded.original_size,
                                                               resample_method_output, is_aa=False)
            if uncertainty is not None:
                uncertainty = self.image_processor.resize_antialias(uncertainty, encoded.original_size,
                                                                    resample_method_output, is_aa=False)
        if output_type == "np":
            prediction = self.image_processor.pt_to_numpy(prediction)
            uncertainty = None if uncertainty is None else self.image_processor.pt_to_numpy(uncertainty)
        timings["decode_s"] = time.perf_counter() - decode_start
        timings["total_s"] = time.perf_counter() - start
        self.maybe_free_model_hooks()
        latent = sample if output_latent else None
        if not return_dict:
            return prediction, uncertainty, latent
        return DepthPipelineOutput(prediction=prediction, uncertainty=uncertainty, latent=latent,
                                   trajectories=trajectories, timings=timings)

    def _check_call(self, steps: int, ensemble_size: int, resample_method_output: str, batch_size: int | None,
                    output_type: str, output_uncertainty: bool, latents, generator, ensembling_kwargs) -> None:
        if steps < 1:
            raise UserError(f"num_inference_steps must be ≥ 1, got {steps}")
        trained = int(self.scheduler.config.get("num_train_timesteps", steps))
        if steps > trained:
            raise UserError(f"num_inference_steps: this model's scheduler has {trained} timesteps, so at most "
                            f"{trained} steps; got {steps}")
        if ensemble_size < 1:
            raise UserError(f"ensemble_size must be ≥ 1, got {ensemble_size}")
        if output_uncertainty and ensemble_size == 1:
            raise UserError("an uncertainty map needs ensemble_size > 1")
        if resample_method_output not in RESAMPLE_METHODS:
            raise UserError(f"resample method must be one of {', '.join(RESAMPLE_METHODS)}")
        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch_size must be ≥ 1, got {batch_size}")
        if output_type not in ("np", "pt"):
            raise UserError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        if latents is not None and generator is not None:
            raise UserError("give `latents` or `generator`, not both")
        if ensembling_kwargs is not None:
            allowed = {"reduction", "regularizer_strength", "max_iter", "tol", "max_res"}
            if not isinstance(ensembling_kwargs, dict) or set(ensembling_kwargs) - allowed:
                raise UserError(f"ensembling_kwargs must be a dict with keys from {sorted(allowed)}")
            if ensembling_kwargs.get("reduction", "median") not in ("median", "mean"):
                raise UserError("ensembling_kwargs['reduction'] must be 'median' or 'mean'")

    def _denoise(self, sample: torch.Tensor, condition: torch.Tensor, text_embeds: torch.Tensor, steps: int,
                 generator, keep_x0: bool, progress) -> tuple[torch.Tensor, list[tuple[int, int, torch.Tensor]]]:
        """The loop for one UNet batch: UNet input = [image, depth] (image first, as Marigold)."""
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(steps, device=self.device)
        embeds = text_embeds.repeat(sample.shape[0], 1, 1)
        extra = self._step_kwargs(scheduler, generator)
        trajectory = []
        for i, t in enumerate(scheduler.timesteps):
            model_input = torch.cat([condition, sample], dim=1)
            prediction = self.unet(model_input, t, encoder_hidden_states=embeds, return_dict=False)[0]
            out = scheduler.step(prediction, t, sample, **extra, return_dict=True)
            sample = out.prev_sample
            if keep_x0:
                x0 = getattr(out, "pred_original_sample", None)
                if x0 is None:
                    x0 = getattr(out, "denoised", None)
                if x0 is None:
                    raise UserError(f"{type(scheduler).__name__} does not report x̂₀; trajectories need DDIM or LCM")
                trajectory.append((i, int(t), x0.clone()))
            progress.update()
        return sample, trajectory

    def _finish_decode(self, sample: torch.Tensor, encoded: EncodedDepth) -> torch.Tensor:
        """Samples → (B, 1, h, w) depth at the processing resolution, padding removed."""
        return self.image_processor.unpad_image(self.model_to_depth(sample), encoded.padding)

    def _trajectories(self, raw: list[list[tuple[int, int, torch.Tensor]]], encoded: EncodedDepth,
                      ensemble_size: int, match_input_resolution: bool,
                      method: str) -> list[list[DepthTrajectoryPoint]]:
        """Decode every recorded x̂₀ (one decode per step) into per-image lists of (E, H, W) maps."""
        per_image: list[list[DepthTrajectoryPoint]] = [[] for _ in range(encoded.batch_size)]
        for index in range(len(raw[0])):
            step, timestep = raw[0][index][:2]
            depth = self._finish_decode(torch.cat([chunk[index][2] for chunk in raw]), encoded)
            if match_input_resolution:
                depth = self.image_processor.resize_antialias(depth, encoded.original_size, method, is_aa=False)
            maps = depth.reshape(encoded.batch_size, ensemble_size, *depth.shape[2:]).float().cpu().numpy()
            for k in range(encoded.batch_size):
                per_image[k].append(DepthTrajectoryPoint(step=step, timestep=timestep, prediction=maps[k]))
        return per_image

    def check_domain(self, image: Any) -> DomainVerdict:
        """The image's domain check (:attr:`domain_check`; an ``open`` verdict for a model without one)."""
        return DomainVerdict() if self.domain_check is None else self.domain_check.check(as_rgb_array(image))

    def estimate(self, image: Any, num_inference_steps: int | None = None, ensemble_size: int = 1,
                 seed: int | None = 0, processing_resolution: int | None = None, **kwargs: Any):
        """Depth of one image as a :class:`~addp_agent.engine.depth_result.DepthEstimate` (0 = near, 1 = far),
        with the model's domain check of the image.

        Disparity models (``prediction_type="disparity"``, 0 = far) are flipped so the convention always holds.
        """
        from addp_agent.engine.depth_result import DepthEstimate

        generator = torch.Generator(device="cpu").manual_seed(seed) if seed is not None else None
        output = self(image, num_inference_steps=num_inference_steps, ensemble_size=ensemble_size,
                      processing_resolution=processing_resolution, generator=generator,
                      output_uncertainty=ensemble_size > 1, output_type="np", **kwargs)
        depth = output.prediction[0, :, :, 0]
        if self.config.prediction_type == "disparity":
            depth = 1.0 - depth
        uncertainty = None if output.uncertainty is None else output.uncertainty[0, :, :, 0]
        settings = {"num_inference_steps": self.default_steps if num_inference_steps is None
                    else int(num_inference_steps), "ensemble_size": ensemble_size,
                    "processing_resolution": self.default_resolution if processing_resolution is None
                    else int(processing_resolution), "scheduler": type(self.scheduler).__name__,
                    "timestep_spacing": self.scheduler.config.get("timestep_spacing"),
                    "prediction_type": self.config.prediction_type}
        return DepthEstimate(depth=depth.astype(np.float32), uncertainty=uncertainty, seed=seed, settings=settings,
                             timings=dict(output.timings or {}), domain=self.check_domain(image))
