"""Image inputs of a pipeline call, brought to one batch the UNet's condition is computed from.

Accepted: everything diffusers' InstructPix2Pix takes (PIL images, float numpy arrays in [0, 1] as (H, W, C) or
(B, H, W, C), torch tensors in [0, 1] as (C, H, W) or (B, C, H, W), lists of these, and image latents: tensors with
the model's latent channels), plus file paths and uint8 arrays (read as the PIL image of the same pixels). Float
inputs are never quantised.

Two size rules:

- **stock** (``resolution=None``): diffusers' own preprocessing: each input keeps its size, floored to a multiple
  of the VAE factor (a list of PIL images takes the first one's size), aspect ratio kept;
- **working** (a resolution): every image is resized (LANCZOS) to that size, as the paper does; inputs of different
  sizes then share a batch.

Either way each input's original (height, width) is kept, so masks come back at the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.image_processor import VaeImageProcessor

from addp_agent.errors import UserError
from addp_agent.images import MAX_PIXELS, as_rgb_array, to_rgb

Size = tuple[int, int]  # (height, width)


@dataclass
class PreparedImages:
    """A batch ready for the condition encoder: [-1, 1] pixels (B, 3, H, W), or image latents (B, C, h, w)."""

    tensor: torch.Tensor
    is_latents: bool
    original_sizes: list[Size]


def image_items(image: Any) -> list[Any]:
    """The input as a flat list of single images (4-d arrays and tensors are split into their rows)."""
    if isinstance(image, (list, tuple)):
        if not image:
            raise UserError("no images given")
        return [item for element in image for item in image_items(element)]
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 4:
        return list(image)
    return [image]


def _standard(item: Any) -> Any:
    """One image in a form diffusers' preprocessing takes: RGB PIL, float (H, W, 3) array, or (C, H, W) tensor."""
    if isinstance(item, (str, Path)):
        return PIL.Image.fromarray(as_rgb_array(item))
    if isinstance(item, PIL.Image.Image):
        _check_pixels(item.height, item.width)
        return item if item.mode == "RGB" else PIL.Image.fromarray(to_rgb(item))
    if isinstance(item, torch.Tensor):
        if item.ndim != 3:
            raise UserError(f"an image tensor must be (C, H, W) or (B, C, H, W), got {tuple(item.shape)}")
        _check_pixels(item.shape[1], item.shape[2])
        return item
    if isinstance(item, np.ndarray):
        if item.dtype == np.uint8:
            return PIL.Image.fromarray(as_rgb_array(item))
        if not np.issubdtype(item.dtype, np.floating):
            raise UserError(f"an image array must be uint8 or float in [0, 1], got {item.dtype}")
        array = item[:, :, None] if item.ndim == 2 else item
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
            raise UserError(f"an image array must be (H, W), (H, W, 3), (H, W, 4) or (B, H, W, 3), got {item.shape}")
        _check_pixels(array.shape[0], array.shape[1])
        return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3]
    raise UserError(f"an image must be a path, a PIL image, a numpy array or a torch tensor, got {type(item).__name__}")


def _check_pixels(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise UserError(f"image has no pixels ({width}×{height})")
    if height * width > MAX_PIXELS:
        raise UserError(f"image is {width}×{height} = {width * height / 1e6:.1f} MP, over the "
                        f"{MAX_PIXELS / 1e6:.0f} MP cap; downscale it first")


def _size(item: Any, factor: int) -> Size:
    if isinstance(item, PIL.Image.Image):
        return item.height, item.width
    if isinstance(item, np.ndarray):
        return int(item.shape[0]), int(item.shape[1])
    return int(item.shape[1]) * factor, int(item.shape[2]) * factor


def _resized_float(item: np.ndarray | torch.Tensor, size: Size) -> np.ndarray:
    """A float image resized (LANCZOS, per channel in float: no quantising) to ``size``, as (H, W, 3) in [0, 1]."""
    if isinstance(item, torch.Tensor):
        array = item.detach().float().cpu().numpy().transpose(1, 2, 0)
        if array.min() < 0:  # a [-1, 1] tensor (diffusers' deprecated range)
            array = (array + 1.0) / 2.0
    else:
        array = np.asarray(item, dtype=np.float32)
    if array.shape[:2] == size:
        return array
    channels = [np.asarray(PIL.Image.fromarray(array[:, :, c].astype(np.float32), mode="F").resize(
        (size[1], size[0]), PIL.Image.Resampling.LANCZOS)) for c in range(array.shape[2])]
    return np.stack(channels, axis=2)


def prepare_images(image: Any, processor: VaeImageProcessor, resolution: Size | None,
                   latent_channels: int | None) -> PreparedImages:
    """Any accepted image input → one batch, under the stock size rule (``resolution=None``) or resized to
    ``resolution``; ``latent_channels``: the channel count that marks a tensor as image latents (None: never)."""
    items = [_standard(item) for item in image_items(image)]
    factor = int(processor.config.vae_scale_factor)
    latents = [isinstance(i, torch.Tensor) and latent_channels is not None and i.shape[0] == latent_channels
               for i in items]
    if any(latents):
        if not all(latents):
            raise UserError("a batch mixes images and image latents; give one kind")
        batch = torch.stack(items)
        if resolution is not None and tuple(s * factor for s in batch.shape[-2:]) != tuple(resolution):
            raise UserError(f"image latents of {batch.shape[-2]}×{batch.shape[-1]} do not match the working "
                            f"resolution {resolution[0]}×{resolution[1]} (latents {resolution[0] // factor}×"
                            f"{resolution[1] // factor})")
        return PreparedImages(batch, True, [_size(i, factor) for i in items])
    sizes = [_size(i, factor) for i in items]
    if len({type(i) for i in items}) > 1:
        raise UserError("a list of images mixes PIL images, arrays and tensors; give one kind")
    try:
        if resolution is None:
            pixels = processor.preprocess(items if len(items) > 1 else items[0])
        elif isinstance(items[0], PIL.Image.Image):
            height, width = resolution
            resized = [i if i.size == (width, height) else i.resize((width, height), PIL.Image.Resampling.LANCZOS)
                       for i in items]
            pixels = processor.preprocess(resized, height=height, width=width)
        else:
            pixels = processor.preprocess(np.stack([_resized_float(i, resolution) for i in items]),
                                          height=resolution[0], width=resolution[1])
    except (ValueError, RuntimeError) as error:  # e.g. arrays of different sizes cannot be stacked
        raise UserError(f"cannot prepare the images ({str(error).splitlines()[0]}); give images of one size, "
                        "or set `resolution=` to resize them") from None
    if pixels.shape[1] != 3:
        raise UserError(f"images must have 3 channels (RGB), got {pixels.shape[1]}")
    if min(pixels.shape[-2:]) < 1:
        raise UserError(f"an image of {sizes[0][1]}×{sizes[0][0]} is smaller than the model's factor {factor}")
    return PreparedImages(pixels, False, sizes)
