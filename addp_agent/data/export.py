"""Write Shapes-Ref samples in the REFER layout or the CRIS/ADDP layout (loaders: refer.py, cris.py).

Ids: image id = ref id = sentence id = ``split_id * 10**7 + index``; annotation id = ``image_id * 10 + k``
for scene object ``k``. Exporting another split into the same folder merges (REFER: replaces that
split's refs, images and annotations; CRIS: one JSON file per split). REFER segmentations are lists of RLE dicts,
which the official REFER ``getMask`` decodes (``coco.py``). ``dataset`` names the folder: the official REFER class
only accepts ``refcoco``, ``refcoco+``, ``refcocog`` and ``refclef`` (images then go where it looks for them).
Both layouts share ``images/shapes/`` by default, so ``shapes-ref.json`` records the generator settings and each
split's seed, and :func:`check_manifest` refuses an export that would overwrite those images with different ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from addp_agent.data import manifest
from addp_agent.data.coco import annotation, image_record, sentence, write_image, write_refs
from addp_agent.data.refer import default_image_dir
from addp_agent.data.sample import RISSample
from addp_agent.data.shapes import DATASET, SHAPES, ShapesRefConfig
from addp_agent.masks import bbox_xywh, encode_rle, mask_to_png_bytes
from addp_agent.outputs_io import write_file

MANIFEST = "shapes-ref.json"
CATEGORIES = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]
_CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}


def _target_ann_id(sample: RISSample) -> int:
    return int(sample.image_id) * 10 + int(sample.meta["target"])


def _write_image(sample: RISSample, folder: Path) -> str:
    return write_image(sample.image, folder, f"{sample.sample_id}.png")


def _annotation(ann_id: int, image_id: int, mask, shape: str, description: str) -> dict[str, Any]:
    return annotation(ann_id, image_id, mask, _CAT_ID[shape], description=description)


def _extras(sample: RISSample) -> dict[str, Any]:
    return {"family": sample.family, "program": sample.program, "confusable": sample.confusable,
            "meta": sample.meta}


def export_refer(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """Write ``<out>/<dataset>/refs(unc).p``, ``instances.json`` and the images (where REFER reads them)."""
    image_dir = default_image_dir(Path(out), dataset)

    def entries():
        for sample in samples:
            image_id, objects = int(sample.image_id), sample.meta["objects"]
            file_name = _write_image(sample, image_dir)
            target_id = _target_ann_id(sample)
            target = objects[sample.meta["target"]]
            anns = [_annotation(target_id, image_id, sample.mask, target["shape"], sample.meta["target_description"])]
            for other in sample.others:
                ann_id = int(other.instance_id)
                anns.append(_annotation(ann_id, image_id, other.mask, objects[ann_id - image_id * 10]["shape"],
                                        other.name))
            ref = {"ref_id": int(sample.ref_id), "ann_id": target_id, "category_id": _CAT_ID[target["shape"]],
                   "image_id": image_id, "file_name": file_name, "split": split, "sent_ids": [image_id],
                   "sentences": [sentence(sample, image_id)],
                   "distractors": [int(sample.others[k].instance_id) for k in sample.distractors], **_extras(sample)}
            yield image_record(image_id, file_name, sample.image), anns, ref

    return write_refs(out, dataset, split, "refs(unc).p", entries(), CATEGORIES, "Shapes-Ref (addp-agent)")


def export_cris(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """Write ``<out>/anns/<dataset>/<split>.json``, ``<out>/masks/<dataset>/<id>.png`` and images."""
    out = Path(out)
    ann_dir, mask_dir, image_dir = out / "anns" / dataset, out / "masks" / dataset, out / "images" / dataset
    for folder in (ann_dir, mask_dir, image_dir):
        folder.mkdir(parents=True, exist_ok=True)
    records = []
    for sample in samples:
        segment_id = int(sample.ref_id)
        x, y, w, h = bbox_xywh(sample.mask)
        write_file(mask_dir / f"{segment_id}.png", mask_to_png_bytes(sample.mask))
        shape = sample.meta["objects"][sample.meta["target"]]["shape"]
        records.append({
            "bbox": [x, y, x + w, y + h], "cat": _CAT_ID[shape] - 1, "segment_id": segment_id,
            "img_name": _write_image(sample, image_dir), "image_id": sample.image_id,
            "sentences": [{"idx": 0, "sent_id": segment_id, "sent": sample.expression,
                           "sample_id": sample.sample_id}],
            "sentences_num": 1, "distractors": sample.distractors,
            "others": [{"instance_id": o.instance_id, "name": o.name, "rle": encode_rle(o.mask)}
                       for o in sample.others],
            **_extras(sample),
        })
    write_file(ann_dir / f"{split}.json", json.dumps(records))
    return len(records)


def check_manifest(out: str | Path, layout: str, split: str, seed: int, config: ShapesRefConfig) -> dict:
    """Refuse settings that clash with what ``out`` already holds; return the updated manifest."""
    return manifest.check(Path(out) / MANIFEST, "Shapes-Ref", layout, split, seed, config.model_dump(mode="json"))


def write_manifest(out: str | Path, document: dict) -> None:
    """Save the manifest returned by :func:`check_manifest` after a successful export."""
    manifest.write(Path(out) / MANIFEST, document)
