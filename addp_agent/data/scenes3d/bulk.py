"""Training arrays in bulk: images, union masks and expressions of samples 0..n-1, in parallel processes.

Each sample depends only on (split, seed, index, config), so the arrays are the same for any number of workers.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from addp_agent.data.scenes3d.config import ScenesConfig
from addp_agent.data.scenes3d.dataset import generate_records
from addp_agent.errors import DataError

CHUNK = 512  # samples per task handed to a worker


def _resized(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[0] == size:
        return image, mask
    image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))
    mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST))
    return image, mask > 127


def _chunk(split: str, start: int, stop: int, seed: int, config_json: str, size: int
           ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import torch

    torch.set_num_threads(1)
    cfg = ScenesConfig.model_validate_json(config_json)
    images, masks, texts = [], [], []
    for record in generate_records(split, range(start, stop), seed, cfg):
        mask = np.isin(record.rendered.ids, record.expression.targets)
        image, mask = _resized(record.rendered.rgb, mask, size)
        images.append(image)
        masks.append(mask)
        texts.append(record.expression.text)
    return np.stack(images), np.stack(masks), texts


def generate_arrays(split: str, n: int, seed: int, config: ScenesConfig, size: int | None = None, workers: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 images (n, S, S, 3), bool target masks (union; all False for no-target) and expressions, at ``size``
    (default: the config's), in ``workers`` processes (0: one per core up to 16 when n ≥ 1000)."""
    if n < 1:
        raise DataError("the training data set is empty (n must be ≥ 1)")
    size = size or config.size
    workers = workers or (min(16, os.cpu_count() or 1) if n >= 1000 else 1)
    bounds = [(a, min(n, a + CHUNK)) for a in range(0, n, CHUNK)]
    args = [(split, a, b, seed, config.model_dump_json(), size) for a, b in bounds]
    if workers == 1:
        parts = [_chunk(*a) for a in args]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_chunk, *zip(*args, strict=True)))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            [text for p in parts for text in p[2]])
