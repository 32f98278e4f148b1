"""CLEVR-Ref+ loader (ccvl/clevr-refplus-dataset-gen layout) and its object-mask codec.

Layout: ``<root>/scenes/clevr_ref+_<split>_scenes.json`` (``{"scenes": [...]}``), ``<root>/refexps/
clevr_ref+_<split>_refexps.json`` (``{"refexps": [...]}``) and ``<root>/images/<split>/<image_filename>``. A scene's
``obj_mask`` maps "1".."N" (object index + 1) to that object's visible pixels as comma-separated run lengths over the
row-major flattened image, alternating 0 and 1 and starting with 0. A refexp's referents are its program's last
``_output`` (0-based object indices); the mask is their union. Exported Scenes-3D adds ``family``, ``confusable``,
``distractors`` (object indices), ``caption`` and ``meta`` to a refexp and ``name`` to an object.
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


def encode_mask(mask: np.ndarray) -> str:
    """Run lengths of the row-major flattened mask, alternating 0/1, starting with a (possibly empty) 0 run."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return ",".join(str(r) for r in runs)


def decode_mask(text: str, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_mask`; ``ValueError`` when the runs do not fill height × width."""
    runs = [int(part) for part in text.strip().split(",") if part.strip()]
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    if flat.size != height * width:
        raise ValueError(f"run lengths cover {flat.size} pixels, not {height}x{width}")
    return flat.reshape(height, width)


def describe(obj: dict[str, Any]) -> str:
    return "the " + " ".join(str(obj[a]) for a in ("size", "color", "material", "shape") if obj.get(a))


class ClevrRefDataset(RefSamples):
    """One sample per refexp of ``split``; ``skip_bad`` counts unreadable samples in ``skipped``."""

    def __init__(self, root: str | Path, split: str, image_dir: str | Path | None = None,
                 skip_bad: bool = False) -> None:
        self.root, self.split = Path(root), split
        self.scenes_path = self.root / "scenes" / f"clevr_ref+_{split}_scenes.json"
        self.refexps_path = self.root / "refexps" / f"clevr_ref+_{split}_refexps.json"
        self.image_dir = Path(image_dir) if image_dir else self.root / "images" / split
        self.skipped: Counter | None = Counter() if skip_bad else None
        for path in (self.scenes_path, self.refexps_path):
            if not path.is_file():
                present = sorted(p.name[len("clevr_ref+_"):-len("_refexps.json")]
                                 for p in (self.root / "refexps").glob("clevr_ref+_*_refexps.json"))
                raise SplitError(f"{path}: file not found: no CLEVR-Ref+ split {split!r} here (splits present: "
                                 f"{present})")
        try:
            self.scenes = {int(s["image_index"]): s for s in read_json(self.scenes_path)["scenes"]}
            self.refs = list(read_json(self.refexps_path)["refexps"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{self.scenes_path.parent.parent}: malformed CLEVR-Ref+ JSON ({error!r})") from None

    def __len__(self) -> int:
        return len(self.refs)

    def _object_mask(self, scene: dict[str, Any], index: int, shape: tuple[int, int]) -> np.ndarray:
        try:
            return decode_mask(scene["obj_mask"][str(index + 1)], *shape)
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{self.scenes_path}: image {scene.get('image_index')} object {index + 1}: "
                            f"bad obj_mask ({error})") from None

    def _ref_samples(self, ref: dict[str, Any]) -> Iterator[RISSample]:
        try:
            scene = self.scenes[int(ref["image_index"])]
            targets = sorted(int(i) for i in ref["program"][-1]["_output"])
            text = str(ref["refexp"])
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise DataError(f"{self.refexps_path}: refexp {ref.get('refexp_index')} is malformed or points "
                            f"nowhere: {error!r}") from None
        path = self.image_dir / scene.get("image_filename", ref.get("image_filename", ""))
        image = read_image(path, self.skipped)
        if image is None:
            return
        shape = image.shape[:2]
        objects = scene.get("objects", [])
        if any(not 0 <= t < len(objects) for t in targets):
            skip_or_raise(self.skipped, "bad referent", f"{self.refexps_path}: refexp {ref.get('refexp_index')} "
                          f"refers to objects {targets} of a {len(objects)}-object scene")
            return
        target_masks = [self._object_mask(scene, t, shape) for t in targets]
        mask = np.zeros(shape, dtype=bool)
        for m in target_masks:
            mask |= m
        rest = [k for k in range(len(objects)) if k not in targets]
        others = [Instance(mask=self._object_mask(scene, k, shape),
                           name=str(objects[k].get("name") or describe(objects[k])),
                           instance_id=str(objects[k].get("idx", k + 1))) for k in rest]
        position = {k: i for i, k in enumerate(rest)}
        distractors = [position[k] for k in ref.get("distractors", []) if k in position]
        family = ref.get("family") or Path(str(ref.get("template_filename", ""))).stem
        index = ref.get("refexp_index", 0)
        yield RISSample(
            sample_id=str(ref.get("sample_id") or f"clevr-ref-{self.split}-{index}"), image=image, expression=text,
            mask=mask, image_id=str(scene["image_index"]), ref_id=str(index), others=others,
            distractors=distractors, family=str(family), program=ref["program"],
            confusable=bool(ref.get("confusable", bool(distractors))),
            meta=ref.get("meta") or {"dataset": "clevr-ref+", "split": self.split,
                                     "image_filename": scene.get("image_filename")},
            n_targets=len(targets), target_masks=target_masks, caption=str(ref.get("caption", "")),
        )
