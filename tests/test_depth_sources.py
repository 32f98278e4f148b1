"""Depth sources: the synthetic world's geometry, NYUv2 / KITTI (Marigold layouts), depthdir round trip, specs."""

import sys
import types

import numpy as np
import pytest
from PIL import Image

from addp_agent.data.depth_sources import (
    check_depth_spec,
    depth_range,
    eigen_crop_kitti,
    load_depth_source,
    write_depth_dir,
)
from addp_agent.data.depth_synthetic import SyntheticDepth
from addp_agent.errors import DataError, UserError


def test_synthetic_is_deterministic_and_splits_differ():
    a = SyntheticDepth("train", 3, seed=5, size=32).sample(2)
    b = SyntheticDepth("train", 3, seed=5, size=32).sample(2)
    c = SyntheticDepth("val", 3, seed=5, size=32).sample(2)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.depth, c.depth)
    assert a.sample_id == "synthetic-train-5-000002" and a.image.shape == (32, 32, 3)
    assert 0.95 < a.valid.mean() < 1.0  # 2 % drop-outs


@pytest.mark.parametrize("index", range(4))
def test_synthetic_depth_is_the_analytic_ray_cast(index):
    sample = SyntheticDepth("test", 4, seed=1, size=48).sample(index)
    k = sample.intrinsics
    pitch, height = np.deg2rad(sample.meta["pitch_deg"]), sample.meta["camera_height"]
    v, u = np.mgrid[0:48, 0:48] + 0.5
    y = (v - k[1, 2]) / k[1, 1]  # camera ray (x, y, 1): the hit's z-depth is the ray parameter
    down_world = y * np.cos(pitch) + np.sin(pitch)  # −(world y component of the ray)
    with np.errstate(divide="ignore"):
        ground = np.where(down_world > 0, height / down_world, np.inf)
    on_ground = np.isclose(sample.depth, ground, rtol=1e-4)
    assert on_ground.mean() > 0.3  # the floor fills the lower part of the frame
    assert (sample.depth <= ground * (1 + 1e-4)).all()  # nothing is seen through the floor
    assert np.all(np.isfinite(sample.depth)) and sample.depth.min() > 0


def test_depthdir_round_trip(tmp_path):
    samples = list(SyntheticDepth("val", 3, seed=2, size=24))
    assert write_depth_dir(samples, tmp_path / "val") == 3
    assert (tmp_path / "val" / "filename_list.txt").read_text().splitlines()[0] == "rgb/000000.png depth/000000.png"
    loaded = list(load_depth_source(f"depthdir:{tmp_path}", "val"))  # DIR/SPLIT/ is used when it exists
    for original, again in zip(samples, loaded, strict=True):
        assert np.array_equal(original.image, again.image)
        assert np.array_equal(original.valid, again.valid)
        assert np.abs(original.depth - again.depth)[original.valid].max() <= 0.0005 + 1e-6  # whole millimetres
        np.testing.assert_allclose(original.intrinsics, again.intrinsics)
    depth_png = Image.open(tmp_path / "val" / "depth" / "000000.png")
    assert depth_png.mode in ("I;16", "I") and np.asarray(depth_png)[~samples[0].valid].max() == 0


def test_depthdir_reads_the_scenes3d_export_intrinsics(tmp_path):
    import json

    write_depth_dir(SyntheticDepth("test", 2, seed=3, size=16), tmp_path)
    shared = [[10.0, 0, 8], [0, 10.0, 8], [0, 0, 1]]
    other = [[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]]
    (tmp_path / "intrinsics.json").write_text(json.dumps({
        "K": shared, "fx": 10.0, "fy": 10.0, "cx": 8, "cy": 8, "width": 16, "height": 16, "depth_unit": "mm",
        "depth_scale": 0.001, "invalid_value": 0, "count": 2, "per_image": {"rgb/000001.png": other}}))
    first, second = load_depth_source(f"depthdir:{tmp_path}", "test")
    np.testing.assert_array_equal(first.intrinsics, shared)
    np.testing.assert_array_equal(second.intrinsics, other)
    (tmp_path / "intrinsics.json").write_text(json.dumps({"K": "three"}))
    with pytest.raises(DataError, match="3×3"):
        load_depth_source(f"depthdir:{tmp_path}", "test")


def write_nyu(root, rows=2):
    lines = []
    for i in range(rows):
        folder = root / "test" / "kitchen_0001"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((480, 640, 3), 40 * i, np.uint8)).save(folder / f"rgb_{i:04d}.png")
        millimetres = np.full((480, 640), 2500, np.uint16)
        millimetres[100, 100] = 12_000  # beyond 10 m
        millimetres[200, 200] = 0  # no return
        Image.fromarray(millimetres).save(folder / f"depth_{i:04d}.png")
        Image.fromarray(millimetres).save(folder / f"filled_{i:04d}.png")
        lines.append(f"test/kitchen_0001/rgb_{i:04d}.png test/kitchen_0001/depth_{i:04d}.png "
                     f"test/kitchen_0001/filled_{i:04d}.png")
    (root / "filename_list_test.txt").write_text("\n".join(lines) + "\n")


