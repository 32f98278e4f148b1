"""Shapes-Ref scenes: configuration, palette, exact (non-antialiased) shape stamps, placement, rendering."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

FAMILIES = ("attribute", "position", "relation", "ordinal")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ("small", "large")
RED = (255, 0, 0)
RED_LIKE_DISTANCE = 120.0  # colours closer than this (RGB Euclidean) to pure red are "red-like"

PALETTE: dict[str, tuple[int, int, int]] = {
    "green": (40, 180, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 70, 210),
    "cyan": (40, 210, 220),
    "white": (245, 245, 245),
    "gray": (140, 140, 140),
    "orange": (255, 150, 20),  # 151 from red: allowed, but not a default colour
    "brown": (140, 90, 40),
    "red": (255, 0, 0),  # red-like: only with allow_red_like=True
    "pink": (255, 60, 100),  # red-like (117 from red)
}
DEFAULT_COLORS = ("green", "blue", "yellow", "purple", "cyan", "white", "gray")
PLAIN_BACKGROUND = (28, 28, 32)


def red_distance(color: tuple[int, int, int]) -> float:
    """Euclidean RGB distance to pure red (255, 0, 0)."""
    return float(np.sqrt(sum((int(a) - b) ** 2 for a, b in zip(color, RED, strict=True))))


class ShapesRefConfig(BaseModel):
    """Generator settings. Sizes scale with ``size`` (small 8-12 px, large 16-22 px at 64 px)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(64, ge=32, le=1024, description="image side in pixels (64, 128, 256, ...)")
    min_objects: int = Field(2, ge=2, le=8)
    max_objects: int = Field(6, ge=2, le=8)
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = DEFAULT_COLORS
    background: Literal["plain", "noise", "texture"] = "plain"
    overlap: bool = Field(False, description="allow partial overlap; masks are what stays visible")
    similarity: float = Field(0.5, ge=0.0, le=1.0, description="chance a new object copies 2 attributes")
    family_weights: dict[str, float] = Field(
        default_factory=lambda: {f: 0.25 for f in FAMILIES}, description="relative family frequencies"
    )
    allow_red_like: bool = Field(False, description="permit colours within 120 RGB of pure red")

    @model_validator(mode="after")
    def _check(self) -> ShapesRefConfig:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")
        if len(set(self.shapes)) < 2 or not set(self.shapes) <= set(SHAPES):
            raise ValueError(f"shapes must be >= 2 distinct names from {SHAPES}")
        if len(set(self.colors)) < 2 or not set(self.colors) <= set(PALETTE):
            raise ValueError(f"colors must be >= 2 distinct names from {sorted(PALETTE)}")
        red_like = [c for c in self.colors if red_distance(PALETTE[c]) < RED_LIKE_DISTANCE]
        if red_like and not self.allow_red_like:
            raise ValueError(f"red-like colours {red_like} clash with the red paint; set allow_red_like=True")
        weights = self.family_weights
        if set(weights) - set(FAMILIES) or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"family_weights needs non-negative weights over {FAMILIES} with a positive sum")
        return self


@dataclass(slots=True)
class SceneObject:
    """One painted object. ``attrs`` holds the JSON-safe description the program evaluator reads."""

    attrs: dict  # shape, color, size, cx, cy, bbox [x, y, w, h]
    full: np.ndarray  # bool (H, W): the whole shape
    visible: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))


