"""Scenes-3D exports -> loaders round trip (REFER, CRIS, gRefCOCO, CLEVR-Ref+), the official getMask decoding,
the depth layout, the CLI (one-line errors, nothing written) and statistics."""

from __future__ import annotations

import importlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

import addp_agent.cli as cli
from addp_agent.data.clevr_ref import ClevrRefDataset, decode_mask, encode_mask
from addp_agent.data.cris import CrisDataset
from addp_agent.data.grefcoco import GRefDataset
from addp_agent.data.refer import ReferDataset
from addp_agent.data.sample import RISSample
from addp_agent.data.scenes3d import ScenesDepth, ScenesRef, preset_config
from addp_agent.data.scenes3d.export import export_clevr_ref, export_cris, export_grefs, export_refer
from addp_agent.data.scenes3d.export_depth import export_depth
from addp_agent.data.sources import load_source
from addp_agent.errors import UserError

CLASSIC = preset_config("hard", size=64)
GENERALIZED = preset_config("default", size=64, mode="generalized", multi_rate=0.3, empty_rate=0.3)


def assert_same(a: RISSample, b: RISSample, ids: bool = True) -> None:
    names = ["expression", "distractors", "family", "confusable", "meta", "caption", "n_targets"]
    if ids:
        names += ["sample_id", "image_id", "ref_id"]
    for name in names:
        assert getattr(a, name) == getattr(b, name), name
    strip = [{k: v for k, v in step.items() if k != "_output"} for step in b.program or []]
    assert a.program == strip
    assert a.image.dtype == b.image.dtype == np.uint8 and np.array_equal(a.image, b.image)
    assert b.mask.dtype == bool and np.array_equal(a.mask, b.mask)
    assert len(a.target_masks) == len(b.target_masks)
    assert all(np.array_equal(x, y) for x, y in zip(a.target_masks, b.target_masks, strict=True))
    assert [o.name for o in a.others] == [o.name for o in b.others]
    if ids:
        assert [o.instance_id for o in a.others] == [o.instance_id for o in b.others]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.others, b.others, strict=True))


@pytest.fixture(scope="module")
def sets():
    return {"classic": list(ScenesRef("val", 24, 3, CLASSIC)),
            "generalized": list(ScenesRef("test", 30, 3, GENERALIZED))}


def official_get_mask(ann: dict, image: dict) -> np.ndarray:
    """What lichengunc/refer's and henghuiding/gRefCOCO's ``getMask`` do with an annotation."""
    segmentation = ann["segmentation"]
    if type(segmentation[0]) is list:  # polygons
        rle = coco_mask.frPyObjects(segmentation, image["height"], image["width"])
    else:
        rle = segmentation
    return np.sum(coco_mask.decode(rle), axis=2).astype(np.uint8)


