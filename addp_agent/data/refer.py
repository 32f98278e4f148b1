"""REFER layout loader (refcoco, refcoco+, refcocog, refclef and exported Shapes-Ref).

Layout: ``<root>/<dataset>/refs(<splitBy>).p`` (restricted unpickling), ``<root>/<dataset>/instances.json``
and images under ``image_dir``. One :class:`RISSample` per (ref, sentence); ``others`` are the image's
other annotations (category names, or the ``description`` an annotation carries). Without explicit
``distractors`` in a ref, they are the same-category others, nearest first.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from addp_agent.data.safe_pickle import load_plain
from addp_agent.data.sample import Instance, RISSample
from addp_agent.errors import DataError, SplitError
from addp_agent.masks import decode_rle, polygons_to_mask

SPLIT_BYS = {"refcoco": ("unc", "google"), "refcoco+": ("unc",), "refcocog": ("umd", "google"),
             "refclef": ("unc", "berkeley")}
REFER_SPLITS = ("train", "val", "test", "testA", "testB", "testC", "testAB", "testBC", "testAC")


def default_image_dir(root: Path, dataset: str) -> Path:
    """COCO images for refcoco*, SAIAPR for refclef, ``<root>/images/<dataset>`` otherwise."""
    if dataset.startswith("refcoco"):
        return root / "images" / "mscoco" / "images" / "train2014"
    if dataset == "refclef":
        return root / "images" / "saiapr_tc-12"
    return root / "images" / dataset


def in_split(ref_split: str, split: str) -> bool:
    """REFER's split membership (``testA`` matches ``testA`` and ``testAB``)."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split and ref_split.startswith("test")
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def read_json(path: Path) -> Any:
    """Parse a JSON file; :class:`DataError` naming it when missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: malformed JSON ({error})") from None


def read_image(path: Path, skipped: Counter | None, what: str = "image") -> np.ndarray | None:
    """RGB uint8 image; missing or unreadable: :class:`DataError`, or ``None`` counted in ``skipped``."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        return skip_or_raise(skipped, f"missing {what}", f"{path}: cannot read {what} ({error})")


def skip_or_raise(skipped: Counter | None, reason: str, message: str) -> None:
    """Count ``reason`` when skipping is on, else raise :class:`DataError` with ``message``."""
    if skipped is None:
        raise DataError(message)
    skipped[reason] += 1
    return None


def ann_mask(ann: dict[str, Any], height: int, width: int, source: str) -> np.ndarray:
    """Decode a COCO annotation's polygons, RLE dict or list of RLE dicts at the image size (a size mismatch is an
    error); several parts are merged."""
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(part, dict) for part in seg):
        mask = np.zeros((height, width), dtype=bool)
        for part in seg:
            mask |= _rle_mask(ann, part, height, width, source)
        return mask
    if isinstance(seg, list):
        return polygons_to_mask(seg, height, width)
    if isinstance(seg, dict):
        return _rle_mask(ann, seg, height, width, source)
    raise DataError(f"{source}: annotation {ann.get('id')} has no polygon or RLE segmentation")


def _rle_mask(ann: dict[str, Any], rle: dict[str, Any], height: int, width: int, source: str) -> np.ndarray:
    size = [int(v) for v in rle.get("size", [])]
    if size != [height, width]:
        raise DataError(f"{source}: annotation {ann.get('id')} mask size {size} disagrees with the image "
                        f"size {[height, width]}")
    try:
        return decode_rle(rle)
    except ValueError as error:
        raise DataError(f"{source}: annotation {ann.get('id')}: {error}") from None


class RefSamples:
    """One sample per (ref, sentence), the standard protocol; subclasses set ``refs`` and ``_ref_samples``."""

    refs: list[dict[str, Any]]

    def __len__(self) -> int:
        return sum(len(r.get("sentences", [])) for r in self.refs)

    def __iter__(self) -> Iterator[RISSample]:
        for ref in self.refs:
            yield from self._ref_samples(ref)

    def _ref_samples(self, ref: dict[str, Any]) -> Iterator[RISSample]:
        raise NotImplementedError


