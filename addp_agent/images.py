"""Read user images into RGB uint8 arrays, with one clear error per bad input."""

from __future__ import annotations

import io
import re
import struct
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from addp_agent.errors import UserError

MAX_PIXELS = 40_000_000  # ≈ 6300×6300; larger inputs are refused, not silently downscaled
WORKING_MAX_SIDE = 1024  # what a long-lived session keeps of an image (models work at 256–768 px)
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                   ZeroDivisionError, OverflowError, MemoryError)
_OPEN_LOCK = threading.Lock()  # ``warnings.catch_warnings`` is process-wide state: one header read at a time


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


def _decode(data: bytes, source: str) -> Image.Image:
    """Open and load an encoded image, refusing declared sizes over :data:`MAX_PIXELS` before decoding pixels.

    PIL checks the declared size itself inside ``Image.open`` (and, for GIF, ICO, ICNS …, while loading), before
    we can: it warns above ``Image.MAX_IMAGE_PIXELS`` and raises above twice that. Both become the same one-line
    :class:`UserError` as any image over our cap, without changing PIL's limits or warning filters for the rest
    of the process (``catch_warnings`` is process-wide, hence the lock).
    """
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
            _check_size(image.width, image.height, source)
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            pixels = "".join(re.findall(r"\((\d+) pixels\)", str(error))[:1]) or "too many"
            raise UserError(f"{source}: image declares {pixels} pixels, over the {MAX_PIXELS / 1e6:.0f} MP cap "
                            "(a decompression bomb or a huge image); downscale it first") from None
    _check_size(image.width, image.height, source)  # a few formats only know their final size after loading
    return image


def load_image_bytes(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, …) to RGB uint8 (H, W, 3)."""
    return _decoded(data, source, to_rgb)


def load_mask(path: str | Path) -> np.ndarray:
    """Read a mask image file (any mode; grey level > 127 is foreground) to bool (H, W), with the checks of
    :func:`load_image`."""
    file = Path(path)
    return _decoded(_read(file), str(file), lambda image: np.asarray(image.convert("L")) > 127)


def _decoded(data: bytes, source: str, convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """``convert`` of the decoded image, turned upright by its EXIF orientation (as image viewers show a phone
    photo); one :class:`UserError` for an unreadable, damaged or oversized one."""
    try:
        with _decode(data, source) as image:
            return convert(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise UserError(f"{source}: not a readable image (unknown or corrupt format)") from None
    except UserError:
        raise
    except _DECODER_ERRORS as error:  # what PIL's decoders raise on damaged or crafted files
        detail = f"{type(error).__name__}: {str(error)[:120]}"
        raise UserError(f"{source}: image is damaged or truncated ({detail})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file to RGB uint8 (H, W, 3)."""
    file = Path(path)
    return load_image_bytes(_read(file), source=str(file))


def _read(file: Path) -> bytes:
    if not file.exists():
        raise UserError(f"{file}: no such file")
    if not file.is_file():
        raise UserError(f"{file}: not a file")
    try:
        return file.read_bytes()
    except OSError as error:  # no read permission, an I/O error
        raise UserError(f"{file}: cannot read it ({error.strerror or error})") from None


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


def bounded_copy(image: np.ndarray, max_side: int = WORKING_MAX_SIDE) -> np.ndarray:
    """``image`` (RGB uint8) scaled down (LANCZOS) so its longer side is at most ``max_side``; itself if it fits.

    What a long-lived session keeps instead of the full-resolution input: ≤ 3 MiB whatever the input size.
    """
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (RGB uint8) at ``size`` = (height, width), LANCZOS; itself when it already is."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((int(size[1]), int(size[0])), Image.Resampling.LANCZOS))