def test_refer_round_trip_and_official_get_mask(sets, tmp_path):
    samples = sets["classic"]
    assert export_refer(samples, tmp_path, "val") == len(samples)
    loaded = list(ReferDataset(tmp_path, "scenes3d", "unc", "val"))
    for a, b in zip(samples, loaded, strict=True):
        assert_same(a, b)
    refs = pickle.loads((tmp_path / "scenes3d" / "refs(unc).p").read_bytes())
    instances = json.loads((tmp_path / "scenes3d" / "instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    for ref, sample in zip(refs, samples, strict=True):
        decoded = official_get_mask(anns[ref["ann_id"]], images[ref["image_id"]])
        assert decoded.dtype == np.uint8 and np.array_equal(decoded, sample.mask.astype(np.uint8))
    assert any(s.distractors for s in samples) and {s.family for s in samples} >= {"relation", "ordinal"}


def test_refer_refuses_generalized_samples(sets, tmp_path):
    with pytest.raises(UserError, match="exactly one"):
        export_refer(sets["generalized"], tmp_path, "test")


def test_official_names_put_images_where_refer_looks(sets, tmp_path):
    export_refer(sets["classic"][:3], tmp_path, "val", dataset="refcoco")
    assert (tmp_path / "images" / "mscoco" / "images" / "train2014" / "scenes3d-val-000000.png").is_file()
    assert len(list(ReferDataset(tmp_path, "refcoco", "unc", "val"))) == 3
    export_grefs(sets["generalized"][:3], tmp_path, "test", dataset="grefcoco")
    assert (tmp_path / "images" / "train2014" / "scenes3d-test-000000.png").is_file()
    assert len(list(GRefDataset(tmp_path, "grefcoco", "unc", "test"))) == 3


def test_grefs_round_trip_marks_no_target_and_multi_target(sets, tmp_path):
    samples = sets["generalized"]
    assert export_grefs(samples, tmp_path, "test") == len(samples)
    for a, b in zip(samples, GRefDataset(tmp_path, "scenes3d", "unc", "test"), strict=True):
        assert_same(a, b)
    refs = json.loads((tmp_path / "scenes3d" / "grefs(unc).json").read_text())
    instances = json.loads((tmp_path / "scenes3d" / "instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    kinds = set()
    for ref, sample in zip(refs, samples, strict=True):
        if sample.n_targets == 0:
            assert ref["ann_id"] == [-1] and ref["no_target"] is True
            kinds.add("none")
            continue
        assert len(ref["ann_id"]) == sample.n_targets and ref["no_target"] is False
        kinds.add("many" if sample.n_targets > 1 else "one")
        merged = sum(official_get_mask(anns[i], images[ref["image_id"]]) for i in ref["ann_id"])  # getMaskByRef
        assert np.array_equal(merged > 0, sample.mask) and merged.max() == 1
    assert kinds == {"none", "one", "many"}


def test_cris_round_trip_keeps_targets(sets, tmp_path):
    for split, samples in (("val", sets["classic"]), ("test", sets["generalized"])):
        export_cris(samples, tmp_path, split)
        for a, b in zip(samples, CrisDataset(tmp_path, "scenes3d", split), strict=True):
            assert_same(a, b)


def test_clevr_ref_round_trip(sets, tmp_path):
    samples = sets["generalized"]
    export_clevr_ref(samples, tmp_path, "test")
    for a, b in zip(samples, ClevrRefDataset(tmp_path, "test"), strict=True):
        assert_same(a, b, ids=False)
    document = json.loads((tmp_path / "refexps" / "clevr_ref+_test_refexps.json").read_text())
    for ref, sample in zip(document["refexps"], samples, strict=True):
        assert ref["program"][-1]["_output"] == sample.meta["targets"]


def test_clevr_mask_codec_starts_with_a_zero_run():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((5, 7)) < 0.4
        text = encode_mask(mask)
        assert np.array_equal(decode_mask(text, 5, 7), mask)
        values, runs = [], [int(r) for r in text.split(",")]
        for k, run in enumerate(runs):  # the official reader: start at 0, flip after every run
            values += [k % 2] * run
        assert np.array_equal(np.array(values).reshape(5, 7), mask.astype(int))
    full = np.ones((2, 2), bool)
    assert encode_mask(full) == "0,4"
    with pytest.raises(ValueError):
        decode_mask("1,2", 2, 2)


def test_depth_layout(tmp_path):
    samples = list(ScenesDepth("val", 3, 1, CLASSIC))
    assert export_depth(samples, tmp_path) == 3
    lines = (tmp_path / "filename_list.txt").read_text().splitlines()
    assert lines == [f"rgb/{i:06d}.png depth/{i:06d}.png" for i in range(3)]
    info = json.loads((tmp_path / "intrinsics.json").read_text())
    assert info["depth_scale"] == 0.001 and info["invalid_value"] == 0 and "per_image" not in info
    for line, sample in zip(lines, samples, strict=True):
        rgb_path, depth_path = line.split()
        assert np.array_equal(np.asarray(Image.open(tmp_path / rgb_path)), sample.image)
        stored = Image.open(tmp_path / depth_path)
        depth = np.asarray(stored)
        assert depth.dtype == np.uint16
        assert np.abs(depth / 1000.0 - sample.depth).max() <= 0.0005 + 1e-9
        assert np.allclose(info["K"], sample.intrinsics, atol=1e-5)


@pytest.fixture()
def data_cli(monkeypatch):
    monkeypatch.setattr(cli, "_register", lambda: importlib.import_module("addp_agent.cli.data_scenes"))

    def run(args: list[str]) -> None:
        try:
            cli.main(args)
        except SystemExit as exit_:
            assert exit_.code in (0, None), exit_.code

    return run


def test_cli_exports_every_format_and_stats_cover_them(data_cli, tmp_path, capsys):
    out = tmp_path / "scenes"
    base = ["data", "scenes", "--out", str(out), "--split", "val", "--n", "8", "--size", "64"]
    for fmt in ("grefs", "cris", "clevr-ref"):
        data_cli([*base, "--mode", "generalized", "--format", fmt, "--set", "empty_rate=0.4"])
    assert "wrote 8 val samples (clevr-ref layout, 64 px, default, generalized)" in capsys.readouterr().out
    data_cli(["data", "scenes", "--out", str(tmp_path / "depth"), "--split", "test", "--n", "3", "--size", "64",
              "--format", "depth"])
    capsys.readouterr()
    data_cli(["data", "stats", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"grefs/val", "cris/val", "clevr-ref/val"}
    assert report["grefs/val"]["n"] == 8 and report["grefs/val"]["targets"] == report["cris/val"]["targets"]
    assert 0 < report["grefs/val"]["occlusion"]["mean_visible_fraction"] <= 1
    data_cli(["data", "stats", str(tmp_path / "depth"), "--json"])
    assert json.loads(capsys.readouterr().out)["depth"]["n"] == 3
    data_cli(["data", "stats", str(out)])
    assert "grefs/val" in capsys.readouterr().out
    assert len(list(load_source(f"scenes:{out}", "val"))) == 8
    assert len(list(load_source(f"grefcoco:{out}:scenes3d", "val"))) == 8
    assert len(list(load_source(f"clevr-ref:{out}", "val"))) == 8
    with pytest.raises(SystemExit) as exit_:  # another mode would overwrite the shared images
        cli.main([*base, "--format", "cris"])
    assert exit_.value.code == 2 and "other settings (empty_rate, mode)" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "dev"], "unknown split 'dev'"),
    (["--format", "coco"], "unknown format 'coco'"),
    (["--size", "48"], "size"),
    (["--size", "1024"], "size"),
    (["--preset", "medium"], "unknown Scenes-3D preset 'medium'"),
    (["--mode", "fuzzy"], "unknown Scenes-3D mode 'fuzzy'"),
    (["--n", "0"], "--n must be 1 … 10000000"),
    (["--n", "-3"], "--n must be 1 … 10000000"),
    (["--n", "100000000000"], "--n must be 1 … 10000000"),  # was: "sample index … out of range", naming no flag
    (["--seed", "-1"], "--seed 0 …"),
    (["--mode", "generalized", "--format", "refer"], "exactly one object per ref"),
    (["--set", "max_objects=11"], "max_objects"),
    (["--set", "colour=red"], "bad Scenes-3D option 'colour=red'"),
    (["--set", "colors=red,gray"], "colors"),
    (["--set", "min_objects=2", "--set", "max_objects=2"], "too few for relation"),
    (["--set", "elevation_deg=10,20"], "horizon"),
    (["--dataset-name", "../x"], "bad --dataset-name"),
])
def test_cli_bad_input_is_one_line_and_writes_nothing(data_cli, tmp_path, capsys, args, message):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "scenes", "--out", str(out), "--n", "2", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_refuses_a_second_depth_split_in_one_folder(data_cli, tmp_path, capsys):
    base = ["data", "scenes", "--out", str(tmp_path), "--n", "2", "--size", "64", "--format", "depth"]
    data_cli([*base, "--split", "val"])
    before = sorted(p.name for p in (tmp_path / "rgb").iterdir())
    with pytest.raises(SystemExit) as exit_:
        cli.main([*base, "--split", "test"])
    assert exit_.value.code == 2 and "already holds depth/val" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "rgb").iterdir()) == before