def test_nyu_layout_range_and_eigen_crop(tmp_path):
    write_nyu(tmp_path)
    samples = list(load_depth_source(f"nyu:{tmp_path}", "test"))
    assert len(samples) == 2 and samples[1].image[0, 0, 0] == 40
    sample = samples[0]
    assert sample.depth[300, 300] == pytest.approx(2.5) and sample.depth.dtype == np.float32
    assert sample.valid[300, 300] and not sample.valid[100, 100] and not sample.valid[200, 200]
    assert not sample.valid[44, 300] and sample.valid[45, 300] and not sample.valid[471, 300]
    assert not sample.valid[300, 40] and sample.valid[300, 41] and not sample.valid[300, 601]
    assert depth_range(f"nyu:{tmp_path}").max_depth == 10.0


def test_nyu_errors_and_skipping(tmp_path):
    with pytest.raises(DataError, match="filename_list_test.txt"):
        load_depth_source(f"nyu:{tmp_path}", "test")
    write_nyu(tmp_path)
    (tmp_path / "test" / "kitchen_0001" / "rgb_0001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable"):
        list(load_depth_source(f"nyu:{tmp_path}", "test"))
    source = load_depth_source(f"nyu:{tmp_path}", "test", skip_bad=True)
    assert len(list(source)) == 1 and source.skipped == {"unreadable": 1}


def test_kitti_layout_crops_and_dropped_lines(tmp_path):
    height, width = 360, 1232
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = np.full((height, width), 20 * 256, np.uint16)
    depth[-1, width // 2] = 90 * 256  # beyond 80 m
    (tmp_path / "a").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a" / "img.png")
    Image.fromarray(depth).save(tmp_path / "a" / "depth.png")
    (tmp_path / "eigen_test_files_with_gt.txt").write_text(
        "a/img.png a/depth.png 721.5377\na/img.png None 721.5377\n")
    source = load_depth_source(f"kitti:{tmp_path}", "test")
    (sample,) = list(source)
    assert source.skipped == {"no ground truth": 1}
    assert sample.image.shape == (352, 1216, 3)
    assert np.array_equal(sample.image, rgb[8:360, 8:1224])  # KB crop: top = H − 352, left = (W − 1216) / 2
    assert sample.depth[200, 600] == pytest.approx(20.0) and sample.meta["focal"] == pytest.approx(721.5377)
    assert np.array_equal(sample.valid & eigen_crop_kitti((352, 1216)), sample.valid)
    assert not sample.valid[0, 600] and sample.valid[200, 600]
    assert sample.valid.mean() == pytest.approx(eigen_crop_kitti((352, 1216)).mean(), abs=1e-4)


def test_kitti_too_small_frames_are_data_errors(tmp_path):
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.zeros((100, 200), np.uint16)).save(tmp_path / "d.png")
    (tmp_path / "list.txt").write_text("i.png d.png 700\n")
    with pytest.raises(DataError, match="352×1216"):
        list(load_depth_source(f"kitti:{tmp_path}:{tmp_path / 'list.txt'}", "test"))


def test_scenes_gen_dispatches_to_the_scenes3d_generator(monkeypatch):
    calls = []
    module = types.ModuleType("addp_agent.data.scenes3d")
    module.depth_samples = lambda *args: calls.append(args) or ["sample"]
    monkeypatch.setitem(sys.modules, "addp_agent.data.scenes3d", module)
    assert load_depth_source("scenes-gen:10:3:128", "test") == ["sample"]
    load_depth_source("scenes-gen:5:1:64:hard", "val")
    assert calls == [("test", 10, 3, 128, "default"), ("val", 5, 1, 64, "hard")]


def test_scenes_gen_without_the_generator_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "addp_agent.data.scenes3d", None)  # import fails
    with pytest.raises(UserError, match="Scenes-3D generator"):
        load_depth_source("scenes-gen:10:3:128", "test")


@pytest.mark.parametrize("spec", ["nyu", "kitti:", "foo:1", "synthetic:x", "synthetic:1:2:3:4", "scenes-gen:1:2",
                                  "scenes-gen:a:b:c"])
def test_bad_specs(spec):
    with pytest.raises(UserError):
        load_depth_source(spec, "test")


def test_check_spec_fails_early_on_missing_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        check_depth_spec(f"depthdir:{tmp_path / 'nope'}", "test")
    (tmp_path / "filename_list.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        check_depth_spec(f"depthdir:{tmp_path}", "test")
    with pytest.raises(UserError, match="split"):
        load_depth_source("synthetic:2", "dev")


def test_a_list_file_that_is_not_text_and_a_focal_that_is_not_a_number_are_data_errors(tmp_path):
    (tmp_path / "binary.txt").write_bytes(b"\x80\x81 rgb.png\n")
    with pytest.raises(DataError, match="cannot read the list file"):  # was: a UnicodeDecodeError
        load_depth_source(f"kitti:{tmp_path}:{tmp_path / 'binary.txt'}", "test")
    Image.fromarray(np.zeros((360, 1232, 3), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.zeros((360, 1232), np.uint16)).save(tmp_path / "d.png")
    (tmp_path / "list.txt").write_text("i.png d.png seven\ni.png d.png 700\n")
    with pytest.raises(DataError, match="'seven'.*not a number"):  # was: a ValueError
        list(load_depth_source(f"kitti:{tmp_path}:{tmp_path / 'list.txt'}", "test"))
    source = load_depth_source(f"kitti:{tmp_path}:{tmp_path / 'list.txt'}", "test", skip_bad=True)
    assert len(list(source)) == 1 and source.skipped == {"unreadable": 1}


def test_a_synthetic_split_beyond_ten_million_samples_is_refused():
    with pytest.raises(UserError, match="1 ≤ n ≤ 10000000"):  # training stacked every sample: memory ran out
        load_depth_source("synthetic:99999999999", "train")
