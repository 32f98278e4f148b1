"""Training data held in memory: images, target masks and tokenised expressions at the model's resolution."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from addp_agent.data.sample import RISSample
from addp_agent.errors import DataError
from addp_agent.train.cache import load_cached, store_cached
from addp_agent.train.config import TrainConfig

if TYPE_CHECKING:
    from addp_agent.engine.pipeline import ADDPPipeline


@dataclass
class TrainingData:
    """Training set at the model's resolution, one row per referred object (its mask), each with its image and
    expressions.

    ``len(data)`` (the referred objects) is an epoch. Images shared by several objects are stored once
    (``image_of[row]``); the expressions of row r are ``input_ids[first_expression[r] : + expression_count[r]]``
    and a batch takes one of them at random, as the official ``refseg_dataset`` does. Without the optional
    fields, row r has image r and expression r (generated data).
    """

    images: torch.Tensor  # uint8 (I, H, W, 3)
    masks: torch.Tensor  # bool (N, H, W)
    input_ids: torch.Tensor  # long (S, L)
    null_ids: torch.Tensor  # long (1, L): the empty prompt
    image_of: torch.Tensor | None = None  # long (N,): row → image, on the data's device
    first_expression: torch.Tensor | None = None  # long (N,), on the CPU
    expression_count: torch.Tensor | None = None  # long (N,), on the CPU

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.images, self.masks, self.input_ids))

    def to(self, device: torch.device | str) -> TrainingData:
        return TrainingData(self.images.to(device), self.masks.to(device), self.input_ids.to(device),
                            self.null_ids.to(device), None if self.image_of is None else self.image_of.to(device),
                            self.first_expression, self.expression_count)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``index`` (drawn on the CPU) as images float (B, 3, H, W) in [0, 1], masks (B, H, W) and the token
        ids (B, L) of one expression each (drawn from ``generator`` when a row has several), on the data's device."""
        expressions = index
        if self.expression_count is not None and self.first_expression is not None:
            pick = torch.rand(len(index), generator=generator) * self.expression_count[index.cpu()]
            expressions = self.first_expression[index.cpu()] + pick.long()
        index = index.to(self.masks.device)
        rows = index if self.image_of is None else self.image_of[index]
        images = self.images[rows].permute(0, 3, 1, 2).float() / 255.0
        return images, self.masks[index], self.input_ids[expressions.to(self.input_ids.device)]


def _resized(sample: RISSample, size: int) -> tuple[np.ndarray, np.ndarray]:
    image, mask = sample.image, sample.mask
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    return image, mask


