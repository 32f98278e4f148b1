"""CRIS/ADDP layout loader: ``anns/<dataset>/<split>.json``, ``masks/<dataset>/<segment_id>.png``, images.

Each ref record is ``{bbox, cat, segment_id, img_name, sentences: [{idx, sent_id, sent}], sentences_num}``
(CRIS ``tools/data_process.py``). Exported Shapes-Ref adds ``image_id``, ``family``, ``program``,
``confusable``, ``distractors`` (indices into ``others``), ``others`` ([{instance_id, name, rle}]) and
``meta``; exported Scenes-3D also ``n_targets`` (0: no target, the mask is empty; > 1: the mask is the union),
``targets`` (like ``others``) and ``caption``. Real CRIS data has no other instances, so ``others`` is empty there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.data.refer import RefSamples, read_image, read_json, skip_or_raise
from addp_agent.data.sample import Instance, RISSample
from addp_agent.errors import DataError, SplitError
from addp_agent.masks import decode_rle


def default_image_dir(root: Path, dataset: str) -> Path:
    """``<root>/images/<dataset>`` when it exists, else CRIS's ``<root>/images/train2014``."""
    own = root / "images" / dataset
    return own if own.is_dir() else root / "images" / "train2014"


LAYOUT = "anns/<dataset>/<split>.json, masks/<dataset>/<segment_id>.png and images/train2014/ (or images/<dataset>/)"


def check_annotations(root: Path, dataset: str, split: str) -> None:
    """One :class:`DataError` naming the annotation file a CRIS layout needs and ``root`` lacks."""
    ann_dir = root / "anns" / dataset
    ann_path = ann_dir / f"{split}.json"
    if not root.is_dir():
        raise DataError(f"{root}: data root not found; a CRIS layout there holds {ann_path} and {LAYOUT}")
    if not ann_dir.is_dir():
        refer = sorted(p.name for p in (root / dataset).glob("refs(*).p")) if (root / dataset).is_dir() else []
        hint = f"; {root / dataset} holds {refer[0]}: use refer:{root}:{dataset}:<splitBy>" if refer else ""
        present = sorted(p.name for p in (root / "anns").iterdir()) if (root / "anns").is_dir() else []
        also = f" (anns/ holds {present})" if present else ""
        raise DataError(f"{ann_path}: not found: {root} is not a CRIS layout of {dataset}{also} (expected "
                        f"{LAYOUT}){hint}")
    if not ann_path.is_file():
        present = sorted(p.stem for p in ann_dir.glob("*.json"))
        raise SplitError(f"{ann_path}: unknown split {split!r} for {dataset} (splits present: {present})")


def check_folders(root: Path, dataset: str, image_dir: Path) -> None:
    """One :class:`DataError` naming the mask or image folder a CRIS layout needs and ``root`` lacks."""
    if not (root / "masks" / dataset).is_dir():
        raise DataError(f"{root / 'masks' / dataset}: not found: a CRIS layout keeps masks/{dataset}/<segment_id>.png")
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found (a CRIS layout keeps images in images/train2014/ or "
                        f"images/{dataset}/)")


class CrisDataset(RefSamples):
    """Iterable of samples of one split file; ``skip_bad`` counts unreadable samples in ``skipped``."""

    def __init__(self, root: str | Path, dataset: str, split: str, image_dir: str | Path | None = None,
                 skip_bad: bool = False) -> None:
        self.root, self.dataset, self.split = Path(root), dataset, split
        ann_dir = self.root / "anns" / dataset
        self.ann_path = ann_dir / f"{split}.json"
        self.mask_dir = self.root / "masks" / dataset
        self.image_dir = Path(image_dir) if image_dir else default_image_dir(self.root, dataset)
        check_annotations(self.root, dataset, split)
        self.skipped: Counter | None = Counter() if skip_bad else None
        refs = read_json(self.ann_path)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise DataError(f"{self.ann_path}: expected a JSON list of ref objects")
        check_folders(self.root, dataset, self.image_dir)
        self.refs: list[dict[str, Any]] = refs

    def _ref_samples(self, ref: dict[str, Any]) -> Iterator[RISSample]:
        try:
            segment_id, img_name, sentences = ref["segment_id"], ref["img_name"], ref["sentences"]
        except KeyError as error:
            where = f"{self.ann_path}: ref {ref.get('segment_id')}"
            raise DataError(f"{where} lacks {error}") from None
        image = read_image(self.image_dir / img_name, self.skipped)
        if image is None:
            return
        mask_path = self.mask_dir / f"{segment_id}.png"
        mask_rgb = read_image(mask_path, self.skipped, what="mask")
        if mask_rgb is None:
            return
        mask = mask_rgb.max(axis=-1) > 127
        if mask.shape != image.shape[:2]:
            skip_or_raise(self.skipped, "size mismatch",
                          f"{mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} but image "
                          f"{self.image_dir / img_name} is {image.shape[0]}x{image.shape[1]}")
            return
        others = [self._other(o, image.shape[:2]) for o in ref.get("others", [])]
        target_masks = [self._other(t, image.shape[:2]).mask for t in ref.get("targets", [])]
        meta = ref.get("meta") or {"dataset": self.dataset, "split": self.split, "cat": ref.get("cat"),
                                   "img_name": img_name}
        for sent in sentences:
            yield RISSample(
                sample_id=str(sent.get("sample_id") or f"{self.dataset}-{segment_id}-{sent.get('sent_id')}"),
                image=image, expression=str(sent.get("sent", "")).strip(), mask=mask,
                image_id=str(ref.get("image_id", Path(img_name).stem)), ref_id=str(segment_id), others=others,
                distractors=list(ref.get("distractors", [])), family=str(ref.get("family", "")),
                program=ref.get("program"), confusable=bool(ref.get("confusable", False)), meta=meta,
                n_targets=int(ref.get("n_targets", 1)), target_masks=target_masks, caption=str(ref.get("caption", "")),
            )

    def _other(self, other: dict[str, Any], shape: tuple[int, int]) -> Instance:
        try:
            mask = decode_rle(other["rle"])
        except (KeyError, ValueError) as error:
            where = f"{self.ann_path}: 'others' entry {other.get('instance_id')}"
            raise DataError(f"{where}: {error}") from None
        if mask.shape != shape:
            raise DataError(f"{self.ann_path}: instance {other.get('instance_id')} mask {mask.shape} "
                            f"disagrees with the image size {shape}")
        return Instance(mask=np.asarray(mask, dtype=bool), name=str(other.get("name", "object")),
                        instance_id=str(other.get("instance_id", "")))
