"""DepthPipeline: stock Marigold parity, one-batch ensembles, encode once, trajectories, pixel models, loading."""

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, MarigoldDepthPipeline
from PIL import Image

from addp_agent.engine.depth_pipeline import DepthPipeline
from addp_agent.errors import ModelLoadError, UserError
from addp_agent.models.registry import load_depth_pipeline

pytestmark = pytest.mark.usefixtures("one_thread")


def rgb(height=40, width=56, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stock(tiny_marigold_dir):
    pipe = MarigoldDepthPipeline.from_pretrained(tiny_marigold_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def marigold(tiny_marigold_dir):
    pipe = DepthPipeline.from_pretrained(tiny_marigold_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pixel(depth_pipe):
    return depth_pipe  # conftest: the tiny pixel depth model loaded through the registry


def unet_batches(pipe):
    sizes = []
    handle = pipe.unet.register_forward_hook(lambda module, args, output: sizes.append(args[0].shape[0]))
    return sizes, handle


@pytest.mark.parametrize("ensemble", [1, 3])
def test_same_prediction_as_stock_marigold(stock, marigold, ensemble):
    image = Image.fromarray(rgb())
    kwargs = dict(num_inference_steps=3, ensemble_size=ensemble, output_uncertainty=ensemble > 1)
    # the stock pipeline runs `batch_size` members per UNet call; ours runs all of them in one call
    expected = stock(image, batch_size=ensemble, generator=torch.Generator().manual_seed(0), **kwargs)
    ours = marigold(image, generator=torch.Generator().manual_seed(0), **kwargs)
    assert ours.prediction.shape == expected.prediction.shape == (1, 40, 56, 1)
    assert np.abs(ours.prediction - expected.prediction).max() <= 1e-5
    assert ours.prediction.min() >= 0.0 and ours.prediction.max() <= 1.0
    if ensemble > 1:
        assert np.abs(ours.uncertainty - expected.uncertainty).max() <= 1e-5
        assert ours.uncertainty.max() > 0
    else:
        assert ours.uncertainty is None and expected.uncertainty is None


def test_stock_parity_at_another_processing_resolution_and_output_size(stock, marigold):
    image = Image.fromarray(rgb(30, 50, seed=2))
    kwargs = dict(num_inference_steps=2, processing_resolution=24, match_input_resolution=False, output_type="pt")
    expected = stock(image, generator=torch.Generator().manual_seed(5), **kwargs).prediction
    ours = marigold(image, generator=torch.Generator().manual_seed(5), **kwargs).prediction
    assert ours.shape == expected.shape == (1, 1, 14, 24)  # longer side 24, aspect kept, padding removed
    assert (ours - expected).abs().max() <= 1e-5


def test_ensemble_members_run_as_one_unet_batch(marigold):
    sizes, handle = unet_batches(marigold)
    try:
        out = marigold([rgb(), rgb(seed=1)], num_inference_steps=3, ensemble_size=5,
                       generator=torch.Generator().manual_seed(0))
        assert sizes == [2 * 5] * 3  # one call per step for 2 images × 5 members
        sizes.clear()
        marigold(rgb(), num_inference_steps=3, ensemble_size=5, batch_size=2, generator=torch.Generator())
        assert sizes == [2] * 3 + [2] * 3 + [1] * 3  # batch_size caps memory when asked
    finally:
        handle.remove()
    assert out.prediction.shape == (2, 40, 56, 1)


def test_encode_once_gives_the_same_prediction(pixel):
    image = rgb(48, 40, seed=3)
    direct = pixel(image, generator=torch.Generator().manual_seed(1)).prediction
    encoded = pixel.encode(image)
    sizes, handle = unet_batches(pixel)
    try:
        again = pixel(encoded=encoded, generator=torch.Generator().manual_seed(1)).prediction
        twice = pixel(encoded=encoded, generator=torch.Generator().manual_seed(1)).prediction
    finally:
        handle.remove()
    np.testing.assert_array_equal(direct, again)
    np.testing.assert_array_equal(again, twice)
    assert len(sizes) == 2 * pixel.default_steps  # no re-encoding: only the UNet steps ran


def test_pixel_model_round_trip_and_output_at_input_size(pixel, tiny_depth_dir, tmp_path):
    image = rgb(45, 70, seed=4)  # not a multiple of anything: resized to 32 px, padded, then back to 45×70
    first = pixel.estimate(image, seed=3)
    assert first.depth.shape == (45, 70) and first.depth.dtype == np.float32
    assert first.settings["num_inference_steps"] == 2 and first.settings["processing_resolution"] == 32
    pixel.save_pretrained(tmp_path / "copy")
    again = load_depth_pipeline(str(tmp_path / "copy"), device="cpu", progress=False).estimate(image, seed=3)
    np.testing.assert_array_equal(first.depth, again.depth)
    other_seed = pixel.estimate(image, seed=4)
    assert np.abs(other_seed.depth - first.depth).max() > 1e-3  # the seed matters
    native = pixel(image, processing_resolution=0, output_type="pt", match_input_resolution=False).prediction
    assert native.shape == (1, 1, 45, 70)  # 0 = native resolution


def test_pixel_model_packs_depth_like_the_ris_pixel_models(pixel):
    depth = torch.rand(2, 1, 32, 32)
    packed = pixel.depth_to_model(depth * 2 - 1)
    assert packed.shape == (2, 4, 16, 16)  # patch 2 → 4 channels
    torch.testing.assert_close(pixel.model_to_depth(packed), depth)
    assert pixel.unet.config.in_channels == 3 * 4 + 4 and pixel.unet.config.out_channels == 4


def test_ensemble_uncertainty_and_reduction(pixel):
    out = pixel(rgb(32, 32), ensemble_size=4, output_uncertainty=True, generator=torch.Generator().manual_seed(0),
                ensembling_kwargs={"reduction": "mean"})
    assert out.uncertainty.shape == out.prediction.shape == (1, 32, 32, 1)
    assert out.prediction.min() == pytest.approx(0.0, abs=1e-6) and out.prediction.max() == pytest.approx(1.0)
    assert (out.uncertainty >= 0).all() and out.uncertainty.max() > 0


def test_trajectory_has_one_decoded_x0_per_step(pixel):
    out = pixel(rgb(), num_inference_steps=4, ensemble_size=2, output_trajectory=True,
                generator=torch.Generator().manual_seed(0))
    (trajectory,) = out.trajectories
    assert [p.step for p in trajectory] == [0, 1, 2, 3]
    assert [p.timestep for p in trajectory] == [999, 749, 499, 249]  # DDIM trailing spacing
    assert all(p.prediction.shape == (2, 40, 56) for p in trajectory)
    plain = pixel(rgb(), num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_trajectory=True)
    last = plain.trajectories[0][-1].prediction[0]
    assert np.abs(last - plain.prediction[0, :, :, 0]).max() < 0.05  # the last x̂₀ is (almost) the answer


def test_legacy_marigold_v1_0_index_without_defaults(tiny_marigold_dir, tmp_path):
    folder = tmp_path / "v1-0"
    shutil.copytree(tiny_marigold_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    for key in ("prediction_type", "scale_invariant", "shift_invariant", "default_denoising_steps",
                "default_processing_resolution"):
        index.pop(key)
    index["_class_name"] = "MarigoldPipeline"
    (folder / "model_index.json").write_text(json.dumps(index))
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler.pop("timestep_spacing")  # the v1-0 file: diffusers' default "leading"
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))
    pipe = load_depth_pipeline(str(folder), device="cpu", progress=False)
    assert pipe.default_steps == 10 and pipe.default_resolution == 768
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    kept = load_depth_pipeline(str(folder), device="cpu", progress=False, timestep_spacing=None)
    assert kept.scheduler.config.timestep_spacing == "leading"
    result = pipe.estimate(rgb(16, 16), num_inference_steps=2, processing_resolution=16)
    assert result.depth.shape == (16, 16) and result.settings["num_inference_steps"] == 2


def test_leading_and_trailing_spacing_start_at_different_timesteps(marigold):
    trailing = marigold.scheduler
    leading = DDIMScheduler.from_config(trailing.config, timestep_spacing="leading")
    trailing.set_timesteps(2)
    leading.set_timesteps(2)
    assert trailing.timesteps.tolist() == [999, 499] and leading.timesteps.tolist() == [501, 1]


def test_loading_errors(tmp_path, tiny_pixel_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_depth_pipeline(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="not a depth model"):
        load_depth_pipeline(str(tiny_pixel_dir))  # an RIS model
    with pytest.raises(ModelLoadError, match="local cache only"):
        load_depth_pipeline("prs-eth/marigold-depth-v1-1")  # never fetched in tests
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model_index.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="malformed"):
        load_depth_pipeline(str(tmp_path / "bad"))
    (tmp_path / "bad" / "model_index.json").write_bytes(b'{"_class_name": "\xff"}')  # not UTF-8
    with pytest.raises(ModelLoadError, match="malformed"):
        load_depth_pipeline(str(tmp_path / "bad"))


def test_a_unet_with_the_wrong_channels_is_refused(tiny_depth_dir, tmp_path):
    folder = tmp_path / "wrong"
    shutil.copytree(tiny_depth_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["pixel_patch_size"] = 4  # the UNet was built for patch 2
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="channels"):
        load_depth_pipeline(str(folder), device="cpu", progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 0}, "num_inference_steps"),
    ({"ensemble_size": 0}, "ensemble_size"),
    ({"output_uncertainty": True}, "uncertainty"),
    ({"processing_resolution": 31}, "multiple of 2"),
    ({"processing_resolution": -2}, "processing resolution"),
    ({"output_type": "pil"}, "output_type"),
    ({"batch_size": 0}, "batch_size"),
    ({"resample_method_input": "cubic"}, "resample"),
    ({"ensembling_kwargs": {"reduction": "max"}}, "reduction"),
    ({"ensembling_kwargs": {"bogus": 1}}, "ensembling_kwargs"),
    ({"latents": torch.zeros(1, 4, 3, 3)}, "latents must have shape"),
    ({"latents": torch.zeros(1, 4, 16, 16), "generator": torch.Generator()}, "not both"),
])
def test_bad_arguments_are_user_errors(pixel, kwargs, message):
    with pytest.raises(UserError, match=message):
        pixel(rgb(32, 32), **kwargs)