def _tokens(texts: list[str], tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``texts`` (each distinct text tokenised once) and of the empty prompt."""
    unique = list(dict.fromkeys(texts))  # generated expressions repeat a lot
    row = {text: i for i, text in enumerate(unique)}
    tokens = tokenizer(unique, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt").input_ids[torch.tensor([row[text] for text in texts])]
    null = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    return tokens, null


def from_arrays(images: np.ndarray, masks: np.ndarray, texts: list[str], tokenizer) -> TrainingData:
    """Training tensors from stacked images (N, H, W, 3) uint8, masks (N, H, W) bool and one expression each."""
    if not texts:
        raise DataError("the training data set is empty")
    tokens, null = _tokens(texts, tokenizer)
    return TrainingData(images=torch.as_tensor(images), masks=torch.as_tensor(masks), input_ids=tokens, null_ids=null)


def from_samples(samples, tokenizer, size: int) -> TrainingData:
    """RIS samples resized to ``size``² (as the paper does), grouped: one row per referred object (same image and
    mask), each image stored once, the object's expressions listed together."""
    images: dict[bytes, int] = {}
    image_rows: list[np.ndarray] = []
    objects: dict[tuple[int, bytes], int] = {}
    object_image: list[int] = []
    object_masks: list[np.ndarray] = []
    texts: list[list[str]] = []
    last: tuple[object, object, int] | None = None  # (image, mask, object) of the previous sample
    for sample in samples:
        if last is not None and sample.image is last[0] and sample.mask is last[1]:
            texts[last[2]].append(sample.expression)  # the next expression of the same object (one resize)
            continue
        image, mask = _resized(sample, size)
        image_key = hashlib.blake2b(image.tobytes(), digest_size=16).digest()
        if image_key not in images:
            images[image_key] = len(image_rows)
            image_rows.append(image)
        object_key = (images[image_key], hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest())
        if object_key not in objects:
            objects[object_key] = len(object_masks)
            object_image.append(images[image_key])
            object_masks.append(mask)
            texts.append([])
        texts[objects[object_key]].append(sample.expression)
        last = (sample.image, sample.mask, objects[object_key])
    if not object_masks:
        raise DataError("the training data set is empty")
    counts = torch.tensor([len(t) for t in texts])
    tokens, null = _tokens([text for group in texts for text in group], tokenizer)
    return TrainingData(images=torch.from_numpy(np.stack(image_rows)), masks=torch.from_numpy(np.stack(object_masks)),
                        input_ids=tokens, null_ids=null, image_of=torch.tensor(object_image),
                        first_expression=torch.cumsum(counts, 0) - counts, expression_count=counts)


def _shapes_config(size: int):
    """Shapes-Ref's settings at the working resolution ``size``; a :class:`UserError` when it cannot draw at it."""
    from pydantic import ValidationError

    from addp_agent.data.shapes import ShapesRefConfig
    from addp_agent.errors import UserError, validation_message

    try:
        return ShapesRefConfig(size=size)
    except ValidationError as error:
        raise UserError(f"Shapes-Ref is generated at the working resolution, {size} px: "
                        f"{validation_message(error)} (set --resolution)") from None


def _shapes_chunk(split: str, start: int, stop: int, seed: int, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from addp_agent.data.shapes import generate_sample

    config = _shapes_config(size)
    samples = [generate_sample(split, i, seed, config) for i in range(start, stop)]
    return (np.stack([s.image for s in samples]), np.stack([s.mask for s in samples]),
            [s.expression for s in samples])


def generate_shapes(split: str, n: int, seed: int, size: int, workers: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Shapes-Ref samples ``0..n-1`` as arrays, in ``workers`` processes (0: one per core, up to 16, for large n).

    Each sample depends only on (seed, split, index), so the result is the same for any number of workers.
    """
    if n < 1:
        raise DataError("the training data set is empty (n_train must be ≥ 1)")
    workers = workers or (min(16, os.cpu_count() or 1) if n >= 5000 else 1)
    chunk = -(-n // workers)
    bounds = [(start, min(n, start + chunk)) for start in range(0, n, chunk)]
    if workers == 1:
        parts = [_shapes_chunk(split, a, b, seed, size) for a, b in bounds]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_shapes_chunk, *zip(*[(split, a, b, seed, size) for a, b in bounds], strict=True)))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [text for p in parts for text in p[2]])


def _cached(meta: dict, make, cache: Path | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``make()``'s arrays, kept in ``cache`` (torch file) and reused when the stored ``meta`` matches."""
    stored = load_cached(cache, meta)
    if stored is not None:
        return stored["images"].numpy(), stored["masks"].numpy(), list(stored["expressions"])
    images, masks, texts = make()
    store_cached(cache, meta, {"images": torch.from_numpy(images), "masks": torch.from_numpy(masks),
                               "expressions": texts})
    return images, masks, texts


def cached_shapes(split: str, n: int, seed: int, size: int, cache: Path | None = None, workers: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`generate_shapes`, kept in ``cache`` (torch file) and reused when its n/seed/split/size match."""
    meta = {"dataset": "shapes-ref", "split": split, "n": n, "seed": seed, "size": size}
    return _cached(meta, lambda: generate_shapes(split, n, seed, size, workers), cache)


def cached_scenes(spec: str, split: str, n_train: int, size: int, cache: Path | None = None, workers: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scenes-3D training arrays for a ``scenes-gen:`` spec (at most ``n_train`` samples when it is set), at
    ``size``, generated in parallel processes and kept in ``cache``."""
    from addp_agent.data.scenes3d import parse_spec
    from addp_agent.data.scenes3d.bulk import generate_arrays

    n, seed, config = parse_spec(spec.partition(":")[2])
    n = min(n, n_train) if n_train else n
    meta = {"dataset": "scenes3d", "split": split, "n": n, "seed": seed, "size": size,
            "config": config.model_dump(mode="json")}
    return _cached(meta, lambda: generate_arrays(split, n, seed, config, size, workers), cache)


def check_sources(config: TrainConfig) -> None:
    """Open the training (and validation) split of a loader spec: a missing root or a wrong layout fails here, in one
    line naming the file it expected, before a model loads. Generated data need no check."""
    if config.data == "shapes" or config.data.startswith("scenes-gen:"):
        _check_generated(config)
        return
    from addp_agent.data.sources import load_source

    load_source(config.data, split=config.split)
    if config.val_every:
        load_source(config.data, split=config.val_split)


def _check_generated(config: TrainConfig) -> None:
    """The splits, counts and settings of generated data (a bad ``--val-split`` would otherwise fail at the first
    validation, after the training steps before it)."""
    if config.data == "shapes":
        from addp_agent.data.shapes import sample_number

        n = config.n_train
        size = config.resolution or (None if config.init_from else config.model.resolution)
        if size is not None:
            _shapes_config(size)
    else:
        from addp_agent.data.scenes3d import parse_spec
        from addp_agent.data.scenes3d.dataset import sample_number

        n, _, _ = parse_spec(config.data.partition(":")[2])
        n = min(n, config.n_train) if config.n_train else n
    from addp_agent.errors import UserError
    from addp_agent.limits import MAX_GENERATED

    for name, count in (("--n-train", n), ("--val-n", config.val_n if config.val_every else 0)):
        if count > MAX_GENERATED:
            raise UserError(f"{name} {count}: a generated split has at most {MAX_GENERATED} samples")
    sample_number(config.split, max(0, n - 1))
    if config.val_every:
        sample_number(config.val_split, config.val_n - 1)


def load_training_data(config: TrainConfig, pipe: ADDPPipeline) -> TrainingData:
    """Generate Shapes-Ref (``data='shapes'``) or Scenes-3D (``scenes-gen:…``) in memory in parallel processes,
    optionally cached, or read a loader spec."""
    size = pipe.resolution
    if config.data == "shapes":
        images, masks, texts = cached_shapes(config.split, config.n_train, config.data_seed, size,
                                             config.data_cache, config.data_workers)
        return from_arrays(images, masks, texts, pipe.tokenizer)
    if config.data.startswith("scenes-gen:"):
        images, masks, texts = cached_scenes(config.data, config.split, config.n_train, size, config.data_cache,
                                             config.data_workers)
        return from_arrays(images, masks, texts, pipe.tokenizer)
    from addp_agent.data.sources import load_source

    samples = load_source(config.data, split=config.split)
    if config.n_train:
        samples = (s for i, s in enumerate(samples) if i < config.n_train)
    return from_samples(samples, pipe.tokenizer, size)


def validation_samples(config: TrainConfig, size: int) -> list[RISSample]:
    """The first ``val_n`` samples of the validation split of the training source."""
    if config.data == "shapes":
        from addp_agent.data.shapes import ShapesRef

        return list(ShapesRef(split=config.val_split, n=config.val_n, seed=config.data_seed,
                              config=_shapes_config(size)))
    from addp_agent.data.sources import load_source

    samples = [s for _, s in zip(range(config.val_n), load_source(config.data, split=config.val_split), strict=False)]
    if not samples:
        raise DataError(f"{config.data}: validation split {config.val_split!r} is empty (set --val-every 0)")
    return samples
