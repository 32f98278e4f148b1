"""REFER loader on a hand-built refcoco-style folder (polygons, RLE, splits) and the restricted unpickler."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.refer import ReferDataset
from addp_agent.data.safe_pickle import load_plain, loads_plain
from addp_agent.errors import DataError
from addp_agent.masks import encode_rle


def _sent(sent_id: int, text: str) -> dict:
    return {"tokens": text.split(), "raw": text.upper(), "sent": text, "sent_id": sent_id}


def _build(root: Path, rle_size=(6, 8), protocol: int = 2) -> Path:
    """Image 7 (6x8) with two people (polygon + uncompressed RLE) and a dog (compressed RLE)."""
    (root / "refcoco").mkdir(parents=True)
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True)
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(image_dir / "COCO_7.jpg", quality=100)
    dog = np.zeros((6, 8), bool)
    dog[4:6, 6:8] = True
    second = np.zeros(rle_size, bool)
    second[0:2, 5:7] = True
    column_major = second.astype(np.uint8).flatten(order="F")  # uncompressed RLE: run lengths, from 0s
    changes = np.flatnonzero(np.diff(np.concatenate([[0], column_major, [2]])) != 0)
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    instances = {
        "images": [{"id": 7, "file_name": "COCO_7.jpg", "height": 6, "width": 8}],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 100, "image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 3],
             "segmentation": [[0, 0, 2, 0, 2, 3, 0, 3]]},
            {"id": 101, "image_id": 7, "category_id": 1, "bbox": [5, 0, 2, 2], "iscrowd": 1,
             "segmentation": {"size": list(rle_size), "counts": counts}},
            {"id": 102, "image_id": 7, "category_id": 18, "bbox": [6, 4, 2, 2],
             "segmentation": encode_rle(dog)},
        ],
    }
    (root / "refcoco" / "instances.json").write_text(json.dumps(instances))
    refs = [
        {"ref_id": 1, "ann_id": 100, "image_id": 7, "category_id": 1, "split": "testA", "sent_ids": [10, 11],
         "file_name": "COCO_7_100.jpg", "sentences": [_sent(10, "left person"), _sent(11, "man on left")]},
        {"ref_id": 2, "ann_id": 102, "image_id": 7, "category_id": 18, "split": "testB", "sent_ids": [12],
         "file_name": "COCO_7_102.jpg", "sentences": [_sent(12, "dog")]},
        {"ref_id": 3, "ann_id": 101, "image_id": 7, "category_id": 1, "split": "train", "sent_ids": [13],
         "file_name": "COCO_7_101.jpg", "sentences": [_sent(13, "right guy")]},
    ]
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=protocol))
    return root


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_refcoco_style_loading(tmp_path, protocol: int) -> None:
    root = _build(tmp_path, protocol=protocol)
    test_a = list(ReferDataset(root, "refcoco", "unc", "testA"))
    assert [s.expression for s in test_a] == ["left person", "man on left"]  # one sample per sentence
    first = test_a[0]
    assert first.sample_id == "refcoco_unc-1-10" and first.ref_id == "1" and first.image_id == "7"
    expected = np.zeros((6, 8), bool)
    expected[0:3, 0:2] = True  # polygon (0,0)-(2,3) covers pixels x 0..1, y 0..2
    assert first.mask.dtype == bool and first.mask.sum() == expected.sum() and first.mask[:3, :2].all()
    assert [(o.name, o.instance_id) for o in first.others] == [("person", "101"), ("dog", "102")]
    assert first.others[0].mask.sum() == 4 and first.others[0].mask[0:2, 5:7].all()  # uncompressed RLE
    assert first.others[1].mask.sum() == 4 and first.others[1].mask[4:6, 6:8].all()  # compressed RLE
    assert first.distractors == [0] and first.confusable  # the other person
    assert first.meta["category"] == "person" and first.image.shape == (6, 8, 3)
    assert [s.ref_id for s in ReferDataset(root, "refcoco", "unc", "test")] == ["1", "1", "2"]
    dog = list(ReferDataset(root, "refcoco", "unc", "testB"))
    assert len(dog) == 1 and dog[0].distractors == [] and not dog[0].confusable


def test_refer_bad_inputs(tmp_path) -> None:
    root = _build(tmp_path / "a")
    with pytest.raises(DataError, match=r"refcoco has no splitBy 'umd'"):
        ReferDataset(root, "refcoco", "umd", "val")
    with pytest.raises(DataError, match=r"refs\(google\).p: cannot read"):
        ReferDataset(root, "refcoco", "google", "val")
    with pytest.raises(DataError, match=r"no refs in split 'val'"):
        ReferDataset(root, "refcoco", "unc", "val")
    bad = _build(tmp_path / "b", rle_size=(5, 8))
    with pytest.raises(DataError, match=r"instances.json: annotation 101 mask size \[5, 8\] disagrees"):
        list(ReferDataset(bad, "refcoco", "unc", "train"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = _build(tmp_path / "data")
    refs_path = root / "refcoco" / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps([{"ref_id": 1, "payload": _Evil()}], protocol=2))
    message = r"refs\(unc\).p: refusing to unpickle: global '(posix|nt).system' is not allowed"
    with pytest.raises(DataError, match=message):
        ReferDataset(root, "refcoco", "unc", "train")
    assert not (tmp_path / "pwned").exists()
    for payload in (pickle.dumps(_Evil(), protocol=0), pickle.dumps(np.zeros(2))):
        with pytest.raises(DataError, match="refusing to unpickle"):
            loads_plain(payload, "x.p")
    with pytest.raises(DataError, match="x.p: not a readable pickle"):
        loads_plain(b"\x80\x02]q\x00(", "x.p")


def test_plain_pickles_load(tmp_path) -> None:
    value = {"a": [1, 2.5, None, True], "b": ("t", b"raw"), "c": {1, 2}, "d": frozenset({"x"}), "e": 1j}
    for protocol in (0, 2, 4, 5):
        path = tmp_path / f"p{protocol}.p"
        path.write_bytes(pickle.dumps(value, protocol=protocol))
        if protocol < 3:  # bytes need _codecs.encode below protocol 3, which is refused
            with pytest.raises(DataError, match="_codecs.encode"):
                load_plain(path)
        else:
            assert load_plain(path) == value