def test_shapes_refer_export_decodes_the_official_way(tmp_path):
    from addp_agent.data.export import export_refer as export_shapes
    from addp_agent.data.shapes import ShapesRef, ShapesRefConfig

    samples = list(ShapesRef("val", 12, 0, ShapesRefConfig(overlap=True)))
    export_shapes(samples, tmp_path, "val", dataset="refcocog")
    folder = Path(tmp_path) / "refcocog"
    refs = pickle.loads((folder / "refs(unc).p").read_bytes())
    instances = json.loads((folder / "instances.json").read_text())
    anns = {a["id"]: a for a in instances["annotations"]}
    images = {i["id"]: i for i in instances["images"]}
    for ref, sample in zip(refs, samples, strict=True):
        assert np.array_equal(official_get_mask(anns[ref["ann_id"]], images[ref["image_id"]]),
                              sample.mask.astype(np.uint8))
    assert (tmp_path / "images" / "mscoco" / "images" / "train2014" / refs[0]["file_name"]).is_file()


def test_loaders_name_the_file_on_bad_input(sets, tmp_path):
    from addp_agent.errors import DataError

    samples = sets["generalized"][:4]
    export_grefs(samples, tmp_path, "test")
    export_clevr_ref(samples, tmp_path, "test")
    with pytest.raises(DataError, match=r"no refs in split 'val'"):
        GRefDataset(tmp_path, "scenes3d", "unc", "val")
    with pytest.raises(DataError, match="clevr_ref\\+_val_scenes.json: file not found"):
        ClevrRefDataset(tmp_path, "val")
    scenes_path = tmp_path / "scenes" / "clevr_ref+_test_scenes.json"
    document = json.loads(scenes_path.read_text())
    document["scenes"][0]["obj_mask"]["1"] = "5,5"  # does not cover the image
    scenes_path.write_text(json.dumps(document))
    with pytest.raises(DataError, match="object 1: bad obj_mask"):
        list(ClevrRefDataset(tmp_path, "test"))
    refs_path = tmp_path / "scenes3d" / "grefs(unc).json"
    refs = json.loads(refs_path.read_text())
    refs[0]["ann_id"] = [123456789]
    refs_path.write_text(json.dumps(refs))
    with pytest.raises(DataError, match="points nowhere"):
        list(GRefDataset(tmp_path, "scenes3d", "unc", "test"))
    refs_path.write_text("[{")
    with pytest.raises(DataError, match="malformed JSON"):
        GRefDataset(tmp_path, "scenes3d", "unc", "test")
    (tmp_path / "images" / "scenes3d" / f"{samples[1].sample_id}.png").unlink()
    export_cris(samples, tmp_path / "c", "test")
    (tmp_path / "c" / "images" / "scenes3d" / f"{samples[1].sample_id}.png").unlink()
    loaded = CrisDataset(tmp_path / "c", "scenes3d", "test", skip_bad=True)
    assert len(list(loaded)) == 3 and loaded.skipped["missing image"] == 1
