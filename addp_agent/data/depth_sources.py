"""Depth data source specs → iterables of :class:`DepthSample`, and the project's depth folder layout.

Specs (``split`` picks the list file or the generated split):

- ``scenes-gen:N:SEED:SIZE[:PRESET]``: Scenes-3D rendered on the fly (``addp_agent.data.scenes3d.depth_samples``);
- ``synthetic:N[:SEED[:SIZE]]``: the small analytic plane-and-boxes world (tests, smoke runs);
- ``nyu:DIR[:LIST]``: Marigold's NYUv2 layout: LIST (default ``DIR/filename_list_{split}.txt``, a copy of Marigold's
  ``data_split/nyu/labeled/filename_list_test.txt``) has "rgb depth filled" paths relative to DIR; depth PNG in mm,
  the raw depth is used; valid = (1e-3, 10) m and the Eigen crop (rows 45:471, cols 41:601 of 480×640);
- ``kitti:DIR[:LIST]``: Marigold's KITTI Eigen test layout: LIST (default ``DIR/eigen_{split}_files_with_gt.txt``)
  has "rgb depth focal" (depth ``None`` lines are dropped); depth PNG /256 m; both maps get the KITTI-benchmark crop
  (352×1216, bottom-centre), valid = (1e-5, 80) m and the Eigen crop;
- ``depthdir:DIR``: the project's export layout (``DIR/SPLIT/`` when it exists, else DIR): ``rgb/NNNNNN.png``,
  ``depth/NNNNNN.png`` (uint16 millimetres, 0 = invalid), ``filename_list.txt`` with one "rgb depth" pair per line,
  and ``intrinsics.json`` (``{"K": 3×3, "fx", "fy", "cx", "cy", "depth_unit": "mm", …}`` plus ``"per_image":
  {rgb path: 3×3}`` when the images do not share one K; a bare 3×3 list or a plain rgb path → 3×3 mapping also
  reads). :func:`write_depth_dir` writes it, as Scenes-3D's export does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from addp_agent.data.depth_sample import DepthSample
from addp_agent.errors import DataError, SplitError, UserError
from addp_agent.limits import MAX_SEED

DEPTH_SPEC_HELP = ("scenes-gen:N:SEED:SIZE[:PRESET], synthetic:N[:SEED[:SIZE]], nyu:DIR[:LIST], kitti:DIR[:LIST], "
                   "depthdir:DIR")


@dataclass(frozen=True)
class DepthRange:
    """Ground truth counts as valid strictly inside (min_depth, max_depth) metres."""

    min_depth: float
    max_depth: float


NYU_RANGE = DepthRange(1e-3, 10.0)
KITTI_RANGE = DepthRange(1e-5, 80.0)
DEPTHDIR_RANGE = DepthRange(1e-3, 65.535)
MM_MAX = 65535


def depth_range(spec: str) -> DepthRange:
    """The evaluation depth range of a source (generated worlds: (1e-3, ∞))."""
    kind = spec.partition(":")[0]
    return {"nyu": NYU_RANGE, "kitti": KITTI_RANGE, "depthdir": DEPTHDIR_RANGE}.get(kind, DepthRange(1e-3, np.inf))


# ----------------------------------------------------------------------------------------------- crops
def eigen_crop_nyu(shape: tuple[int, int]) -> np.ndarray:
    """NYUv2 Eigen evaluation crop: rows 45:471, cols 41:601 of the 480×640 frame."""
    if tuple(shape) != (480, 640):
        raise DataError(f"NYUv2 frames are 480×640, got {shape[0]}×{shape[1]}")
    mask = np.zeros(shape, dtype=bool)
    mask[45:471, 41:601] = True
    return mask


def kitti_benchmark_crop(array: np.ndarray) -> np.ndarray:
    """The KITTI-benchmark 352×1216 window at the bottom centre."""
    height, width = array.shape[:2]
    if height < 352 or width < 1216:
        raise DataError(f"KITTI frames must be at least 352×1216 for the benchmark crop, got {height}×{width}")
    top, left = height - 352, int((width - 1216) / 2)
    return array[top : top + 352, left : left + 1216]


def eigen_crop_kitti(shape: tuple[int, int]) -> np.ndarray:
    """KITTI Eigen evaluation crop (fractions of the frame, as Marigold and BTS)."""
    height, width = shape
    mask = np.zeros(shape, dtype=bool)
    mask[int(0.3324324 * height) : int(0.91351351 * height), int(0.0359477 * width) : int(0.96405229 * width)] = True
    return mask


# -------------------------------------------------------------------------------------------- readers
def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable image ({error})") from None


def read_rgb(path: Path) -> np.ndarray:
    array = _read_png(path)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] < 3 or array.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit RGB image, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array[:, :, :3])


def read_depth_png(path: Path, divisor: float) -> np.ndarray:
    """A 16-bit depth PNG as float32 metres (value / divisor); 0 stays 0 (invalid)."""
    array = _read_png(path)
    if array.ndim != 2 or array.dtype not in (np.uint16, np.int32, np.uint8):
        raise DataError(f"{path}: expected a single-channel 16-bit depth PNG, got {array.dtype} {array.shape}")
    return (array.astype(np.float32) / divisor).astype(np.float32)


def _read_list(path: Path, columns: int) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: no such list file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:  # no read permission, not a text file
        raise DataError(f"{path}: cannot read the list file ({getattr(error, 'strerror', None) or error})") from None
    rows = [line.split() for line in text.splitlines() if line.strip()]
    bad = [i + 1 for i, row in enumerate(rows) if len(row) < columns]
    if bad:
        raise DataError(f"{path}: line {bad[0]} has fewer than {columns} fields")
    return rows


class FileDepthSource:
    """Samples listed in a file; ``skip_bad`` counts unreadable ones in ``skipped`` instead of failing."""

    def __init__(self, name: str, root: Path, rows: list[list[str]],
                 build: Callable[[Path, list[str]], DepthSample], skip_bad: bool = False,
                 skipped: dict[str, int] | None = None):
        self.name, self.root, self.rows, self.build, self.skip_bad = name, root, rows, build, skip_bad
        self.skipped: Counter = Counter(skipped or {})

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[DepthSample]:
        for row in self.rows:
            try:
                yield self.build(self.root, row)
            except DataError:
                if not self.skip_bad:
                    raise
                self.skipped["unreadable"] += 1


def _nyu_sample(root: Path, row: list[str]) -> DepthSample:
    image = read_rgb(root / row[0])
    depth = read_depth_png(root / row[1], 1000.0)
    if depth.shape != image.shape[:2]:
        raise DataError(f"{root / row[1]}: depth {depth.shape} does not match the image {image.shape[:2]}")
    valid = (depth > NYU_RANGE.min_depth) & (depth < NYU_RANGE.max_depth) & eigen_crop_nyu(depth.shape)
    return DepthSample(sample_id=row[0], image=image, depth=depth, valid=valid, meta={"source": "nyu"})


def _kitti_sample(root: Path, row: list[str]) -> DepthSample:
    image = kitti_benchmark_crop(read_rgb(root / row[0]))
    depth = kitti_benchmark_crop(read_depth_png(root / row[1], 256.0))
    if depth.shape != image.shape[:2]:
        raise DataError(f"{root / row[1]}: depth {depth.shape} does not match the image {image.shape[:2]}")
    valid = (depth > KITTI_RANGE.min_depth) & (depth < KITTI_RANGE.max_depth) & eigen_crop_kitti(depth.shape)
    meta: dict[str, Any] = {"source": "kitti"}
    if len(row) > 2:
        try:
            meta["focal"] = float(row[2])
        except ValueError:
            raise DataError(f"{root / row[0]}: the focal length {row[2]!r} in its list row is not a number") from None
    return DepthSample(sample_id=row[0], image=np.ascontiguousarray(image), depth=np.ascontiguousarray(depth),
                       valid=valid, meta=meta)


def _list_file(rest: str, default: str) -> tuple[Path, Path]:
    folder, _, listed = rest.partition(":")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    return root, Path(listed).expanduser() if listed else root / default


def _missing_list(listing: Path, root: Path, split: str, pattern: str, where: str) -> DataError:
    """No list file for ``split``: a :class:`SplitError` naming the splits whose lists are there, if any."""
    head, tail = pattern.split("{split}")
    present = sorted(p.name[len(head):-len(tail)] for p in root.glob(head + "*" + tail))
    hint = f"copy Marigold's {where}/{pattern.format(split=split)} there or give it as DIR:LIST"
    if present:
        return SplitError(f"{listing}: no list for split {split!r} (splits present: {present}); {hint}")
    return DataError(f"{listing}: no such list file; {hint}")


def load_nyu(rest: str, split: str, skip_bad: bool = False) -> FileDepthSource:
    root, listing = _list_file(rest, f"filename_list_{split}.txt")
    if not listing.is_file():
        raise _missing_list(listing, root, split, "filename_list_{split}.txt", "data_split/nyu/labeled")
    return FileDepthSource("nyu", root, _read_list(listing, 2), _nyu_sample, skip_bad)


def load_kitti(rest: str, split: str, skip_bad: bool = False) -> FileDepthSource:
    root, listing = _list_file(rest, f"eigen_{split}_files_with_gt.txt")
    if not listing.is_file():
        raise _missing_list(listing, root, split, "eigen_{split}_files_with_gt.txt", "data_split/kitti")
    rows = _read_list(listing, 2)
    kept = [row for row in rows if row[1] != "None"]
    return FileDepthSource("kitti", root, kept, _kitti_sample, skip_bad,
                           {"no ground truth": len(rows) - len(kept)} if len(rows) > len(kept) else None)


# ------------------------------------------------------------------------------------------- depthdir
def _intrinsics(folder: Path) -> Callable[[str], np.ndarray | None]:
    path = folder / "intrinsics.json"
    if not path.exists():
        return lambda name: None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: malformed JSON ({error})") from None

    def matrix(value: Any) -> np.ndarray:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = np.zeros(0)
        if array.shape != (3, 3):
            raise DataError(f"{path}: intrinsics must be 3×3 matrices, got shape {array.shape}")
        return array

    if isinstance(data, list):
        shared = matrix(data)
        return lambda name: shared
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a 3×3 list or an object with \"K\" and/or \"per_image\"")
    if "K" in data or "per_image" in data:  # the export format: a shared K, per-image ones where they differ
        shared_k = matrix(data["K"]) if data.get("K") is not None else None
        per_image = {str(key): matrix(value) for key, value in (data.get("per_image") or {}).items()}
        return lambda name: per_image.get(name, shared_k)
    per_image = {str(key): matrix(value) for key, value in data.items()}  # a plain rgb path → 3×3 mapping
    return lambda name: per_image.get(name)


def depthdir_folder(rest: str, split: str) -> Path:
    """``DIR/SPLIT`` when DIR holds split folders (then ``split`` must be one), else DIR, whose split a Scenes-3D
    export records in ``scenes-3d.json`` (then ``split`` must be that one)."""
    root = Path(rest).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if (root / split / "filename_list.txt").is_file():
        return root / split
    present = sorted(p.parent.name for p in root.glob("*/filename_list.txt"))
    exported = _exported_depth_splits(root)
    if present or (exported and split not in exported):
        raise SplitError(f"{root}: no depth split {split!r} (splits present: {present or exported})")
    return root


def _exported_depth_splits(root: Path) -> list[str]:
    """The splits a Scenes-3D depth export in ``root`` holds, from its manifest (none when there is none)."""
    manifest = root / "scenes-3d.json"
    try:
        exports = json.loads(manifest.read_text()).get("exports", {}) if manifest.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(key.split("/", 1)[1] for key in exports if isinstance(key, str) and key.startswith("depth/"))


def load_depthdir(rest: str, split: str, skip_bad: bool = False) -> FileDepthSource:
    folder = depthdir_folder(rest, split)
    listing = folder / "filename_list.txt"
    if not listing.is_file():
        raise DataError(f"{folder}: no filename_list.txt (a depth folder has rgb/, depth/, filename_list.txt; "
                        "export one with addp_agent.data.depth_sources.write_depth_dir)")
    intrinsics = _intrinsics(folder)

    def build(root: Path, row: list[str]) -> DepthSample:
        image = read_rgb(root / row[0])
        depth = read_depth_png(root / row[1], 1000.0)
        if depth.shape != image.shape[:2]:
            raise DataError(f"{root / row[1]}: depth {depth.shape} does not match the image {image.shape[:2]}")
        return DepthSample(sample_id=row[0], image=image, depth=depth, valid=depth > 0, intrinsics=intrinsics(row[0]),
                           meta={"source": "depthdir"})

    return FileDepthSource("depthdir", folder, _read_list(listing, 2), build, skip_bad)


def write_depth_dir(samples: Iterable[DepthSample], folder: str | Path) -> int:
    """Write samples in the ``depthdir`` layout (depth in whole millimetres; invalid or > 65.535 m → 0)."""
    out = Path(folder)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(exist_ok=True)
    lines, intrinsics = [], {}
    for index, sample in enumerate(samples):
        rgb, depth = f"rgb/{index:06d}.png", f"depth/{index:06d}.png"
        millimetres = np.round(np.where(sample.valid, sample.depth, 0.0) * 1000.0)
        millimetres = np.where((millimetres > 0) & (millimetres <= MM_MAX), millimetres, 0).astype(np.uint16)
        Image.fromarray(sample.image).save(out / rgb)
        Image.fromarray(millimetres).save(out / depth)
        lines.append(f"{rgb} {depth}")
        if sample.intrinsics is not None:
            intrinsics[rgb] = np.asarray(sample.intrinsics, dtype=np.float64).tolist()
    (out / "filename_list.txt").write_text("".join(line + "\n" for line in lines))
    info: dict[str, Any] = {"depth_unit": "mm", "depth_scale": 0.001, "invalid_value": 0, "count": len(lines)}
    if intrinsics:
        first = next(iter(intrinsics.values()))
        info.update(K=first, fx=first[0][0], fy=first[1][1], cx=first[0][2], cy=first[1][2])
        if any(k != first for k in intrinsics.values()):
            info["per_image"] = intrinsics
    (out / "intrinsics.json").write_text(json.dumps(info, indent=1))
    return len(lines)


# ---------------------------------------------------------------------------------------------- specs
def _ints(rest: str, spec: str, fields: str, least: int, defaults: list[int]) -> list[int]:
    """N[:SEED[:SIZE]] as integers, N ≥ 1 and SEED in 0..MAX_SEED (sizes are checked by the generators)."""
    try:
        values = [int(part) for part in rest.split(":")] if rest else []
    except ValueError:
        raise UserError(f"bad source {spec!r}; expected {fields}") from None
    if not least <= len(values) <= least + len(defaults):
        raise UserError(f"bad source {spec!r}; expected {fields}")
    values += defaults[len(values) - least :]
    if values[0] < 1:
        raise UserError(f"bad source {spec!r}: N must be ≥ 1 (the number of samples), got {values[0]}")
    if not 0 <= values[1] <= MAX_SEED:
        raise UserError(f"bad source {spec!r}: SEED must be in 0..{MAX_SEED}, got {values[1]}")
    return values


def load_scenes(rest: str, split: str, spec: str) -> Iterable[DepthSample]:
    """``scenes-gen:N:SEED:SIZE[:PRESET]`` through the Scenes-3D generator (imported only when asked for)."""
    parts = rest.split(":")
    preset = parts.pop(3) if len(parts) == 4 else "default"
    n, seed, size = _ints(":".join(parts), spec, "scenes-gen:N:SEED:SIZE[:PRESET]", 3, [])
    try:
        from addp_agent.data.scenes3d import depth_samples
    except ImportError:
        raise UserError("scenes-gen needs the Scenes-3D generator (addp_agent.data.scenes3d.depth_samples), which "
                        "this install lacks; use synthetic:N, depthdir:DIR, nyu:DIR or kitti:DIR") from None
    return depth_samples(split, n, seed, size, preset)


def load_depth_source(spec: str, split: str, skip_bad: bool = False) -> Iterable[DepthSample]:
    """Open a depth source spec for ``split`` (see the module docstring)."""
    from addp_agent.data.depth_synthetic import SyntheticDepth

    kind, _, rest = spec.partition(":")
    if kind == "scenes-gen":
        return load_scenes(rest, split, spec)
    if kind == "synthetic":
        n, seed, size = _ints(rest, spec, "synthetic:N[:SEED[:SIZE]]", 1, [0, 64])
        return SyntheticDepth(split, n, seed, size)
    if kind in ("nyu", "kitti", "depthdir") and rest:
        return {"nyu": load_nyu, "kitti": load_kitti, "depthdir": load_depthdir}[kind](rest, split, skip_bad)
    raise UserError(f"unknown depth source {spec!r}; use one of: {DEPTH_SPEC_HELP}")


def check_depth_spec(spec: str, split: str) -> None:
    """Fail early (before a model loads) on a bad spec or a missing folder or list file."""
    source = load_depth_source(spec, split)
    if isinstance(source, FileDepthSource) and not len(source):
        raise DataError(f"{spec}: the {split} list is empty")
