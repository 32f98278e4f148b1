"""Mask codecs and geometry: COCO RLE (pycocotools), PNG, polygons, bbox, area, IoU, connected instances."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


def as_bool_mask(mask: np.ndarray) -> np.ndarray:
    """Return ``mask`` as a 2-D bool array (non-zero = foreground)."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask must be 2-D (H, W), got shape {array.shape}")
    return array.astype(bool, copy=False)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a mask as JSON-safe COCO RLE ``{"size": [H, W], "counts": str}``."""
    fortran = np.asfortranarray(as_bool_mask(mask).astype(np.uint8))
    rle = mask_utils.encode(fortran)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed string/bytes counts or uncompressed list counts) to a bool mask."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a COCO RLE object (need 'size' and 'counts'): {error}") from None
    if isinstance(counts, list):
        encoded = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    else:
        encoded = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (union of parts) to a bool mask."""
    parts = [p for p in polygons if len(p) >= 6]
    if not parts:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(parts, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def mask_to_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[list[float]]:
    """Trace the contours of a mask as COCO polygons (lossy; contourpy's marching squares)."""
    from contourpy import contour_generator

    m = as_bool_mask(mask)
    if not m.any():
        return []
    padded = np.pad(m.astype(np.float32), 1)
    lines = contour_generator(z=padded).lines(0.5)
    polygons: list[list[float]] = []
    for line in lines:
        points = np.asarray(line) - 1.0  # undo padding; columns are (x, y)
        if len(points) < 3:
            continue
        if tolerance > 0:
            points = _simplify(points, tolerance)
        if len(points) >= 3:
            polygons.append([round(float(v), 2) for v in points.reshape(-1)])
    return polygons


def _simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of a closed polyline."""
    if len(points) < 4:
        return points
    start, end = points[0], points[-1]
    direction = end - start
    norm = float(np.hypot(*direction))
    if norm == 0.0:
        distances = np.hypot(*(points - start).T)
    else:
        distances = np.abs(direction[0] * (points[:, 1] - start[1]) - direction[1] * (points[:, 0] - start[0])) / norm
    index = int(np.argmax(distances))
    if distances[index] <= tolerance:
        return np.stack([start, end])
    left = _simplify(points[: index + 1], tolerance)
    right = _simplify(points[index:], tolerance)
    return np.concatenate([left[:-1], right])


def bbox_xywh(mask: np.ndarray) -> list[int]:
    """Tight bounding box ``[x, y, w, h]`` in pixels; ``[0, 0, 0, 0]`` for an empty mask."""
    m = as_bool_mask(mask)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


MIN_INSTANCE_FRACTION = 0.001  # an instance covers at least 0.1 % of the image …
MIN_INSTANCE_PIXELS = 4  # … and at least 4 pixels


def min_instance_area(shape: tuple[int, ...]) -> int:
    """The smallest connected component counted as an instance in a mask of ``shape`` (H, W)."""
    return max(MIN_INSTANCE_PIXELS, round(MIN_INSTANCE_FRACTION * shape[0] * shape[1]))


def connected_instances(mask: np.ndarray, min_area: int | None = None) -> list[np.ndarray]:
    """The 8-connected components of ``mask`` with at least ``min_area`` pixels (default
    :func:`min_instance_area`), largest first (ties: top-most, then left-most). A non-empty mask has at least one
    instance: its largest component, even when that is smaller."""
    from scipy import ndimage

    m = as_bool_mask(mask)
    labels, count = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    smallest = min_instance_area(m.shape) if min_area is None else min_area
    kept = [k for k in range(1, count + 1) if sizes[k] >= smallest] or [int(np.argmax(sizes[1:])) + 1]
    firsts = ndimage.minimum_position(labels, labels, kept)  # (row, col) of each component's first pixel
    order = sorted(range(len(kept)), key=lambda i: (-int(sizes[kept[i]]), firsts[i]))
    return [labels == kept[i] for i in order]


def area(mask: np.ndarray) -> int:
    """Number of foreground pixels."""
    return int(as_bool_mask(mask).sum())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks; two empty masks have IoU 1.0 (they agree exactly)."""
    a, b = as_bool_mask(a), as_bool_mask(b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    union = int(np.logical_or(a, b).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(a, b).sum()) / union


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``size`` = (height, width): bilinear over 0/255, thresholded at half (smooth edges when scaling
    up); the mask itself when it already has that size."""
    m = as_bool_mask(mask)
    if m.shape == tuple(size):
        return m
    grey = Image.fromarray(m.astype(np.uint8) * 255, mode="L").resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(grey) >= 128


def mask_to_png_bytes(mask: np.ndarray) -> bytes:
    """Encode a mask as an 8-bit L-mode PNG with values 0/255."""
    buffer = io.BytesIO()
    Image.fromarray(as_bool_mask(mask).astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def mask_to_png_base64(mask: np.ndarray) -> str:
    """Base64 of :func:`mask_to_png_bytes` (no data-URL prefix)."""
    return base64.b64encode(mask_to_png_bytes(mask)).decode("ascii")


def mask_from_png_bytes(data: bytes) -> np.ndarray:
    """Decode a PNG mask (any mode; non-zero = foreground)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L")) > 127


def overlay(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 40, 40),
            alpha: float = 0.55) -> np.ndarray:
    """Blend ``color`` over the masked pixels of an RGB uint8 image and outline the mask in white."""
    rgb = np.asarray(image, dtype=np.float32).copy()
    m = as_bool_mask(mask)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask {m.shape} and image {rgb.shape[:2]} differ in size")
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, dtype=np.float32)
    edge = m & ~(
        np.pad(m, 1)[2:, 1:-1] & np.pad(m, 1)[:-2, 1:-1] & np.pad(m, 1)[1:-1, 2:] & np.pad(m, 1)[1:-1, :-2]
    )
    rgb[edge] = 255.0
    return rgb.clip(0, 255).astype(np.uint8)
