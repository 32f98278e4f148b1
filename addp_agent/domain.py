"""Is an image inside a model's world? A cheap check from image statistics, fitted on the model's training images.

A synthetic-domain model (``synthetic-shapes``, ``synthetic-scenes3d``) only knows its generator's images; on a
photo it still paints something and reports a confidence, which means nothing. :class:`DomainCheck` flags such
images. It looks at the image as the model sees it (resized to the model's working resolution, LANCZOS, as the
pipeline does) and computes :data:`FEATURES`:

- ``palette_coverage``: fraction of pixels whose colour (16 levels per channel) is in the training palette (the
  colour bins holding 99.9 % of the training pixels);
- ``top_colours``: fraction of pixels in the image's own 8 most frequent colours (32 levels per channel);
- ``colour_count``: log₂ of the number of distinct colours (32 levels per channel);
- ``flat_fraction``: fraction of pixels equal (±2 per channel) to their right and lower neighbours;
- ``noise``: median absolute Laplacian of the grey image (sensor noise and texture; 0 on clean renders);
- ``gradient``: mean absolute grey gradient;
- ``saturation_mean``, ``saturation_std``, ``value_mean``, ``value_std``: HSV saturation and value.

The score is the distance to the nearest training image in standardized feature space (each feature divided by its
training spread, floored), divided by the fitted threshold: ``score > 1`` is out of the domain. The threshold is
the largest of a held-out set of in-domain images' distances (so none of them is flagged) times a margin.
A model without a check declares the domain ``open``: nothing is checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

OPEN_DOMAIN = "open"
FEATURES: tuple[str, ...] = ("palette_coverage", "top_colours", "colour_count", "flat_fraction", "noise",
                             "gradient", "saturation_mean", "saturation_std", "value_mean", "value_std")
SCALE_FLOORS = np.array([0.02, 0.02, 0.25, 0.02, 0.5, 0.5, 0.02, 0.02, 0.02, 0.02])  # per feature, in its units
PALETTE_MASS = 0.999
MARGIN = 1.25


def working_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """RGB uint8 ``image`` resized (LANCZOS) to ``resolution``², as the pipeline resizes its inputs."""
    if image.shape[:2] == (resolution, resolution):
        return image
    pil = Image.fromarray(image).resize((resolution, resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(pil)


def colour_bins(image: np.ndarray, levels: int) -> np.ndarray:
    """Each pixel's colour bin with ``levels`` levels per channel (flat int array)."""
    q = image.reshape(-1, 3).astype(np.int32) * levels // 256
    return (q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]