@pytest.mark.parametrize("image, message", [
    (np.full((8, 8, 3), 1.5, dtype=np.float32), r"\[0, 1\]"),
    ([rgb(8, 8), rgb(9, 8)], "share a size"),
    ([], "no images"),
    (np.zeros((8, 8, 5), dtype=np.uint8), "image array"),
    (np.zeros((2, 400, 3), dtype=np.uint8), "elongated"),
])
def test_bad_images_are_user_errors(pixel, image, message):
    with pytest.raises(UserError, match=message):
        pixel(image)


def test_an_oracle_denoiser_recovers_the_depth_at_every_step(pixel):
    """A UNet that returns the exact v for a known depth map: every step's x̂₀ is that map (loop, DDIM v-prediction,
    packing, unpadding and resizing are consistent), and the answer is it up to DDIM's last-step noise residual."""
    target = torch.linspace(0, 1, 32)[None, None, :, None].expand(1, 1, 32, 32)  # near at the top
    x0 = pixel.depth_to_model(target * 2 - 1)
    alphas = pixel.scheduler.alphas_cumprod
    forward = pixel.unet.forward

    def oracle(sample, timestep, encoder_hidden_states=None, return_dict=True, **kwargs):
        noisy = sample[:, -x0.shape[1]:]
        a = alphas[int(timestep)]
        return ((a.sqrt() * noisy - x0) / (1 - a).sqrt(),)

    pixel.unet.forward = oracle
    try:
        out = pixel(rgb(32, 32), num_inference_steps=4, output_trajectory=True, generator=torch.Generator())
    finally:
        pixel.unet.forward = forward
    for point in out.trajectories[0]:
        np.testing.assert_allclose(point.prediction[0], target[0, 0].numpy(), atol=1e-4)
    assert np.abs(out.prediction[0, :, :, 0] - target[0, 0].numpy()).max() < 0.05
