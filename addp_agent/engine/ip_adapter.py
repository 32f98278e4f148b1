"""IP-Adapter image embeddings of a pipeline call (the stock InstructPix2Pix inputs ``ip_adapter_image`` and
``ip_adapter_image_embeds``), as one (image, negative) pair per loaded adapter, shared by every sample of the batch.
The guidance branches lay them out like the prompts (``branches.py``)."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models import ImageProjection

from addp_agent.engine.state import IPAdapterEmbeds
from addp_agent.errors import UserError


def embeds_from_rows(embeds: list[torch.Tensor], device: torch.device, dtype: torch.dtype) -> IPAdapterEmbeds:
    """Given embeddings, per adapter: rows ``[image, negative, negative]`` (diffusers' InstructPix2Pix layout),
    ``[negative, image]`` (its Stable Diffusion layout) or ``[image]`` (negative: zeros)."""
    pairs = []
    for tensor in embeds:
        tensor = tensor.to(device=device, dtype=dtype)
        rows = tensor.shape[0]
        if rows not in (1, 2, 3):
            raise UserError(f"ip_adapter_image_embeds must have 1, 2 or 3 rows, got {rows}")
        if rows == 2:
            pairs.append((tensor[1:2], tensor[:1]))
        else:
            pairs.append((tensor[:1], tensor[1:2] if rows == 3 else torch.zeros_like(tensor)))
    return pairs


@torch.no_grad()
def embeds_from_images(images: Any, unet: Any, image_encoder: Any, feature_extractor: Any, device: torch.device,
                       dtype: torch.dtype) -> IPAdapterEmbeds:
    """One image per loaded adapter through ``image_encoder``: its image embeddings (negative: zeros) for an
    ``ImageProjection`` adapter, else its penultimate hidden states (negative: those of a black image)."""
    layers = getattr(getattr(unet, "encoder_hid_proj", None), "image_projection_layers", None)
    if layers is None or image_encoder is None or feature_extractor is None:
        raise UserError("ip_adapter_image needs a loaded IP-Adapter (load_ip_adapter) with its image_encoder and "
                        "feature_extractor")
    images = images if isinstance(images, list) else [images]
    if len(images) != len(layers):
        raise UserError(f"{len(images)} ip_adapter_image for {len(layers)} loaded IP-Adapters")
    encoder_dtype = next(image_encoder.parameters()).dtype
    pairs = []
    for image, layer in zip(images, layers, strict=True):
        if not isinstance(image, torch.Tensor):
            image = feature_extractor(image, return_tensors="pt").pixel_values
        pixels = image.to(device=device, dtype=encoder_dtype)
        if isinstance(layer, ImageProjection):
            embeds = image_encoder(pixels).image_embeds
            negative = torch.zeros_like(embeds)
        else:
            embeds = image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
            negative = image_encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        pairs.append((embeds[None].to(dtype), negative[None].to(dtype)))
    return pairs