@lru_cache(maxsize=512)
def stamp(shape: str, d: int) -> np.ndarray:
    """Exact bool stamp (d, d) of ``shape`` tested at pixel centres (no antialiasing)."""
    c = (np.arange(d) + 0.5) / d  # pixel centres in [0, 1]
    x, y = c[None, :], c[:, None]
    if shape == "circle":
        m = (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    elif shape == "square":
        m = (np.abs(x - 0.5) <= 0.43) & (np.abs(y - 0.5) <= 0.43)
    elif shape == "diamond":
        m = np.abs(x - 0.5) + np.abs(y - 0.5) <= 0.5
    elif shape == "triangle":
        m = np.abs(x - 0.5) <= 0.5 * y + 0.5 / d
    elif shape == "cross":
        m = (np.abs(x - 0.5) <= 0.18) | (np.abs(y - 0.5) <= 0.18)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.ascontiguousarray(m)


def _ri(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi] from ``rng.random()`` only (stable across Python versions)."""
    return lo + int(rng.random() * (hi - lo + 1))


def pick(rng: random.Random, items):
    """Uniform choice via ``rng.random()``."""
    return items[int(rng.random() * len(items))]


def shuffled(rng: random.Random, items) -> list:
    """Fisher-Yates shuffle of a copy via ``rng.random()``."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        out[i], out[j] = out[j], out[i]
    return out


def _diameter_range(size_name: str, image_size: int) -> tuple[int, int]:
    s = image_size / 64.0
    return (round(8 * s), round(12 * s)) if size_name == "small" else (round(16 * s), round(22 * s))


def _attributes(rng: random.Random, cfg: ShapesRefConfig, placed: list[SceneObject]) -> dict:
    if placed and rng.random() < cfg.similarity:  # copy two attributes, change the third
        base = pick(rng, placed).attrs
        attrs = {"shape": base["shape"], "color": base["color"], "size": base["size"]}
        key = pick(rng, ("shape", "color", "size"))
        pool = {"shape": cfg.shapes, "color": cfg.colors, "size": SIZES}[key]
        attrs[key] = pick(rng, [v for v in pool if v != base[key]])
        return attrs
    return {"shape": pick(rng, cfg.shapes), "color": pick(rng, cfg.colors), "size": pick(rng, SIZES)}


def sample_scene(rng: random.Random, cfg: ShapesRefConfig) -> list[SceneObject] | None:
    """Place 2..max objects; ``None`` when too few fit or (overlap) an object is mostly hidden."""
    n, side = _ri(rng, cfg.min_objects, cfg.max_objects), cfg.size
    gap, border = max(1, round(2 * side / 64)), max(1, round(side / 64))
    boxes: list[tuple[int, int, int]] = []
    objects: list[SceneObject] = []
    for _ in range(n):
        attrs = _attributes(rng, cfg, objects)
        for attempt in range(24):
            if attempt == 12 and attrs["size"] == "large":
                attrs["size"] = "small"  # crowded: fall back to a small object
            lo, hi = _diameter_range(attrs["size"], side)
            d = _ri(rng, lo, hi)
            x0, y0 = _ri(rng, border, side - d - border), _ri(rng, border, side - d - border)
            if all(_fits(x0, y0, d, b, gap, cfg.overlap) for b in boxes):
                break
        else:
            continue
        boxes.append((x0, y0, d))
        full = np.zeros((side, side), dtype=bool)
        full[y0 : y0 + d, x0 : x0 + d] = stamp(attrs["shape"], d)
        attrs.update(cx=x0 + d / 2, cy=y0 + d / 2, bbox=[x0, y0, d, d])
        objects.append(SceneObject(attrs=attrs, full=full))
    if len(objects) < cfg.min_objects:
        return None
    cover = np.zeros((side, side), dtype=bool)
    for obj in reversed(objects):  # later objects are painted on top
        obj.visible = obj.full & ~cover if cfg.overlap else obj.full
        if cfg.overlap:
            if obj.visible.sum() < 0.6 * obj.full.sum():
                return None
            cover |= obj.full
    return objects


def _fits(x0: int, y0: int, d: int, box: tuple[int, int, int], gap: int, overlap: bool) -> bool:
    bx, by, bd = box
    if overlap:  # centres far enough apart that neither object is mostly hidden
        return max(abs(x0 + d / 2 - bx - bd / 2), abs(y0 + d / 2 - by - bd / 2)) >= 0.6 * max(d, bd)
    return x0 >= bx + bd + gap or bx >= x0 + d + gap or y0 >= by + bd + gap or by >= y0 + d + gap


def render(objects: list[SceneObject], cfg: ShapesRefConfig, noise_seed: int) -> np.ndarray:
    """RGB uint8 image: grey background (plain / noise / texture) with flat-coloured objects."""
    side = cfg.size
    image = np.empty((side, side, 3), dtype=np.uint8)
    image[:] = PLAIN_BACKGROUND
    if cfg.background != "plain":
        gen = np.random.default_rng(noise_seed)
        grey = gen.integers(-14, 15, size=(side, side, 1), dtype=np.int16)
        if cfg.background == "texture":
            period = int(gen.integers(3, 9)) * max(1, side // 64)
            yy, xx = np.mgrid[0:side, 0:side]
            grey = grey // 2 + 16 * (((xx + yy * int(gen.integers(0, 2))) // period) % 2)[..., None]
        image = (image.astype(np.int16) + grey).clip(0, 255).astype(np.uint8)
    for obj in objects:
        x0, y0, d, _ = obj.attrs["bbox"]
        region = image[y0 : y0 + d, x0 : x0 + d]
        region[stamp(obj.attrs["shape"], d)] = PALETTE[obj.attrs["color"]]
    return image
