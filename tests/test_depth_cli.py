"""`addp depth`, `addp train --task depth`, `addp eval --task depth`: outputs, and one clear error (exit 2, nothing
written) for each bad input."""

import json

import numpy as np
import pytest
from cli_support import run_cli as run
from PIL import Image

from addp_agent.data.depth_sources import write_depth_dir
from addp_agent.data.depth_synthetic import SyntheticDepth
from addp_agent.depth_metrics import DEPTH_KEYS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def test_depth_writes_npy_png16_colour_and_result(image_path, tmp_path, tiny_depth_dir, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["depth", str(image_path), "--model", str(tiny_depth_dir), "--out", str(out),
                             "--seed", "3", "--ensemble", "3", "--steps", "2"], capsys)
    assert code == 0, err
    depth = np.load(out / "depth.npy")
    assert depth.dtype == np.float32 and depth.shape == (40, 56) and depth.min() >= 0 and depth.max() <= 1
    png = Image.open(out / "depth.png")
    assert png.mode.startswith("I") and png.size == (56, 40)
    np.testing.assert_array_equal(np.asarray(png), (depth * 65535).astype(np.uint16))
    assert Image.open(out / "depth_colored.png").mode == "RGB"
    assert np.load(out / "uncertainty.npy").shape == (40, 56)
    record = json.loads((out / "result.json").read_text())
    assert record["min"] == pytest.approx(float(depth.min()), abs=1e-6)
    assert record["median"] == pytest.approx(float(np.median(depth)), abs=1e-6)
    assert record["settings"]["ensemble_size"] == 3 and record["settings"]["num_inference_steps"] == 2
    assert record["seed"] == 3 and {"encode_s", "denoise_s", "total_s", "load_s"} <= set(record["timings"])
    assert "0 = near" in record["convention"] and "median" in stdout
    assert not [p for p in out.iterdir() if p.name.startswith(".addp-")]


def test_depth_same_seed_same_file(image_path, tmp_path, tiny_depth_dir, capsys):
    for name in ("a", "b"):
        assert run(["depth", str(image_path), "--model", str(tiny_depth_dir), "--out", str(tmp_path / name),
                    "--quiet"], capsys)[0] == 0
    assert (tmp_path / "a" / "depth.npy").read_bytes() == (tmp_path / "b" / "depth.npy").read_bytes()


@pytest.mark.parametrize("case", ["missing-image", "corrupt-image", "steps-0", "ensemble-0", "resolution-negative",
                                  "out-is-file", "out-unwritable", "missing-model", "ris-model", "odd-resolution"])
