"""Write Scenes-3D RIS samples as REFER, CRIS, gRefCOCO or CLEVR-Ref+ folders (loaders: refer, cris, grefcoco,
clevr_ref). Ids: image = ref = sentence id = ``split_id·10⁷ + index``; annotation id = ``image id·100 + object``.

REFER holds one object per ref, so it takes classic samples only; CRIS stores the union mask (empty for no-target)
plus per-target masks; gRefCOCO marks no-target refs with ``ann_id == [-1]`` (and ``no_target: true``) and
multi-target refs with several ids. ``dataset`` names the folder: the official REFER class accepts only ``refcoco``,
``refcoco+``, ``refcocog`` and ``refclef``, the official G_REFER only ``grefcoco``; images go where those look.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from addp_agent.data import grefcoco, refer
from addp_agent.data.clevr_ref import encode_mask
from addp_agent.data.coco import annotation, image_record, sentence, write_image, write_refs
from addp_agent.data.sample import RISSample
from addp_agent.data.scenes3d.config import SHAPES
from addp_agent.data.scenes3d.dataset import DATASET
from addp_agent.data.scenes3d.programs import evaluate
from addp_agent.errors import UserError
from addp_agent.masks import bbox_xywh, encode_rle, mask_to_png_bytes
from addp_agent.outputs_io import write_file

CATEGORIES = [{"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(SHAPES)]
CAT_ID = {c["name"]: c["id"] for c in CATEGORIES}
DESCRIPTION = "Scenes-3D (addp-agent)"


def _image_name(sample: RISSample) -> str:
    return f"{sample.sample_id}.png"


def _ann_id(sample: RISSample, k: int) -> int:
    return int(sample.image_id) * 100 + k


def _extras(sample: RISSample) -> dict[str, Any]:
    return {"family": sample.family, "program": sample.program, "confusable": sample.confusable,
            "caption": sample.caption, "meta": sample.meta}


def _annotations(sample: RISSample) -> list[dict[str, Any]]:
    """Every object of the scene, targets included, with its own unique description."""
    image_id, objects, targets = int(sample.image_id), sample.meta["objects"], sample.meta["targets"]
    masks = {k: m for k, m in zip(targets, sample.target_masks, strict=True)}
    names = dict(zip(targets, sample.meta["target_names"], strict=True))
    for other in sample.others:
        k = int(other.instance_id) - image_id * 100
        masks[k], names[k] = other.mask, other.name
    return [annotation(_ann_id(sample, k), image_id, masks[k], CAT_ID[objects[k]["shape"]], description=names[k])
            for k in sorted(masks)]


def _refer_entries(samples: Iterable[RISSample], split: str, image_dir: Path, generalized: bool):
    for sample in samples:
        targets = sample.meta["targets"]
        if not generalized and sample.n_targets != 1:
            raise UserError(f"{sample.sample_id} has {sample.n_targets} targets but the REFER layout holds exactly "
                            "one per ref; export generalized samples with --format grefs (or cris)")
        image_id = int(sample.image_id)
        file_name = write_image(sample.image, image_dir, _image_name(sample))
        ids = [_ann_id(sample, k) for k in targets]
        cats = [CAT_ID[sample.meta["objects"][k]["shape"]] for k in targets]
        ref: dict[str, Any] = {"ref_id": int(sample.ref_id), "image_id": image_id, "file_name": file_name,
                               "split": split, "sent_ids": [image_id], "sentences": [sentence(sample, image_id)],
                               "distractors": [int(sample.others[k].instance_id) for k in sample.distractors],
                               **_extras(sample)}
        if generalized:
            ref.update(ann_id=ids or [-1], category_id=cats or [-1], no_target=not ids)
        else:
            ref.update(ann_id=ids[0], category_id=cats[0])
        yield image_record(image_id, file_name, sample.image), _annotations(sample), ref


def export_refer(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """``<out>/<dataset>/refs(unc).p`` + ``instances.json``; images where REFER reads them. Classic samples only."""
    image_dir = refer.default_image_dir(Path(out), dataset)
    return write_refs(out, dataset, split, "refs(unc).p", _refer_entries(samples, split, image_dir, False),
                      CATEGORIES, DESCRIPTION)


def export_grefs(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """``<out>/<dataset>/grefs(unc).json`` + ``instances.json``; images where G_REFER reads them."""
    image_dir = grefcoco.default_image_dir(Path(out), dataset)
    return write_refs(out, dataset, split, "grefs(unc).json", _refer_entries(samples, split, image_dir, True),
                      CATEGORIES, DESCRIPTION)


def _instances(sample: RISSample, kept: list[int], masks) -> list[dict[str, Any]]:
    return [{"instance_id": str(_ann_id(sample, k)), "name": name, "rle": encode_rle(mask)}
            for k, (name, mask) in zip(kept, masks, strict=True)]


def export_cris(samples: Iterable[RISSample], out: str | Path, split: str, dataset: str = DATASET) -> int:
    """``<out>/anns/<dataset>/<split>.json``, ``<out>/masks/<dataset>/<id>.png`` (union mask) and images."""
    out = Path(out)
    ann_dir, mask_dir, image_dir = out / "anns" / dataset, out / "masks" / dataset, out / "images" / dataset
    for folder in (ann_dir, mask_dir):
        folder.mkdir(parents=True, exist_ok=True)
    records = []
    for sample in samples:
        segment_id = int(sample.ref_id)
        x, y, w, h = bbox_xywh(sample.mask)
        write_file(mask_dir / f"{segment_id}.png", mask_to_png_bytes(sample.mask))
        targets = sample.meta["targets"]
        records.append({
            "bbox": [x, y, x + w, y + h], "segment_id": segment_id,
            "cat": CAT_ID[sample.meta["objects"][targets[0]]["shape"]] - 1 if targets else -1,
            "img_name": write_image(sample.image, image_dir, _image_name(sample)), "image_id": sample.image_id,
            "sentences": [{"idx": 0, "sent_id": segment_id, "sent": sample.expression, "sample_id": sample.sample_id}],
            "sentences_num": 1, "n_targets": sample.n_targets, "distractors": sample.distractors,
            "targets": _instances(sample, targets, zip(sample.meta["target_names"], sample.target_masks,
                                                         strict=True)),
            "others": [{"instance_id": o.instance_id, "name": o.name, "rle": encode_rle(o.mask)}
                       for o in sample.others],
            **_extras(sample),
        })
    write_file(ann_dir / f"{split}.json", json.dumps(records))
    return len(records)


def _clevr_program(sample: RISSample) -> list[dict[str, Any]]:
    """The program with every node's ``_output`` (CLEVR-Ref+ keeps the referents in the last one)."""
    objects = sample.meta["objects"]
    return [{**step, "_output": evaluate(sample.program[: i + 1], objects)}
            for i, step in enumerate(sample.program or [])]


