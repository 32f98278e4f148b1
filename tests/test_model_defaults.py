"""A broken model folder (hand-edited defaults, scheduler or component configs) is one line at load, exit 2, and
nothing written: never a traceback from inside the first denoising step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import run_cli
from PIL import Image

from addp_agent.errors import ModelLoadError
from addp_agent.models.registry import load_depth_pipeline, load_pipeline


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def broken(source: Path, folder: Path, file: str, **changes) -> Path:
    """A copy of the model folder ``source`` with ``changes`` written into its JSON ``file``."""
    shutil.copytree(source, folder)
    path = folder / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return folder


RIS_CASES = {
    "guidance-abc": ("model_index.json", {"default_guidance_scale": "abc"}, "default_guidance_scale"),
    "steps-x": ("model_index.json", {"default_num_inference_steps": "x"}, "default_num_inference_steps"),
    "steps-0": ("model_index.json", {"default_num_inference_steps": 0}, "default_num_inference_steps"),
    "image-guidance-list": ("model_index.json", {"default_image_guidance_scale": [1]},
                            "default_image_guidance_scale"),
    "correction-scale-nan": ("model_index.json", {"default_correction_scale": "NaN"}, "default_correction_scale"),
    "correction-mode-bogus": ("model_index.json", {"default_correction_mode": "bogus"}, "default_correction_mode"),
    "resolution-x": ("model_index.json", {"resolution": "x"}, "resolution"),
    "resolution-negative": ("model_index.json", {"resolution": -1}, "resolution"),
    "prediction-bogus": ("scheduler/scheduler_config.json", {"prediction_type": "bogus"}, "prediction_type"),
    "timesteps-0": ("scheduler/scheduler_config.json", {"num_train_timesteps": 0}, "cannot load"),
    "attention-head-0": ("unet/config.json", {"attention_head_dim": 0}, "cannot load"),
    "text-hidden-negative": ("text_encoder/config.json", {"hidden_size": -3}, "cannot load"),
}


@pytest.mark.parametrize("case", sorted(RIS_CASES))
def test_broken_segmentation_model_is_one_line(case, tiny_pixel_dir, image, tmp_path, capsys):
    file, changes, message = RIS_CASES[case]
    model = broken(tiny_pixel_dir, tmp_path / "model", file, **changes)
    out = tmp_path / "out"
    code, _, err = run_cli(["segment", str(image), "the circle", "--model", str(model), "--out", str(out), "--quiet"],
                           capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(model) in err and message in err, err
    assert not out.exists()


DEPTH_CASES = {
    "steps-x": ("model_index.json", {"default_denoising_steps": "x"}, "default_denoising_steps"),
    "resolution-x": ("model_index.json", {"default_processing_resolution": "x"}, "default_processing_resolution"),
    "prediction-bogus": ("scheduler/scheduler_config.json", {"prediction_type": "bogus"}, "prediction_type"),
}


@pytest.mark.parametrize("case", sorted(DEPTH_CASES))
def test_broken_depth_model_is_one_line(case, tiny_depth_dir, image, tmp_path, capsys):
    file, changes, message = DEPTH_CASES[case]
    model = broken(tiny_depth_dir, tmp_path / "model", file, **changes)
    out = tmp_path / "out"
    code, _, err = run_cli(["depth", str(image), "--model", str(model), "--out", str(out), "--quiet"], capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(model) in err and message in err, err
    assert not out.exists()


def test_the_checks_keep_valid_folders_loading(tiny_pixel_dir, tiny_depth_dir, tmp_path):
    """Null defaults, a resolution of 0 (the UNet's own) and Marigold's processing resolution 0 (the input's size)
    are valid, and so are the tiny models as saved."""
    load_pipeline(tiny_pixel_dir, device="cpu", progress=False)
    load_depth_pipeline(tiny_depth_dir, device="cpu", progress=False)
    load_pipeline(broken(tiny_pixel_dir, tmp_path / "r", "model_index.json", resolution=0,
                         default_guidance_scale=None), device="cpu", progress=False)
    load_depth_pipeline(broken(tiny_depth_dir, tmp_path / "d", "model_index.json", default_processing_resolution=0),
                        device="cpu", progress=False)
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_pipeline(broken(tiny_pixel_dir, tmp_path / "bad", "model_index.json", default_guidance_scale=1e9),
                      device="cpu", progress=False)
