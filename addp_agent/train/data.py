"""Training data held in memory: images, target masks and tokenised expressions at the model's resolution."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from addp_agent.data.sample import RISSample
from addp_agent.errors import DataError


@dataclass
class TrainingData:
    images: torch.Tensor  # uint8 (N, H, W, 3)
    masks: torch.Tensor  # bool (N, H, W)
    input_ids: torch.Tensor  # long (N, L)
    null_ids: torch.Tensor  # long (1, L): the empty prompt

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images as float (B, 3, H, W) in [0, 1], masks (B, H, W), token ids (B, L)."""
        images = self.images[index].permute(0, 3, 1, 2).float() / 255.0
        return images, self.masks[index], self.input_ids[index]


def _resized(sample: RISSample, size: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask = sample.image, sample.mask
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    return image, mask


def from_samples(samples, tokenizer, size: int) -> TrainingData:
    """Stack RIS samples (resized to ``size``², as the paper does) and tokenise their expressions."""
    images, masks, texts = [], [], []
    for sample in samples:
        image, mask = _resized(sample, size)
        images.append(image)
        masks.append(mask)
        texts.append(sample.expression)
    if not texts:
        raise DataError("the training data set is empty")
    tokens = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt").input_ids
    null = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    return TrainingData(images=torch.from_numpy(np.stack(images)), masks=torch.from_numpy(np.stack(masks)),
                        input_ids=tokens, null_ids=null)


def load_training_data(config, pipe) -> TrainingData:
    """Generate Shapes-Ref in memory (``data='shapes'``) or read a loader spec."""
    size = pipe.resolution
    if config.data == "shapes":
        from addp_agent.data.shapes import ShapesRef, ShapesRefConfig

        dataset = ShapesRef(split=config.split, n=config.n_train, seed=config.data_seed,
                            config=ShapesRefConfig(size=size))
        return from_samples((dataset[i] for i in range(len(dataset))), pipe.tokenizer, size)
    from addp_agent.data.sources import load_source

    samples = load_source(config.data, split=config.split)
    if config.n_train:
        samples = (s for i, s in enumerate(samples) if i < config.n_train)
    return from_samples(samples, pipe.tokenizer, size)


def validation_samples(config, size: int) -> list[RISSample]:
    """The first ``val_n`` samples of the validation split of the training source."""
    if config.data == "shapes":
        from addp_agent.data.shapes import ShapesRef, ShapesRefConfig

        return list(ShapesRef(split=config.val_split, n=config.val_n, seed=config.data_seed,
                              config=ShapesRefConfig(size=size)))
    from addp_agent.data.sources import load_source

    samples = [s for _, s in zip(range(config.val_n), load_source(config.data, split=config.val_split), strict=False)]
    if not samples:
        raise DataError(f"{config.data}: validation split {config.val_split!r} is empty (set --val-every 0)")
    return samples
