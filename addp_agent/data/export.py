"""Write Shapes-Ref samples in the REFER layout or the CRIS/ADDP layout (loaders: refer.py, cris.py).

Ids: image id = ref id = sentence id = ``split_id * 10**7 + index``; annotation id = ``image_id * 10 + k``
for scene object ``k``. Exporting another split into the same folder merges (REFER: replaces that
split's refs, images and annotations; CRIS: one JSON file per split). Both layouts share
``images/shapes/``, so ``shapes-ref.json`` records the generator settings and each split's seed, and
:func:`check_manifest` refuses an export that would overwrite those images with different ones.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from addp_agent.data.refer import read_json
from addp_agent.data.safe_pickle import load_plain
from addp_agent.data.sample import RISSample
from addp_agent.data.shapes import DATASET, SHAPES, ShapesRefConfig
from addp_agent.errors import UserError
from addp_agent.masks import area, bbox_xywh, encode_rle, mask_to_png_bytes

MANIFEST = "shapes-ref.json"
CATEGORIES = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]
_CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}


def _target_ann_id(sample: RISSample) -> int:
    return int(sample.image_id) * 10 + int(sample.meta["target"])


def _write_image(sample: RISSample, folder: Path) -> str:
    name = f"{sample.sample_id}.png"
    Image.fromarray(sample.image).save(folder / name, format="PNG", compress_level=1)
    return name


def _annotation(ann_id: int, image_id: int, mask, shape: str, description: str) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": _CAT_ID[shape],
            "segmentation": encode_rle(mask), "area": area(mask), "bbox": bbox_xywh(mask), "iscrowd": 0,
            "description": description}


def _sentence(sample: RISSample, sent_id: int) -> dict[str, Any]:
    return {"tokens": sample.expression.split(), "raw": sample.expression, "sent": sample.expression,
            "sent_id": sent_id, "sample_id": sample.sample_id}


def _extras(sample: RISSample) -> dict[str, Any]:
    return {"family": sample.family, "program": sample.program, "confusable": sample.confusable,
            "meta": sample.meta}


def export_refer(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """Write ``<out>/<dataset>/refs(unc).p``, ``instances.json`` and ``<out>/images/<dataset>/``."""
    out = Path(out)
    folder, image_dir = out / dataset, out / "images" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    image_dir.mkdir(parents=True, exist_ok=True)
    refs_path, instances_path = folder / "refs(unc).p", folder / "instances.json"
    refs: list[dict[str, Any]] = load_plain(refs_path) if refs_path.exists() else []
    instances = read_json(instances_path) if instances_path.exists() else {"images": [], "annotations": []}
    dropped = {r["image_id"] for r in refs if r.get("split") == split}
    refs = [r for r in refs if r["image_id"] not in dropped]
    images = [i for i in instances["images"] if i["id"] not in dropped]
    anns = [a for a in instances["annotations"] if a["image_id"] not in dropped]
    count = 0
    for sample in samples:
        image_id, objects = int(sample.image_id), sample.meta["objects"]
        file_name = _write_image(sample, image_dir)
        height, width = sample.mask.shape
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        target_id = _target_ann_id(sample)
        target = objects[sample.meta["target"]]
        anns.append(_annotation(target_id, image_id, sample.mask, target["shape"],
                                sample.meta["target_description"]))
        for other in sample.others:
            ann_id = int(other.instance_id)
            shape = objects[ann_id - image_id * 10]["shape"]
            anns.append(_annotation(ann_id, image_id, other.mask, shape, other.name))
        refs.append({"ref_id": int(sample.ref_id), "ann_id": target_id,
                     "category_id": _CAT_ID[target["shape"]], "image_id": image_id, "file_name": file_name,
                     "split": split, "sent_ids": [image_id],
                     "sentences": [_sentence(sample, image_id)],
                     "distractors": [int(sample.others[k].instance_id) for k in sample.distractors],
                     **_extras(sample)})
        count += 1
    refs.sort(key=lambda r: r["ref_id"])
    images.sort(key=lambda i: i["id"])
    anns.sort(key=lambda a: a["id"])
    instances = {"info": {"description": "Shapes-Ref (addp-agent)"}, "images": images, "annotations": anns,
                 "categories": CATEGORIES}
    instances_path.write_text(json.dumps(instances))
    refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    return count


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
        (mask_dir / f"{segment_id}.png").write_bytes(mask_to_png_bytes(sample.mask))
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
    (ann_dir / f"{split}.json").write_text(json.dumps(records))
    return len(records)


def check_manifest(out: str | Path, layout: str, split: str, seed: int, config: ShapesRefConfig) -> dict:
    """Refuse settings that clash with what ``out`` already holds; return the updated manifest."""
    path = Path(out) / MANIFEST
    manifest = read_json(path) if path.exists() else {"config": None, "exports": {}}
    settings = config.model_dump(mode="json")
    key = f"{layout}/{split}"
    others = {k: v for k, v in manifest["exports"].items() if k != key}
    if others and manifest["config"] != settings:
        changed = sorted(k for k in settings if (manifest["config"] or {}).get(k) != settings[k])
        raise UserError(f"{out} already holds Shapes-Ref made with other settings ({', '.join(changed)}); "
                        "use the same options or another --out")
    for other_key, entry in others.items():
        if other_key.endswith(f"/{split}") and entry["seed"] != seed:
            raise UserError(f"{out}: {other_key} was made with --seed {entry['seed']}; use it for {split} "
                            "too (the layouts share images) or another --out")
    manifest["config"] = settings
    manifest["exports"][key] = {"seed": seed}
    return manifest


def write_manifest(out: str | Path, manifest: dict) -> None:
    """Save the manifest returned by :func:`check_manifest` after a successful export."""
    (Path(out) / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
