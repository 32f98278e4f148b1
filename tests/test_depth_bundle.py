"""`addp bundle --task depth`: fp16 weights, trailing spacing and the default steps, loaded through the registry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open

from addp_agent.cli import main
from addp_agent.models.depth_bundle import bundle_depth
from addp_agent.models.registry import load_depth_pipeline


def test_depth_bundle_is_fp16_trailing_with_its_default_steps(tiny_depth_dir, tmp_path):
    source = tmp_path / "trained"
    shutil.copytree(tiny_depth_dir, source)
    (source / "calibration.json").write_text(json.dumps({"version": 1}))
    target = tmp_path / "depth_small"
    size = bundle_depth(source, target, steps=1)
    assert 0 < size < 30 * 2**20
    weights = next((target / "unet").glob("*.safetensors"))
    with safe_open(str(weights), framework="pt") as tensors:
        assert {tensors.get_tensor(k).dtype for k in tensors.keys()} == {torch.float16}  # noqa: SIM118
    assert json.loads((target / "scheduler" / "scheduler_config.json").read_text())["timestep_spacing"] == "trailing"
    assert json.loads((target / "calibration.json").read_text()) == {"version": 1}
    pipe = load_depth_pipeline(str(target), device="cpu", progress=False, timestep_spacing=None)
    assert pipe.default_steps == 1 and pipe.unet.dtype == torch.float32
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    estimate = pipe.estimate(image, seed=0)
    assert estimate.depth.shape == (32, 32) and np.isfinite(estimate.depth).all()


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "depth", "--guidance-scale", "3"], "takes --steps only"),
    (["--task", "depth", "--steps", "0"], "--steps"),
    (["--task", "volume"], "--task must be ris or depth"),
])
def test_depth_bundle_bad_input_is_one_line_exit_2(tiny_depth_dir, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["bundle", str(tiny_depth_dir), "--target", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["ris", "depth"])
def test_a_target_inside_or_around_the_source_is_refused(tiny_depth_dir, tiny_pixel_dir, tmp_path, capsys, task):
    import shutil

    source = tmp_path / "run" / "model"
    shutil.copytree(tiny_depth_dir if task == "depth" else tiny_pixel_dir, source)
    shutil.copy2(source / "model_index.json", tmp_path / "run" / "model_index.json")  # the run looks like a pipeline
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for target in (source / "bundle", tmp_path / "run"):  # inside the source; holding it (was: the source deleted)
        with pytest.raises(SystemExit) as exit_:
            main(["bundle", str(source), "--task", task, "--target", str(target)])
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and "the source" in err and "\n" not in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_segmentation_folder_is_not_a_depth_bundle(tiny_pixel_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bundle", str(tiny_pixel_dir), "--task", "depth", "--target", str(tmp_path / "out")])
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