def test_depth_bad_input_is_one_line_exit_2_nothing_written(case, image_path, tmp_path, tiny_depth_dir,
                                                             tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    image, model, extra = str(image_path), str(tiny_depth_dir), []
    if case == "missing-image":
        image = str(tmp_path / "nope.png")
    elif case == "corrupt-image":
        (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
        image = str(tmp_path / "bad.png")
    elif case == "steps-0":
        extra = ["--steps", "0"]
    elif case == "ensemble-0":
        extra = ["--ensemble", "0"]
    elif case == "resolution-negative":
        extra = ["--processing-resolution", "-8"]
    elif case == "odd-resolution":
        extra = ["--processing-resolution", "33"]
    elif case == "out-is-file":
        out.write_text("x")
    elif case == "out-unwritable":  # under a file: refused even for root, unlike permission bits
        (tmp_path / "plain.txt").write_text("x")
        out = tmp_path / "plain.txt" / "out"
    elif case == "missing-model":
        model = str(tmp_path / "no-model")
    elif case == "ris-model":
        model = str(tiny_pixel_dir)
    code, stdout, err = run(["depth", image, "--model", model, "--out", str(out), "--quiet", *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    if case == "out-is-file":
        assert out.read_text() == "x"
    else:
        assert not out.exists()


def test_train_task_depth_via_cli(tmp_path, capsys):
    model = tmp_path / "model.json"
    model.write_text(json.dumps(dict(resolution=32, patch_size=2, block_out_channels=[16, 32],
                                     down_block_types=["DownBlock2D", "AttnDownBlock2D"],
                                     up_block_types=["AttnUpBlock2D", "UpBlock2D"], attention_head_dim=4)))
    code, stdout, err = run(["train", "--task", "depth", "--out", str(tmp_path / "run"), "--data", "synthetic:8:0:32",
                             "--model-config", str(model), "--steps", "2", "--batch-size", "2", "--val-every", "2",
                             "--val-n", "2", "--checkpoint-every", "2", "--no-augment", "--quiet"], capsys)
    assert code is None or code == 0, err
    config = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert config["augment"] is False and config["timesteps"] == "depth" and config["model"]["patch_size"] == 2
    assert (tmp_path / "run" / "model" / "model_index.json").exists() and "model saved" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--task", "depth", "--timesteps", "nope"], "timesteps"),
    (["--task", "depth", "--lr", "-1"], "--lr"),
    (["--task", "depth", "--data", "bogus:1"], "depth source"),
    (["--task", "depth", "--model-config", "/nonexistent.json"], "model-config"),
    (["--task", "depth", "--model-config", "{tmp}/latin-1.json"], "model-config"),  # not UTF-8
])
def test_train_task_depth_bad_settings(argv, message, tmp_path, capsys):
    (tmp_path / "latin-1.json").write_bytes(b'{"name": "\xe9"}')
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    code, _, err = run(["train", "--out", str(tmp_path / "run"), *argv, "--quiet"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_unknown_task_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(["train", "--task", "normals", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "unknown task" in err


def test_eval_task_depth_writes_the_run_folder(tmp_path, tiny_depth_dir, capsys):
    write_depth_dir(SyntheticDepth("test", 3, seed=4, size=32), tmp_path / "data")
    out = tmp_path / "eval"
    code, stdout, err = run(["eval", "--task", "depth", "--data", f"depthdir:{tmp_path / 'data'}", "--model",
                             str(tiny_depth_dir), "--steps", "2", "--ensemble", "2", "--curve-n", "2", "--out",
                             str(out)], capsys)
    assert code is None or code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(DEPTH_KEYS) <= set(metrics) and metrics["n"] == 3 and metrics["depth_range"] == [1e-3, 65.535]
    assert all(0 <= metrics[k] <= 1 for k in ("delta1", "delta2", "delta3")) and metrics["abs_rel"] > 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 3 and records[0]["sample_id"] == "rgb/000000.png"
    assert metrics["abs_rel"] == pytest.approx(np.mean([r["abs_rel"] for r in records]), abs=1e-5)
    curve = metrics["x0_curve"]
    assert curve["n"] == 2 and curve["timesteps"] == [999, 499] and len(curve["abs_rel"]) == 2
    for name in ("report.md", "gallery.png", "abs_rel_hist.png", "x0_curve.png", "x0_curve.csv", "contribution.json"):
        assert (out / name).exists(), name
    assert "AbsRel" in (out / "report.md").read_text() and "AbsRel" in stdout


@pytest.mark.parametrize("argv, message", [
    (["--data", "depthdir:/nonexistent"], "no such folder"),
    (["--data", "nyu:/tmp"], "filename_list_test.txt"),
    (["--data", "synthetic:2", "--ensemble", "0"], "--ensemble"),
    (["--data", "synthetic:2", "--ensemble", "1000000000"], "--ensemble: Input should be less than or equal to 64"),
    (["--data", "synthetic:2", "--processing-resolution", "100000"], "--processing-resolution"),  # as addp depth
    (["--data", "bogus:2"], "depth source"),
])
def test_eval_task_depth_bad_input_before_the_model_loads(argv, message, tmp_path, capsys):
    out = tmp_path / "eval"
    code, _, err = run(["eval", "--task", "depth", *argv, "--model", str(tmp_path / "no-model"), "--out", str(out)],
                       capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
