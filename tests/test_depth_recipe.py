"""The ADDP depth recipe, pinned: normalisation, 31-px blur of σ(t), noisy input from the blurred GT, target from the
clean GT, depth timesteps, multi-resolution noise, masked MSE."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from scipy.ndimage import gaussian_filter

from addp_agent.models.depth_build import PixelDepthModelConfig, build_pixel_depth_pipeline
from addp_agent.train.depth_data import DepthTrainingData
from addp_agent.train.depth_loop import DepthTrainConfig, batch_loss, make_batch, make_sampler
from addp_agent.train.depth_recipe import (
    blur_depth,
    latent_loss_mask,
    masked_mse,
    multi_resolution_noise,
    normalize_depth,
    pixel_loss_mask,
    training_pair,
)
from addp_agent.train.timesteps import DEPTH_GROUP_WEIGHTS

SIZE = 32


def test_normalisation_uses_2_and_98_percent_quantiles_of_valid_pixels():
    depth = np.arange(1, 101, dtype=np.float64).reshape(10, 10)
    valid = np.ones((10, 10), bool)
    depth[0, 0], valid[0, 0] = 1e6, False  # ignored by the quantiles
    norm, valid_out = normalize_depth(depth, valid)
    values = np.arange(2, 101, dtype=np.float64)  # the 99 valid values
    low, high = 2 + 0.02 * 98, 2 + 0.98 * 98  # linear interpolation between order statistics
    assert np.quantile(values, [0.02, 0.98]) == pytest.approx([low, high])
    assert norm[5, 5] == pytest.approx((depth[5, 5] - low) / (high - low) * 2 - 1, abs=1e-6)
    assert norm[0, 1] == -1.0 and norm[9, 9] == 1.0 and norm[0, 0] == 1.0  # clipped
    assert not valid_out[0, 0] and valid_out.sum() == 99
    zero, valid_zero = normalize_depth(np.zeros((2, 2)), np.ones((2, 2), bool))
    assert not valid_zero.any() and (zero == -1).all()


@pytest.mark.parametrize("sigma", [0.7, 2.5, 9.0])
def test_blur_is_a_31_tap_gaussian_with_reflected_borders(sigma):
    depth = torch.rand(1, 1, 40, 44, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.tensor([999])
    # pick U so that σ = 10·(t+1)/T·U is the wanted value: draw U with the same generator state
    generator = torch.Generator().manual_seed(3)
    u = float(torch.rand(1, generator=torch.Generator().manual_seed(3)))
    blurred, sigmas = blur_depth(depth, t, 1000, intensity=sigma / u, generator=generator)
    assert float(sigmas[0]) == pytest.approx(sigma, rel=1e-5)
    unit = (depth[0, 0].numpy().astype(np.float64) + 1) / 2
    expected = gaussian_filter(unit, sigma, mode="mirror", truncate=15 / sigma) * 2 - 1  # radius 15 → 31 taps
    np.testing.assert_allclose(blurred[0, 0].numpy(), expected, atol=2e-6)


def test_blur_sigma_is_uniform_times_10_t_plus_1_over_T():
    t = torch.randint(0, 1000, (20_000,), generator=torch.Generator().manual_seed(0))
    _, sigmas = blur_depth(torch.zeros(20_000, 1, 16, 16), t, 1000, generator=torch.Generator().manual_seed(1))
    u = sigmas / (10 * (t.float() + 1) / 1000)
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01) and float(u.std()) == pytest.approx(12**-0.5, abs=0.01)


def test_training_pair_v_target_from_the_clean_sample():
    alphas = torch.linspace(0.99, 0.01, 1000)
    clean, augmented, noise = torch.randn(3, 2, 4, 5, 5).unbind(0)
    t = torch.tensor([10, 900])
    noisy, target = training_pair(alphas, clean, augmented, noise, t, "v_prediction")
    a = alphas[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(noisy, a.sqrt() * augmented + (1 - a).sqrt() * noise)
    torch.testing.assert_close(target, a.sqrt() * noise - (1 - a).sqrt() * clean)
    _, x0 = training_pair(alphas, clean, augmented, noise, t, "sample")
    torch.testing.assert_close(x0, clean)


def test_masked_mse_by_hand():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [1.0, 100.0]])
    mask = torch.tensor([[True, True], [True, False]])
    assert float(masked_mse(prediction, target, mask)) == pytest.approx((1 + 0 + 4) / 3)
    assert float(masked_mse(prediction, target, torch.zeros_like(mask))) == 0.0


def test_loss_masks():
    valid = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0, 1] = False
    packed = pixel_loss_mask(valid, 2)
    assert packed.shape == (1, 4, 2, 2) and int(packed.sum()) == 15 and not bool(packed[0, 1, 0, 0])
    latent = latent_loss_mask(valid, 2, 4)
    assert latent.shape == (1, 4, 2, 2) and not bool(latent[:, :, 0, 0].any()) and int(latent.sum()) == 12


def test_multi_resolution_noise_is_unit_and_low_frequency_heavier():
    def neighbour_correlation(noise):
        return float(torch.corrcoef(torch.stack([noise[..., :-1].flatten(), noise[..., 1:].flatten()]))[0, 1])

    plain = multi_resolution_noise((8, 1, 64, 64), 0.0, torch.Generator().manual_seed(0))
    strong = multi_resolution_noise((8, 1, 64, 64), torch.full((8,), 0.9), torch.Generator().manual_seed(0))
    assert float(strong.std()) == pytest.approx(1.0, abs=1e-5) and strong.shape == (8, 1, 64, 64)
    assert neighbour_correlation(strong) > neighbour_correlation(plain) + 0.2


# ------------------------------------------------------------------------------- the training batch, pinned
@pytest.fixture(scope="module")
def pipe():
    config = PixelDepthModelConfig(resolution=SIZE, patch_size=2, block_out_channels=(16, 32),
                                   down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                   up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4)
    return build_pixel_depth_pipeline(config)


@pytest.fixture(scope="module")
def one_sample():
    """One training sample (so every batch row is known): a ramp with a sharp step, valid but for a corner."""
    ramp = np.tile(np.linspace(-1, 1, SIZE, dtype=np.float32), (SIZE, 1))
    ramp[:, SIZE // 2 :] += 0.5
    valid = np.ones((SIZE, SIZE), bool)
    valid[:4, :4] = False
    images = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
    return DepthTrainingData(torch.from_numpy(images), torch.from_numpy(np.clip(ramp, -1, 1)[None]).half(),
                             torch.from_numpy(valid[None]))


def batch_for(pipe, data, batch_size=16, seed=0, **overrides):
    config = DepthTrainConfig(out="unused", batch_size=batch_size, hflip=0.0, **overrides)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    sampler = make_sampler(config, scheduler)
    return make_batch(config, pipe, data, sampler, scheduler.alphas_cumprod, torch.Generator().manual_seed(seed),
                      torch.device("cpu")), scheduler.alphas_cumprod


def test_noisy_input_is_built_from_the_blurred_ground_truth(pipe, one_sample):
    batch, alphas = batch_for(pipe, one_sample)
    depth = one_sample.depth[0].double().numpy()
    assert (batch.sigmas > 0).all() and float(batch.sigmas.max()) > 2  # blur is on
    for k in range(batch.t.shape[0]):
        sigma = float(batch.sigmas[k])
        expected = gaussian_filter((depth + 1) / 2, sigma, mode="mirror", truncate=15 / sigma) * 2 - 1
        packed = torch.nn.functional.pixel_unshuffle(torch.from_numpy(expected).float()[None, None], 2)[0]
        torch.testing.assert_close(batch.augmented[k], packed, atol=2e-5, rtol=0)
        a = alphas[batch.t[k]]
        torch.testing.assert_close(batch.noisy[k], a.sqrt() * packed + (1 - a).sqrt() * batch.noise[k], atol=2e-5,
                                   rtol=0)
    blurred_much = batch.sigmas > 2
    assert (batch.augmented[blurred_much] - batch.clean[blurred_much]).abs().amax() > 0.1


def test_target_is_built_from_the_clean_ground_truth(pipe, one_sample):
    batch, alphas = batch_for(pipe, one_sample)
    clean = torch.nn.functional.pixel_unshuffle(one_sample.depth[None].float(), 2)[0]
    a = alphas[batch.t].view(-1, 1, 1, 1)
    torch.testing.assert_close(batch.clean, clean.expand_as(batch.clean))
    torch.testing.assert_close(batch.target, a.sqrt() * batch.noise - (1 - a).sqrt() * clean, atol=1e-5, rtol=0)
    from_blurred = a.sqrt() * batch.noise - (1 - a).sqrt() * batch.augmented
    heavy = (batch.sigmas > 2) & (batch.t < 800)  # where the clean and blurred targets differ visibly
    assert heavy.any() and (batch.target[heavy] - from_blurred[heavy]).abs().amax() > 0.05
    x0_batch, _ = batch_for(pipe, one_sample, parameterization="sample")
    torch.testing.assert_close(x0_batch.target, clean.expand_as(x0_batch.target))


def test_without_augmentation_input_and_target_share_the_clean_sample(pipe, one_sample):
    batch, _ = batch_for(pipe, one_sample, augment=False)
    assert (batch.sigmas == 0).all() and torch.equal(batch.augmented, batch.clean)


@pytest.mark.parametrize("preset", ["depth", "uniform"])
def test_training_timesteps_follow_the_preset(pipe, one_sample, preset):
    draws = torch.cat([batch_for(pipe, one_sample, batch_size=512, seed=s, timesteps=preset, augment=False,
                                 multires_noise=False)[0].t for s in range(8)])
    mass = np.bincount((draws // 100).numpy(), minlength=10) / draws.numel()
    weights = np.array(DEPTH_GROUP_WEIGHTS if preset == "depth" else [1] * 10, dtype=np.float64)
    np.testing.assert_allclose(mass, weights / weights.sum(), atol=0.015)  # 4 096 draws; uniform differs by ≥ 0.06


def test_the_objective_is_the_masked_mse_of_the_unet_output(pipe, one_sample):
    batch, _ = batch_for(pipe, one_sample, batch_size=4)
    embeds = pipe.empty_text_embeds()
    loss = batch_loss(pipe.unet, batch, embeds)
    with torch.no_grad():
        output = pipe.unet(torch.cat([batch.condition, batch.noisy], 1), batch.t,
                           encoder_hidden_states=embeds.expand(4, -1, -1)).sample
    mask = batch.mask.float()
    expected = ((output - batch.target) ** 2 * mask).sum() / mask.sum()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    assert int(batch.mask.sum()) == 4 * (SIZE * SIZE - 16)  # the invalid corner is out of the loss
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pipe.unet.parameters())
    pipe.unet.zero_grad(set_to_none=True)
    assert math.isfinite(float(loss))
