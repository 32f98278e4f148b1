"""Natural-looking images built without downloads: the out-of-domain set for a synthetic model's domain check.

- photos shipped inside installed packages (matplotlib's sample data: ``grace_hopper.jpg``,
  ``Minduka_Present_Blue_Pack.png``; the MRI slice ``s1045.ima.gz``; the two elevation models rendered as shaded
  relief), and random crops and resizes of them;
- procedural textures: fractal (1/f) noise through random colour ramps (clouds, terrain, fog), marble and wood
  veins, noisy gradients, and the same at random sizes.

``natural_images(n, seed)`` draws ``n`` of them (RGB uint8, 48 to 512 px a side), the same ones for the same seed.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image


def _sample_data() -> Path | None:
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - matplotlib is a core dependency
        return None
    folder = Path(matplotlib.get_data_path()) / "sample_data"
    return folder if folder.is_dir() else None


def _shaded(elevation: np.ndarray, cmap: str) -> np.ndarray:
    from matplotlib import colormaps
    from matplotlib.colors import LightSource

    rgb = LightSource(azdeg=315, altdeg=45).shade(elevation, cmap=colormaps[cmap], blend_mode="soft")
    return (rgb[..., :3] * 255).round().astype(np.uint8)


@cache
def package_photos() -> tuple[np.ndarray, ...]:
    """The photos and photo-like renders found in installed packages (RGB uint8); empty if none is installed."""
    folder = _sample_data()
    if folder is None:
        return ()
    photos: list[np.ndarray] = []
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        if (folder / name).is_file():
            with Image.open(folder / name) as image:
                photos.append(np.asarray(image.convert("RGB")))
    if (folder / "s1045.ima.gz").is_file():
        raw = np.frombuffer(gzip.decompress((folder / "s1045.ima.gz").read_bytes()), dtype="<u2")
        if raw.size == 256 * 256:
            grey = (raw.reshape(256, 256).astype(np.float64) / max(1, raw.max()) * 255).astype(np.uint8)
            photos.append(np.repeat(grey[..., None], 3, axis=2))
    for name, key, cmap in (("jacksboro_fault_dem.npz", "elevation", "gist_earth"),
                            ("topobathy.npz", "topo", "terrain")):
        if (folder / name).is_file():
            with np.load(folder / name) as data:
                if key in data:
                    photos.append(_shaded(np.asarray(data[key], dtype=np.float64), cmap))
    return tuple(photos)


def fractal_noise(side: int, rng: np.random.Generator, beta: float) -> np.ndarray:
    """Noise with a 1/f^beta power spectrum, scaled to [0, 1]."""
    fy, fx = np.fft.fftfreq(side)[:, None], np.fft.fftfreq(side)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=(side, side)) + 1j * rng.normal(size=(side, side))) / radius ** (beta / 2)
    field = np.fft.ifft2(spectrum).real
    return (field - field.min()) / max(1e-12, np.ptp(field))


def _ramp(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Map [0, 1] values through a random colour ramp of 2 to 5 stops."""
    stops = rng.uniform(0, 255, size=(int(rng.integers(2, 6)), 3))
    positions = np.linspace(0, 1, len(stops))
    return np.stack([np.interp(values, positions, stops[:, c]) for c in range(3)], axis=-1)


def _finish(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sensor-like noise and clip to uint8."""
    noisy = rgb + rng.normal(0, rng.uniform(0.5, 6), size=rgb.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def _clouds(side: int, rng: np.random.Generator) -> np.ndarray:
    return _finish(_ramp(fractal_noise(side, rng, rng.uniform(1.5, 3.5)), rng), rng)


def _marble(side: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, np.pi)
    turbulence = fractal_noise(side, rng, 2.5) * rng.uniform(2, 8)
    veins = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * rng.uniform(4, 20) + turbulence) + 1) / 2
    return _finish(_ramp(veins, rng), rng)


def _wood(side: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] / side
    cx, cy = rng.uniform(-0.5, 1.5, size=2)
    rings = np.sqrt((x - cx) ** 2 + (y - cy) ** 2) * rng.uniform(10, 40) + fractal_noise(side, rng, 2.0) * 3
    return _finish(_ramp((np.sin(rings) + 1) / 2, rng), rng)


def _noisy_gradient(side: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] / side
    angle = rng.uniform(0, 2 * np.pi)
    ramp = _ramp(np.clip(x * np.cos(angle) + y * np.sin(angle), 0, 1) if rng.random() < 0.5 else
                 (x * np.cos(angle) + y * np.sin(angle) - min(0, np.cos(angle)) - min(0, np.sin(angle))) / 2, rng)
    texture = (fractal_noise(side, rng, rng.uniform(1.0, 2.5)) - 0.5)[..., None] * rng.uniform(10, 60)
    return _finish(ramp + texture, rng)


TEXTURES: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "clouds": _clouds, "marble": _marble, "wood": _wood, "noisy_gradient": _noisy_gradient}


def _photo_crop(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (20 to 100 % of the shorter side) of a photo, resized to 48 to 512 px."""
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.2, 1.0))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top : top + side, left : left + side] if rng.random() < 0.8 else photo
    size = int(rng.integers(48, 513))
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def natural_images(n: int, seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` natural-looking images: every other one a crop of a package photo (when any is installed), the others
    procedural textures at 48 to 512 px."""
    rng = np.random.default_rng(seed)
    photos = package_photos()
    names = list(TEXTURES)
    for k in range(n):
        if photos and k % 2 == 0:
            yield _photo_crop(photos[(k // 2) % len(photos)], rng)
        else:
            texture = TEXTURES[names[(k // 2) % len(names)]](int(rng.choice([64, 128, 256])), rng)
            size = int(rng.integers(48, 513))
            yield np.asarray(Image.fromarray(texture).resize((size, size), Image.Resampling.BILINEAR))
