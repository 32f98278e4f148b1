"""gRefCOCO layout loader (generalized RIS: no-target and multi-target expressions), as henghuiding/gRefCOCO ships it.

Layout: ``<root>/<dataset>/grefs(<splitBy>).json`` (or ``.p``, read with the restricted unpickler) and
``<root>/<dataset>/instances.json``; images in ``<root>/images/train2014`` for ``grefcoco`` (where G_REFER looks),
else ``<root>/images/<dataset>``. A ref's ``ann_id`` is a list (or one id); ``[-1]`` marks a no-target expression,
whose mask is empty. One :class:`RISSample` per (ref, sentence): ``mask`` is the union of the ref's non-crowd
annotations, ``target_masks`` the annotations, ``n_targets`` their number (0 for no-target), ``others`` the image's
other annotations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.data.refer import ReferDataset, ann_mask, read_image, read_json, skip_or_raise
from addp_agent.data.safe_pickle import load_plain
from addp_agent.data.sample import Instance, RISSample
from addp_agent.errors import DataError, SplitError

GREF_SPLITS = ("train", "val", "testA", "testB")


def default_image_dir(root: Path, dataset: str) -> Path:
    return root / "images" / ("train2014" if dataset == "grefcoco" else dataset)


def ann_ids(ref: dict[str, Any]) -> list[int]:
    """The ref's annotation ids; empty for a no-target ref (``ann_id == [-1]``)."""
    ids = ref.get("ann_id")
    ids = ids if isinstance(ids, list) else [ids]
    return [] if ids == [-1] else [int(i) for i in ids]


class GRefDataset(ReferDataset):
    """Iterable of generalized samples of one split; ``skip_bad`` counts unreadable samples in ``skipped``."""

    def __init__(self, root: str | Path, dataset: str = "grefcoco", split_by: str = "unc", split: str = "val",
                 image_dir: str | Path | None = None, skip_bad: bool = False) -> None:
        self.root, self.dataset, self.split_by, self.split = Path(root), dataset, split_by, split
        folder = self.root / dataset
        json_path, pickle_path = folder / f"grefs({split_by}).json", folder / f"grefs({split_by}).p"
        self.refs_path = pickle_path if pickle_path.is_file() and not json_path.is_file() else json_path
        self.instances_path = folder / "instances.json"
        self.image_dir = Path(image_dir) if image_dir else default_image_dir(self.root, dataset)
        self.skipped: Counter | None = Counter() if skip_bad else None
        refs = load_plain(self.refs_path) if self.refs_path.suffix == ".p" else read_json(self.refs_path)
        if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
            raise DataError(f"{self.refs_path}: expected a list of ref objects")
        self.refs = [r for r in refs if str(r.get("split", "")) == split]
        if not self.refs:
            present = sorted({str(r.get("split")) for r in refs})
            raise SplitError(f"{self.refs_path}: no refs in split {split!r} (splits present: {present})")
        self._index(read_json(self.instances_path))

    def _ref_samples(self, ref: dict[str, Any]) -> Iterator[RISSample]:
        src = self.refs_path
        try:
            ref_id, ids, info, sentences = ref["ref_id"], ann_ids(ref), self.images[ref["image_id"]], ref["sentences"]
            targets = [self.anns[i] for i in ids]
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{src}: ref {ref.get('ref_id')} is malformed or points nowhere: {error!r}") from None
        path = self.image_dir / info["file_name"]
        image = read_image(path, self.skipped)
        if image is None:
            return
        height, width = image.shape[:2]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            skip_or_raise(self.skipped, "size mismatch", f"{path}: image is {height}x{width} but "
                          f"{self.instances_path} says {info.get('height')}x{info.get('width')}")
            return
        source = str(self.instances_path)
        target_masks = [ann_mask(a, height, width, source) for a in targets if not a.get("iscrowd")]
        mask = np.zeros((height, width), dtype=bool)
        for m in target_masks:
            mask |= m
        rest = [a for a in self.image_anns[ref["image_id"]] if a["id"] not in ids]
        others = [Instance(mask=ann_mask(a, height, width, source),
                           name=str(a.get("description") or self.cats.get(a.get("category_id"), "object")),
                           instance_id=str(a["id"])) for a in rest]
        position = {a["id"]: k for k, a in enumerate(rest)}
        distractors = [position[a] for a in ref.get("distractors", []) if a in position]
        meta = ref.get("meta") or {"dataset": self.dataset, "split_by": self.split_by, "split": ref.get("split"),
                                   "file_name": info["file_name"]}
        prefix = f"{self.dataset}_{self.split_by}-{ref_id}"
        for sent in sentences:
            yield RISSample(
                sample_id=str(sent.get("sample_id") or f"{prefix}-{sent.get('sent_id')}"), image=image,
                expression=str(sent.get("sent", sent.get("raw", ""))).strip(), mask=mask,
                image_id=str(ref["image_id"]), ref_id=str(ref_id), others=others, distractors=distractors,
                family=str(ref.get("family", "")), program=ref.get("program"),
                confusable=bool(ref.get("confusable", bool(distractors))), meta=meta,
                n_targets=len(target_masks), target_masks=target_masks, caption=str(ref.get("caption", "")),
            )