def export_clevr_ref(samples: Iterable[RISSample], out: str | Path, split: str) -> int:
    """``<out>/scenes/clevr_ref+_<split>_scenes.json``, ``<out>/refexps/clevr_ref+_<split>_refexps.json`` and
    ``<out>/images/<split>/``."""
    out = Path(out)
    scenes, refexps = [], []
    for sample in samples:
        index = int(sample.meta["index"])
        name = write_image(sample.image, out / "images" / split, _image_name(sample))
        masks = dict(zip(sample.meta["targets"], sample.target_masks, strict=True))
        names = dict(zip(sample.meta["targets"], sample.meta["target_names"], strict=True))
        for other in sample.others:
            k = int(other.instance_id) % 100
            masks[k], names[k] = other.mask, other.name
        objects = []
        for k, fact in enumerate(sample.meta["objects"]):
            objects.append({"shape": fact["shape"], "size": fact["size"], "material": fact["material"],
                            "color": fact["color"], "3d_coords": [fact["x"], fact["y"], fact["z"]],
                            "rotation": fact["yaw"] * 180 / 3.141592653589793,
                            "pixel_coords": [round(fact["u"]), round(fact["v"]), fact["depth"]], "idx": k + 1,
                            "name": names[k]})
        scenes.append({"split": split, "image_index": index, "image_filename": name, "objects": objects,
                       "obj_mask": {str(k + 1): encode_mask(masks[k]) for k in range(len(objects))},
                       "obj_bbox": {str(k + 1): bbox_xywh(masks[k]) for k in range(len(objects))}})
        refexps.append({**_extras(sample), "split": split, "image_filename": name, "image_index": index,
                        "image": Path(name).stem,
                        "refexp": sample.expression, "program": _clevr_program(sample),
                        "template_filename": f"{sample.family}.json", "refexp_index": int(sample.ref_id),
                        "sample_id": sample.sample_id, "distractors": [int(sample.others[k].instance_id) % 100
                                                                       for k in sample.distractors]})
    for key, items in (("scenes", scenes), ("refexps", refexps)):
        document = {"info": {"description": DESCRIPTION, "split": split}, key: items}
        write_file(out / key / f"clevr_ref+_{split}_{key}.json", json.dumps(document))
    return len(refexps)
