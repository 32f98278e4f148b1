"""Depth training data held in memory: images, normalised depth and valid masks at one training size."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from addp_agent.data.depth_sample import DepthSample
from addp_agent.errors import DataError
from addp_agent.train.cache import load_cached, store_cached
from addp_agent.train.depth_recipe import normalize_depth


@dataclass
class DepthTrainingData:
    images: torch.Tensor  # uint8 (N, H, W, 3)
    depth: torch.Tensor  # float16 (N, H, W): normalised to [-1, 1] per image (2 %/98 % quantiles)
    valid: torch.Tensor  # bool (N, H, W)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.images, self.depth, self.valid))

    def to(self, device: torch.device | str) -> DepthTrainingData:
        return DepthTrainingData(self.images.to(device), self.depth.to(device), self.valid.to(device))

    def batch(self, index: torch.Tensor, flip: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images (B, 3, H, W) in [-1, 1], depth (B, 1, H, W) in [-1, 1], valid (B, 1, H, W); ``flip`` (B,) bool
        mirrors those samples left-right."""
        index = index.to(self.images.device)
        images = self.images[index].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        depth = self.depth[index][:, None].float()
        valid = self.valid[index][:, None]
        if flip is not None and bool(flip.any()):
            flip = flip.to(images.device).view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(-1), images)
            depth = torch.where(flip, depth.flip(-1), depth)
            valid = torch.where(flip, valid.flip(-1), valid)
        return images, depth, valid


def training_size(sample: DepthSample, resolution: int, multiple: int) -> tuple[int, int]:
    """(H, W) with the longer side at ``resolution`` and the aspect of ``sample``, rounded to ``multiple``."""
    height, width = sample.depth.shape
    scale = resolution / max(height, width)
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


def prepare_sample(sample: DepthSample, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise at the source resolution, then resize: image bilinear (antialiased), depth and mask nearest."""
    normalised, valid = normalize_depth(sample.depth, sample.valid)
    image = sample.image
    if image.shape[:2] != size:
        target = (size[1], size[0])
        image = np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BILINEAR))
        normalised = np.asarray(Image.fromarray(normalised).resize(target, Image.Resampling.NEAREST))
        valid = np.asarray(Image.fromarray(valid).resize(target, Image.Resampling.NEAREST))
    return image, normalised.astype(np.float16), valid.astype(bool)


def stack_samples(samples: Iterable[DepthSample], resolution: int, multiple: int,
                  limit: int | None = None) -> DepthTrainingData:
    """Normalise and stack the first ``limit`` samples at one training size (fixed by the first sample)."""
    images, depths, valids = [], [], []
    size = None
    for sample in islice(samples, limit):
        size = size or training_size(sample, resolution, multiple)
        image, depth, valid = prepare_sample(sample, size)
        images.append(image)
        depths.append(depth)
        valids.append(valid)
    if not images:
        raise DataError("the depth training set is empty")
    return DepthTrainingData(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(depths)),
                             torch.from_numpy(np.stack(valids)))


def load_depth_training_data(spec: str, split: str, resolution: int, multiple: int, limit: int | None = None,
                             cache: Path | None = None) -> DepthTrainingData:
    """:func:`stack_samples` of a depth source spec, kept in ``cache`` (torch file) and reused when it matches."""
    from addp_agent.data.depth_sources import load_depth_source

    meta = {"spec": spec, "split": split, "resolution": resolution, "multiple": multiple, "limit": limit}
    stored = load_cached(cache, meta)
    if stored is not None:
        return DepthTrainingData(stored["images"], stored["depth"], stored["valid"])
    data = stack_samples(load_depth_source(spec, split), resolution, multiple, limit)
    store_cached(cache, meta, {"images": data.images, "depth": data.depth, "valid": data.valid})
    return data
