"""Read user images into RGB uint8 arrays, with one clear error per bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from addp_agent.errors import UserError

MAX_PIXELS = 40_000_000  # ≈ 6300×6300; larger inputs are refused, not silently downscaled


def to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode (L, LA, P, RGBA, I;16, I, F, CMYK …) to RGB uint8.

    Transparency is composited on white; 16-bit and 32-bit grey are rescaled from their value range.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _check_size(width: int, height: int, source: str) -> None:
    if width < 1 or height < 1:
        raise UserError(f"{source}: image has no pixels ({width}×{height})")
    if width * height > MAX_PIXELS:
        raise UserError(f"{source}: image is {width}×{height} = {width * height / 1e6:.1f} MP, over the "
                        f"{MAX_PIXELS / 1e6:.0f} MP cap; downscale it first")


def load_image_bytes(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, …) to RGB uint8 (H, W, 3)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image.width, image.height, source)
            image.load()
            return to_rgb(image)
    except UnidentifiedImageError:
        raise UserError(f"{source}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as error:
        if isinstance(error, UserError):
            raise
        raise UserError(f"{source}: image is damaged or truncated ({error})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file to RGB uint8 (H, W, 3)."""
    file = Path(path)
    if not file.exists():
        raise UserError(f"{file}: no such file")
    if not file.is_file():
        raise UserError(f"{file}: not a file")
    return load_image_bytes(file.read_bytes(), source=str(file))


def as_rgb_array(image: np.ndarray | Image.Image | str | Path) -> np.ndarray:
    """Accept a path, a PIL image or an array (H, W), (H, W, 3) or (H, W, 4) and return RGB uint8."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, "image")
        return to_rgb(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise UserError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype(np.uint8)
    _check_size(array.shape[1], array.shape[0], "image")
    return array[:, :, :3] if array.shape[2] == 4 else array
