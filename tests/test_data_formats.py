"""Shapes-Ref export -> REFER / CRIS loaders round trip, split merging, and bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.cris import CrisDataset
from addp_agent.data.export import export_cris, export_refer
from addp_agent.data.refer import ReferDataset
from addp_agent.data.sample import RISSample
from addp_agent.data.shapes import ShapesRef, ShapesRefConfig
from addp_agent.data.sources import load_source
from addp_agent.errors import DataError, UserError


def assert_same(a: RISSample, b: RISSample) -> None:
    for name in ("sample_id", "expression", "image_id", "ref_id", "distractors", "family", "program",
                 "confusable", "meta"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.image.dtype == b.image.dtype == np.uint8 and np.array_equal(a.image, b.image)
    assert a.mask.dtype == b.mask.dtype == bool and np.array_equal(a.mask, b.mask)
    assert [(o.name, o.instance_id) for o in a.others] == [(o.name, o.instance_id) for o in b.others]
    assert all(np.array_equal(x.mask, y.mask) and y.mask.dtype == bool for x, y in zip(a.others, b.others,
                                                                                       strict=True))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, dict[str, ShapesRef]]:
    root = tmp_path_factory.mktemp("shapes")
    config = ShapesRefConfig(overlap=True, background="noise")
    sets = {"val": ShapesRef("val", 40, 3, config), "test": ShapesRef("test", 25, 3, config)}
    for split, samples in sets.items():
        assert export_refer(samples, root, split) == len(samples)
        assert export_cris(samples, root, split) == len(samples)
    return root, sets


@pytest.mark.parametrize("layout", ["refer", "cris"])
def test_round_trip_is_identical(exported, layout: str) -> None:
    root, sets = exported
    for split, samples in sets.items():
        loaded = (ReferDataset(root, "shapes", "unc", split) if layout == "refer"
                  else CrisDataset(root, "shapes", split))
        assert len(loaded) == len(samples)
        items = list(loaded)
        assert len(items) == len(samples)
        for original, again in zip(samples, items, strict=True):
            assert_same(original, again)
    assert any(s.distractors for s in sets["val"])  # the comparison covered non-empty distractors


def test_reexporting_a_split_replaces_it(exported, tmp_path) -> None:
    root, sets = exported
    export_refer(sets["val"], tmp_path, "val")
    export_refer(sets["test"], tmp_path, "test")
    export_refer(ShapesRef("val", 5, 9), tmp_path, "val")  # replaces val, keeps test
    assert len(ReferDataset(tmp_path, "shapes", "unc", "val")) == 5
    assert len(ReferDataset(tmp_path, "shapes", "unc", "test")) == 25
    instances = json.loads((tmp_path / "shapes" / "instances.json").read_text())
    assert len(instances["images"]) == 30


def test_load_source_specs(exported) -> None:
    root, sets = exported
    assert [s.sample_id for s in load_source(f"shapes:{root}", "test")] == [s.sample_id for s in sets["test"]]
    assert len(list(load_source(f"cris:{root}:shapes", "val"))) == 40
    assert len(list(load_source(f"refer:{root}:shapes:unc", "val"))) == 40
    generated = load_source("shapes-gen:3:7:128", "val")
    assert [s.image.shape for s in generated] == [(128, 128, 3)] * 3
    for bad in ("bogus:x", "refer:only-root", "shapes-gen:x"):
        with pytest.raises(UserError):
            load_source(bad, "val")


def test_unknown_splits_are_clear_errors(exported) -> None:
    root, _ = exported
    with pytest.raises(DataError, match=r"refs\(unc\).p: unknown split 'dev'"):
        ReferDataset(root, "shapes", "unc", "dev")
    with pytest.raises(DataError, match=r"no refs in split 'train' \(splits present: \['test', 'val'\]\)"):
        ReferDataset(root, "shapes", "unc", "train")
    with pytest.raises(DataError, match=r"train.json: unknown split 'train'.*\['test', 'val'\]"):
        CrisDataset(root, "shapes", "train")


def _copy(root: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(root, target)
    return target


def test_missing_image_raises_or_is_counted(exported, tmp_path) -> None:
    root = _copy(exported[0], tmp_path / "copy")
    (root / "images" / "shapes" / "shapes-val-000002.png").unlink()
    with pytest.raises(DataError, match="shapes-val-000002.png"):
        list(ReferDataset(root, "shapes", "unc", "val"))
    with pytest.raises(DataError, match="shapes-val-000002.png"):
        list(CrisDataset(root, "shapes", "val"))
    refer = ReferDataset(root, "shapes", "unc", "val", skip_bad=True)
    assert len(list(refer)) == 39 and refer.skipped == {"missing image": 1}
    cris = CrisDataset(root, "shapes", "val", skip_bad=True)
    assert len(list(cris)) == 39 and cris.skipped == {"missing image": 1}


def test_size_mismatches_name_the_file(exported, tmp_path) -> None:
    root = _copy(exported[0], tmp_path / "copy")
    mask_path = root / "masks" / "shapes" / f"{10_000_000 + 4}.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask_path)
    with pytest.raises(DataError, match=rf"{mask_path.name}: mask is 32x32 but image .* is 64x64"):
        list(CrisDataset(root, "shapes", "val"))
    cris = CrisDataset(root, "shapes", "val", skip_bad=True)
    assert len(list(cris)) == 39 and cris.skipped == {"size mismatch": 1}
    image_path = root / "images" / "shapes" / "shapes-test-000001.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(image_path)
    message = r"shapes-test-000001.png: image is 48x64 but .*instances.json says 64x64"
    with pytest.raises(DataError, match=message):
        list(ReferDataset(root, "shapes", "unc", "test"))


def test_malformed_json_names_the_file(exported, tmp_path) -> None:
    root = _copy(exported[0], tmp_path / "copy")
    (root / "shapes" / "instances.json").write_text('{"images": [')
    with pytest.raises(DataError, match=r"instances.json: malformed JSON"):
        ReferDataset(root, "shapes", "unc", "val")
    (root / "anns" / "shapes" / "val.json").write_text("not json")
    with pytest.raises(DataError, match=r"val.json: malformed JSON"):
        CrisDataset(root, "shapes", "val")
    (root / "anns" / "shapes" / "test.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match=r"test.json: expected a JSON list"):
        CrisDataset(root, "shapes", "test")