class ReferDataset(RefSamples):
    """Iterable of samples of one split; ``skip_bad`` counts unreadable samples in ``skipped``."""

    def __init__(self, root: str | Path, dataset: str, split_by: str, split: str,
                 image_dir: str | Path | None = None, skip_bad: bool = False) -> None:
        self.root, self.dataset, self.split_by, self.split = Path(root), dataset, split_by, split
        folder = self.root / dataset
        self.refs_path = folder / f"refs({split_by}).p"
        self.instances_path = folder / "instances.json"
        if dataset in SPLIT_BYS and split_by not in SPLIT_BYS[dataset]:
            raise DataError(f"{self.refs_path}: {dataset} has no splitBy {split_by!r} "
                            f"(use one of {list(SPLIT_BYS[dataset])})")
        self.image_dir = Path(image_dir) if image_dir else default_image_dir(self.root, dataset)
        self.skipped: Counter | None = Counter() if skip_bad else None
        self._check_layout()
        refs = load_plain(self.refs_path)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise DataError(f"{self.refs_path}: expected a list of ref dicts, got {type(refs).__name__}")
        present = sorted({str(r.get("split")) for r in refs})
        if split not in REFER_SPLITS:
            raise SplitError(f"{self.refs_path}: unknown split {split!r} (splits present: {present}; REFER's "
                             f"split names: {', '.join(REFER_SPLITS)})")
        self.refs = [r for r in refs if in_split(str(r.get("split", "")), split)]
        if not self.refs:
            raise SplitError(f"{self.refs_path}: no refs in split {split!r} (splits present: {present})")
        if not self.image_dir.is_dir():
            raise DataError(f"{self.image_dir}: image folder not found (REFER reads the {dataset} images there)")
        self._index(read_json(self.instances_path))

    def _check_layout(self) -> None:
        """One :class:`DataError` naming what a REFER layout needs when ``root`` is missing or holds another layout."""
        expected = f"{self.refs_path}, {self.instances_path} and images in {self.image_dir}"
        if not self.root.is_dir():
            raise DataError(f"{self.root}: data root not found; a REFER layout there holds {expected}")
        if not self.refs_path.is_file() and (self.root / "anns" / self.dataset).is_dir():
            raise DataError(f"{self.refs_path}: cannot read (not found): {self.root} holds the CRIS layout of "
                            f"{self.dataset}; use cris:{self.root}:{self.dataset}")

    def _index(self, instances: Any) -> None:
        src = self.instances_path
        try:
            self.images = {img["id"]: img for img in instances["images"]}
            self.anns = {ann["id"]: ann for ann in instances["annotations"]}
            self.cats = {cat["id"]: cat["name"] for cat in instances["categories"]}
        except (KeyError, TypeError) as error:
            raise DataError(f"{src}: malformed instances (need images/annotations/categories with ids): "
                            f"{error!r}") from None
        self.image_anns: dict[Any, list[dict]] = defaultdict(list)
        for ann in self.anns.values():
            self.image_anns[ann.get("image_id")].append(ann)

    def _ref_samples(self, ref: dict[str, Any]) -> Iterator[RISSample]:
        src = self.refs_path
        try:
            ref_id, ann = ref["ref_id"], self.anns[ref["ann_id"]]
            info = self.images[ref["image_id"]]
            sentences = ref["sentences"]
        except (KeyError, TypeError) as error:
            raise DataError(f"{src}: ref {ref.get('ref_id')} is malformed or points nowhere: {error!r}"
                            ) from None
        path = self.image_dir / info["file_name"]
        image = read_image(path, self.skipped)
        if image is None:
            return
        height, width = image.shape[:2]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            skip_or_raise(self.skipped, "size mismatch", f"{path}: image is {height}x{width} but "
                          f"{self.instances_path} says {info.get('height')}x{info.get('width')}")
            return
        mask = ann_mask(ann, height, width, str(self.instances_path))
        image_anns = [a for a in self.image_anns[ref["image_id"]] if a["id"] != ann["id"]]
        others = [Instance(mask=ann_mask(a, height, width, str(self.instances_path)),
                           name=str(a.get("description") or self.cats.get(a.get("category_id"), "object")),
                           instance_id=str(a["id"])) for a in image_anns]
        if "distractors" in ref:
            position = {a["id"]: k for k, a in enumerate(image_anns)}
            distractors = [position[a] for a in ref["distractors"] if a in position]
        else:
            distractors = _same_category(ann, image_anns)
        meta = ref.get("meta") or {"dataset": self.dataset, "split_by": self.split_by,
                                   "split": ref.get("split"), "file_name": info["file_name"],
                                   "category": self.cats.get(ann.get("category_id"), "")}
        prefix = f"{self.dataset}_{self.split_by}-{ref_id}"
        for sent in sentences:
            yield RISSample(
                sample_id=str(sent.get("sample_id") or f"{prefix}-{sent.get('sent_id')}"),
                image=image, expression=str(sent.get("sent", sent.get("raw", ""))).strip(), mask=mask,
                image_id=str(ref["image_id"]), ref_id=str(ref_id), others=others,
                distractors=list(distractors), family=str(ref.get("family", "")), program=ref.get("program"),
                confusable=bool(ref.get("confusable", bool(distractors))), meta=meta,
                caption=str(ref.get("caption", "")),
            )


def _same_category(ann: dict[str, Any], others: list[dict[str, Any]]) -> list[int]:
    def centre(a: dict[str, Any]) -> tuple[float, float]:
        x, y, w, h = (a.get("bbox") or [0, 0, 0, 0])[:4]
        return x + w / 2, y + h / 2

    cx, cy = centre(ann)
    same = [(np.hypot(centre(a)[0] - cx, centre(a)[1] - cy), k) for k, a in enumerate(others)
            if a.get("category_id") == ann.get("category_id")]
    return [k for _, k in sorted(same)]
