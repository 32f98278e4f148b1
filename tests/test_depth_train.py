"""The depth training loop: a tiny run end to end, resume, Marigold (latent) fine-tuning, learning on synthetic data."""

import json

import numpy as np
import pytest

from addp_agent.errors import UserError
from addp_agent.models.depth_build import PixelDepthModelConfig
from addp_agent.models.registry import load_depth_pipeline
from addp_agent.train.depth_loop import DepthTrainConfig, lr_factor, train_depth

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = PixelDepthModelConfig(resolution=32, patch_size=2, block_out_channels=(16, 32),
                             down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                             up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, default_steps=2)


def config(tmp_path, **overrides):
    settings = dict(out=tmp_path / "run", data="synthetic:12:0:32", model=TINY, steps=4, batch_size=2,
                    warmup_steps=1, val_every=2, val_n=2, checkpoint_every=2, log_every=1)
    return DepthTrainConfig(**(settings | overrides))


def rows(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_run_exports_a_loadable_model_with_validation(tmp_path):
    folder = train_depth(config(tmp_path), progress=False)
    log = rows(tmp_path / "run")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]
    validated = [r for r in log if "val_abs_rel" in r]
    assert [r["step"] for r in validated] == [2, 4] and all(0 < r["val_abs_rel"] < 10 for r in validated)
    assert all(0 <= r["val_delta1"] <= 1 and r["val_n"] == 2 for r in validated)
    training = json.loads((folder / "training.json").read_text())
    assert training["task"] == "depth" and training["step"] == 4 and training["finished"]
    assert training["metrics"]["val_abs_rel"] == validated[-1]["val_abs_rel"]
    pipe = load_depth_pipeline(str(folder), device="cpu", progress=False)
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.estimate(np.zeros((20, 30, 3), np.uint8)).depth.shape == (20, 30)


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    train_depth(config(tmp_path), progress=False)
    train_depth(config(tmp_path, steps=6), progress=False)
    steps = [r["step"] for r in rows(tmp_path / "run") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]  # not restarted at 1
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-4", "step-6"]
    assert json.loads((tmp_path / "run" / "model" / "training.json").read_text())["step"] == 6


def test_x0_parameterization_and_no_augmentation_run(tmp_path):
    folder = train_depth(config(tmp_path, steps=2, parameterization="sample", augment=False, multires_noise=False,
                                timesteps="uniform", val_every=0, checkpoint_every=2), progress=False)
    assert load_depth_pipeline(str(folder), progress=False).scheduler.config.prediction_type == "sample"


def test_fine_tunes_a_marigold_format_latent_model(tmp_path, tiny_marigold_dir):
    folder = train_depth(config(tmp_path, init_from=str(tiny_marigold_dir), steps=2, val_n=1, val_every=2,
                                val_steps=1), progress=False)
    pipe = load_depth_pipeline(str(folder), device="cpu", progress=False)
    assert pipe.vae is not None and pipe.default_steps == 1
    assert pipe.estimate(np.zeros((16, 16, 3), np.uint8), processing_resolution=16).depth.shape == (16, 16)


def test_bad_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="timesteps"):
        train_depth(config(tmp_path, timesteps="nope"), progress=False)
    with pytest.raises(UserError, match="depth source"):
        train_depth(config(tmp_path, data="nope:3"), progress=False)
    with pytest.raises(UserError, match="contribution file"):
        train_depth(config(tmp_path, timesteps="estimated"), progress=False)
    assert not (tmp_path / "run").exists()


def test_exponential_schedule_reaches_the_final_ratio(tmp_path):
    c = config(tmp_path, warmup_steps=10, final_lr_ratio=0.01)
    assert lr_factor(c, 4, 0.0) == pytest.approx(0.5)  # warm-up
    assert lr_factor(c, 100, 1.0) == pytest.approx(0.01) and lr_factor(c, 100, 0.5) == pytest.approx(0.1)


@pytest.mark.slow
def test_training_on_synthetic_depth_lowers_loss_and_abs_rel(tmp_path):
    """About a minute on 2 cores: 300 steps of the tiny model on 200 synthetic scenes at 32 px."""
    run = config(tmp_path, data="synthetic:200:0:32", steps=300, batch_size=16, lr=1e-3, warmup_steps=20,
                 val_every=150, val_n=24, checkpoint_every=300, log_every=10)
    train_depth(run, progress=False)
    log = rows(tmp_path / "run")
    losses = [r["loss"] for r in log if "loss" in r]
    val = [r["val_abs_rel"] for r in log if "val_abs_rel" in r]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    untrained = train_depth(config(tmp_path / "zero", data="synthetic:200:0:32", steps=1, lr=1e-12, val_n=24,
                                   val_every=1), progress=False)
    baseline = json.loads((untrained / "training.json").read_text())["metrics"]["val_abs_rel"]
    assert val[-1] < 0.8 * baseline
