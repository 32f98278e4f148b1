"""The Depth tab: the depth map in colour (and the uncertainty map for ensembles), and which of two referred
objects is closer: both expressions go through the ``segment`` tool together, then the median depth under each mask
decides (0 = near, 1 = far)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from addp_agent.demo.service import DemoService
from addp_agent.errors import UserError
from addp_agent.extras import extra_imports
from addp_agent.masks import resize_mask

with extra_imports("demo"):
    import gradio as gr

SAME_DEPTH = 0.01  # medians closer than this (in relative depth) are "about as far"


def median_depth(depth: np.ndarray, mask: np.ndarray) -> float | None:
    """Median of ``depth`` under ``mask`` (resized to the depth map's size), or None for an empty mask."""
    if mask.shape != depth.shape:
        mask = resize_mask(mask, depth.shape)
    return float(np.median(depth[mask])) if mask.any() else None


def closer_sentence(first: str, second: str, near_first: float | None, near_second: float | None) -> str:
    """Which of two referred objects is closer, from their median depths (None: the object was not found)."""
    missing = [name for name, value in ((first, near_first), (second, near_second)) if value is None]
    if missing:
        return f"cannot compare: no mask for {' and '.join(repr(m) for m in missing)}"
    assert near_first is not None and near_second is not None
    values = f"(median depth {near_first:.3f} vs {near_second:.3f}; 0 = near, 1 = far)"
    if abs(near_first - near_second) < SAME_DEPTH:
        return f"'{first}' and '{second}' are about as far {values}"
    near, far = (first, second) if near_first < near_second else (second, first)
    return f"**'{near}' is closer** than '{far}' {values}"


def uncertainty_image(uncertainty: np.ndarray, percentile: float = 95.0) -> np.ndarray:
    """Grey uint8 map: white at the ``percentile``-th uncertainty and above (Marigold's visualisation)."""
    top = max(float(np.percentile(uncertainty, percentile)), 1e-8)
    return (np.clip(uncertainty / top, 0.0, 1.0) * 255).astype(np.uint8)


def depth(service: DemoService, path: str | None, ensemble: float | None, first: str | None, second: str | None,
          progress: Any = None) -> tuple:
    """coloured depth, uncertainty image (shown for ensembles > 1), stats, comparison."""
    image = service.image(path)
    size = max(1, int(ensemble or 1))
    names = [(t or "").strip() for t in (first, second)]
    if any(names) and not all(names):
        raise UserError("type both referring expressions to ask which is closer (or neither)")
    if progress is not None:
        progress(0.1, desc=f"depth (ensemble of {size})")
    estimate = service.estimate_depth(image, size)
    stats = estimate.stats()
    text = (f"depth {image.shape[1]}×{image.shape[0]}: median {stats['median']:.3f}, range {stats['min']:.3f}–"
            f"{stats['max']:.3f} (relative: 0 = near, 1 = far) · {estimate.timings.get('total_s', 0.0):.2f} s")
    answer = ""
    if all(names):
        if progress is not None:
            progress(0.6, desc="segmenting both objects")
        with ThreadPoolExecutor(2) as pool:  # concurrent calls share the batcher's UNet batches
            outputs = list(pool.map(lambda name: service.segment(str(path), name), names))
        medians = [median_depth(estimate.depth, out.artifact["mask"]) for out in outputs]
        answer = closer_sentence(names[0], names[1], *medians)
    uncertainty = None if estimate.uncertainty is None else uncertainty_image(estimate.uncertainty)
    return (estimate.colored(), gr.Image(value=uncertainty, visible=uncertainty is not None), text, answer)