def image_features(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """:data:`FEATURES` of an RGB uint8 image at the working resolution; ``palette``: a boolean table over the
    16³ colour bins, true for the training palette."""
    pixels = image.astype(np.float32)
    counts = np.bincount(colour_bins(image, 32))
    counts = counts[counts > 0]
    top = np.sort(counts)[::-1][:8].sum() / counts.sum()
    coverage = float(palette[colour_bins(image, 16)].mean())
    right = np.abs(np.diff(pixels, axis=1)).max(axis=-1)[:-1, :]
    down = np.abs(np.diff(pixels, axis=0)).max(axis=-1)[:, :-1]
    flat = float(((right <= 2) & (down <= 2)).mean())
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    gradient = (np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()) / 2
    top_channel, low_channel = pixels.max(axis=-1), pixels.min(axis=-1)
    saturation = np.where(top_channel > 0, (top_channel - low_channel) / np.maximum(top_channel, 1), 0.0)
    value = top_channel / 255.0
    return np.array([coverage, top, np.log2(counts.size), flat, float(np.median(np.abs(laplacian))), gradient,
                     saturation.mean(), saturation.std(), value.mean(), value.std()], dtype=np.float64)


@dataclass(frozen=True)
class DomainVerdict:
    """One image's check: the model's domain, whether the image is in it (``None``: open domain, not checked) and
    the score (``> 1``: out of the domain)."""

    domain: str = OPEN_DOMAIN
    in_domain: bool | None = None
    score: float | None = None

    def warning(self, result: str = "mask") -> str | None:
        """The warning an interface shows for an out-of-domain image (``None`` when in the domain or unchecked);
        ``result`` names what the model made ("mask": its confidence is set to 0 too)."""
        if self.in_domain is not False:
            return None
        consequence = (f"this {result} is probably meaningless and its confidence is set to 0" if result == "mask"
                       else f"this {result} is probably meaningless")
        return (f"this image looks outside the model's {self.domain} domain (domain score {self.score:.2f} > 1): "
                f"the model only knows its synthetic training world, so {consequence}; for photos load a real "
                "checkpoint (--model PATH_OR_HUB_ID)")

    def to_json(self) -> dict[str, object]:
        return {"domain": self.domain, "in_domain": self.in_domain,
                "domain_score": None if self.score is None else round(self.score, 4)}


class DomainCheck(BaseModel):
    """A model's domain and the statistics that tell its images from others (the ``domain`` section of a
    model's ``calibration.json``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(description="the domain, e.g. synthetic-shapes or synthetic-scenes3d")
    resolution: int = Field(ge=1, description="the model's working resolution; images are checked at it")
    features: list[str] = Field(default_factory=lambda: list(FEATURES))
    palette: list[int] = Field(description="training colour bins (16 levels per channel) holding 99.9 % of pixels")
    center: list[float]
    scale: list[float]
    references: list[list[float]] = Field(description="standardized features of the reference training images")
    threshold: float = Field(gt=0, description="distance to the nearest reference above which an image is out")
    data: str = Field(description="the images the check was fitted on")
    held_out: str = Field(description="in-domain images that set the threshold")
    n_fit: int
    n_held_out: int
    measured: dict[str, float | int | str] | None = Field(None, description="rates on unseen in-domain images and "
                                                                           "natural images")
    _palette: np.ndarray = PrivateAttr()
    _center: np.ndarray = PrivateAttr()
    _scale: np.ndarray = PrivateAttr()
    _references: np.ndarray = PrivateAttr()

    def model_post_init(self, _context: object) -> None:
        """Check the fields agree with this version's features, then build the arrays the check reads."""
        if self.features != list(FEATURES):
            raise ValueError(f"features {self.features} are not this version's {list(FEATURES)}; refit the check")
        if len(self.center) != len(FEATURES) or len(self.scale) != len(FEATURES) or not self.references or any(
                len(row) != len(FEATURES) for row in self.references):
            raise ValueError("center, scale and every reference need one value per feature")
        if min(self.scale) <= 0 or not all(0 <= b < 16**3 for b in self.palette):
            raise ValueError("scales must be positive and palette bins in [0, 4096)")
        self._palette = np.zeros(16**3, dtype=bool)
        self._palette[np.asarray(self.palette, dtype=np.int64)] = True
        self._center, self._scale = np.asarray(self.center), np.asarray(self.scale)
        self._references = np.asarray(self.references, dtype=np.float64)

    def __eq__(self, other: object) -> bool:  # the private arrays are derived from the fields
        return isinstance(other, DomainCheck) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def distance(self, image: np.ndarray) -> float:
        """Distance of an RGB uint8 image (any size) to the nearest reference image."""
        z = (image_features(working_image(image, self.resolution), self._palette) - self._center) / self._scale
        return float(np.sqrt(((self._references - z) ** 2).sum(axis=1).min()))

    def check(self, image: np.ndarray) -> DomainVerdict:
        score = self.distance(image) / self.threshold
        return DomainVerdict(self.name, bool(score <= 1.0), score)


def with_resized(images: Iterable[np.ndarray], resolution: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Each image, and after every other one a copy resized (bicubic) to a random side between the resolution and
    4× it: in-domain images a user renders at another size must pass too."""
    rng = np.random.default_rng(seed)
    for k, image in enumerate(images):
        yield image
        if k % 2 == 0:
            side = int(rng.integers(resolution + 1, 4 * resolution + 1))
            yield np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC))


def fit_domain(name: str, resolution: int, fit_images: Iterable[np.ndarray], held_out: Iterable[np.ndarray],
               data: str, held_out_data: str, max_references: int = 512) -> DomainCheck:
    """Fit a :class:`DomainCheck`: palette, spread and references from ``fit_images`` (the model's training
    images), threshold from ``held_out`` (other in-domain images): their largest distance times :data:`MARGIN`."""
    fit = [working_image(i, resolution) for i in fit_images]
    if len(fit) < 2:
        raise ValueError("fitting a domain check needs at least 2 images")
    bins = np.bincount(np.concatenate([colour_bins(i, 16) for i in fit]), minlength=16**3)
    order = np.argsort(bins)[::-1]
    kept = order[: int(np.searchsorted(np.cumsum(bins[order]) / bins.sum(), PALETTE_MASS)) + 1]
    palette = np.zeros(16**3, dtype=bool)
    palette[kept] = True
    features = np.stack([image_features(i, palette) for i in fit])
    center = features.mean(axis=0)
    scale = np.maximum(features.std(axis=0), SCALE_FLOORS)
    z = (features - center) / scale
    step = max(1, len(z) // max_references)
    check = DomainCheck(name=name, resolution=resolution, palette=np.sort(kept).tolist(), center=center.tolist(),
                        scale=scale.tolist(), references=np.round(z[::step][:max_references], 4).tolist(),
                        threshold=1.0, data=data, held_out=held_out_data, n_fit=len(fit), n_held_out=0)
    distances = [check.distance(i) for i in held_out]
    if not distances:
        raise ValueError("fitting a domain check needs held-out in-domain images")
    return check.model_copy(update={"threshold": max(distances) * MARGIN, "n_held_out": len(distances)})


def rates(check: DomainCheck, in_domain: Iterable[np.ndarray], out_of_domain: Iterable[np.ndarray]) -> dict[str, float]:
    """False-alarm rate on in-domain images and detection rate on out-of-domain images (each image checked once, as
    it comes: a generator is never held in memory whole)."""
    flagged_in = [not check.check(i).in_domain for i in in_domain]
    flagged_out = [not check.check(i).in_domain for i in out_of_domain]
    return {"false_alarm_rate": sum(flagged_in) / max(1, len(flagged_in)),
            "detection_rate": sum(flagged_out) / max(1, len(flagged_out)),
            "n_in_domain": len(flagged_in), "n_out_of_domain": len(flagged_out)}
