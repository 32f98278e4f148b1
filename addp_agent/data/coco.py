"""COCO-style annotation records and the REFER / gRefCOCO / CRIS file writers shared by every export.

Segmentations are written as a *list* holding one COCO RLE dict. That is what the official REFER and G_REFER
``getMask`` accept besides polygons: they test ``type(seg[0]) == list`` for polygons and otherwise hand ``seg`` to
``pycocotools.mask.decode``, which needs a list of RLEs to return the (H, W, N) array they sum over axis 2. A bare RLE
dict fails there (``seg[0]`` is a KeyError). RLE is exact; polygons would not be.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.data.refer import read_json
from addp_agent.data.safe_pickle import load_plain
from addp_agent.data.sample import RISSample
from addp_agent.masks import area, bbox_xywh, encode_rle
from addp_agent.outputs_io import write_file
from addp_agent.outputs_io import write_image as write_image_file

# dataset names the official loaders accept (anything else: lichengunc/refer's REFER prints "No refer dataset is
# called [...]" and exits; henghuiding/gRefCOCO's G_REFER raises KeyError)
OFFICIAL_REFER_NAMES = ("refcoco", "refcoco+", "refcocog", "refclef")
OFFICIAL_GREFER_NAMES = ("grefcoco",)


def segmentation(mask: np.ndarray) -> list[dict[str, Any]]:
    """A list holding the mask's one compressed-RLE dict (see the module docstring)."""
    return [encode_rle(mask)]


def annotation(ann_id: int, image_id: int, mask: np.ndarray, category_id: int, **extra: Any) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": segmentation(mask),
            "area": area(mask), "bbox": bbox_xywh(mask), "iscrowd": 0, **extra}


def image_record(image_id: int, file_name: str, image: np.ndarray) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "height": int(image.shape[0]), "width": int(image.shape[1])}


def write_image(image: np.ndarray, folder: Path, name: str) -> str:
    """Save ``image`` losslessly as ``folder/name`` and return ``name``."""
    write_image_file(image, folder / name, compress_level=1)
    return name


def sentence(sample: RISSample, sent_id: int) -> dict[str, Any]:
    return {"tokens": sample.expression.split(), "raw": sample.expression, "sent": sample.expression,
            "sent_id": sent_id, "sample_id": sample.sample_id}


def write_refs(out: str | Path, dataset: str, split: str, refs_name: str,
               entries: Iterable[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]],
               categories: list[dict[str, Any]], description: str) -> int:
    """Merge (image record, its annotations, its ref) entries of ``split`` into ``<out>/<dataset>/``.

    ``refs_name`` is ``refs(unc).p`` (a protocol-2 pickle, as REFER ships) or ``grefs(unc).json``. Earlier content
    of ``split`` is replaced; other splits are kept.
    """
    folder = Path(out) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    refs_path, instances_path = folder / refs_name, folder / "instances.json"
    as_json = refs_name.endswith(".json")
    refs: list[dict[str, Any]] = []
    if refs_path.exists():
        refs = read_json(refs_path) if as_json else load_plain(refs_path)
    instances = read_json(instances_path) if instances_path.exists() else {"images": [], "annotations": []}
    dropped = {r["image_id"] for r in refs if r.get("split") == split}
    refs = [r for r in refs if r["image_id"] not in dropped]
    images = [i for i in instances["images"] if i["id"] not in dropped]
    anns = [a for a in instances["annotations"] if a["image_id"] not in dropped]
    count = 0
    for image, image_anns, ref in entries:
        images.append(image)
        anns += image_anns
        refs.append(ref)
        count += 1
    refs.sort(key=lambda r: r["ref_id"])
    images.sort(key=lambda i: i["id"])
    anns.sort(key=lambda a: a["id"])
    instances = {"info": {"description": description}, "images": images, "annotations": anns,
                 "categories": categories}
    write_file(instances_path, json.dumps(instances))
    write_file(refs_path, json.dumps(refs).encode() if as_json else pickle.dumps(refs, protocol=2))
    return count
