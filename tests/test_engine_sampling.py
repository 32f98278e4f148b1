"""Sampling setup: the x₀ Euler-ancestral step, scheduler switching, the working resolution, fixed-size decoding."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

from addp_agent.engine import ADDPPipeline, MaskDecoding
from addp_agent.engine.sampling import EulerAncestralScheduler, set_resolution, switch_scheduler, x0_capable
from addp_agent.errors import UserError

SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def test_x0_step_equals_the_stock_epsilon_step():
    """From x̂₀ = x − σ·ε the x₀ scheduler lands where the stock one lands from ε, noise included."""
    stock = EulerAncestralDiscreteScheduler(**SD_BETAS, prediction_type="epsilon")
    ours = EulerAncestralScheduler(**SD_BETAS, prediction_type="sample")
    for scheduler in (stock, ours):
        scheduler.set_timesteps(6)
    x_stock = x_ours = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * stock.init_noise_sigma
    eps_source = torch.Generator().manual_seed(2)
    for t in stock.timesteps:
        eps = torch.randn(2, 4, 8, 8, generator=eps_source)
        sigma = stock.sigmas[stock.step_index if stock.step_index is not None else 0]
        a = stock.step(eps, t, x_stock, generator=torch.Generator().manual_seed(int(t)))
        b = ours.step(x_ours - sigma * eps, t, x_ours, generator=torch.Generator().manual_seed(int(t)))
        torch.testing.assert_close(b.pred_original_sample, a.pred_original_sample, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b.prev_sample, a.prev_sample, rtol=1e-4, atol=1e-4)
        x_stock, x_ours = a.prev_sample, b.prev_sample


def test_stock_euler_ancestral_cannot_step_x0_but_x0_capable_can():
    stock = EulerAncestralDiscreteScheduler(**SD_BETAS, prediction_type="sample")
    stock.set_timesteps(2)
    with pytest.raises(NotImplementedError):
        stock.step(torch.zeros(1, 4, 2, 2), stock.timesteps[0], torch.zeros(1, 4, 2, 2))
    upgraded = x0_capable(stock)
    assert isinstance(upgraded, EulerAncestralScheduler) and upgraded.config.prediction_type == "sample"
    epsilon = EulerAncestralDiscreteScheduler(**SD_BETAS)
    assert x0_capable(epsilon) is epsilon
    ddim = DDIMScheduler(**SD_BETAS, prediction_type="sample")
    assert x0_capable(ddim) is ddim


def test_an_x0_model_with_a_stock_euler_ancestral_folder_samples(tiny_latent, tmp_path):
    """What fine-tuning InstructPix2Pix with the x₀ objective saves: the stock class, configured for x₀."""
    tiny_latent.register_modules(scheduler=EulerAncestralDiscreteScheduler.from_config(
        tiny_latent.scheduler.config, prediction_type="sample"))
    tiny_latent.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["scheduler"] == \
        ["diffusers", "EulerAncestralDiscreteScheduler"]
    pipe = ADDPPipeline.from_pretrained(tmp_path)
    output = pipe("the thing", np.zeros((24, 40, 3), dtype=np.uint8), num_inference_steps=3, output_type="np",
                  generator=torch.Generator().manual_seed(0), show_progress=False)
    assert np.isfinite(output.images).all() and output.masks[0].shape == (24, 40)


def test_switch_scheduler_keeps_the_noise_schedule_and_prediction_type():
    base = DDIMScheduler(**SD_BETAS, prediction_type="sample", timestep_spacing="trailing")
    euler = switch_scheduler(base, "euler_ancestral", timestep_spacing="linspace")
    assert type(euler) is EulerAncestralDiscreteScheduler
    assert (euler.config.prediction_type, euler.config.timestep_spacing) == ("sample", "linspace")
    torch.testing.assert_close(euler.alphas_cumprod, base.alphas_cumprod)
    euler.set_timesteps(100)
    assert float(euler.timesteps[0]) == 999.0 and float(euler.timesteps[-1]) == 0.0  # k-diffusion's t grid
    assert type(switch_scheduler(euler, "ddim")) is DDIMScheduler
    respaced = switch_scheduler(base, timestep_spacing="leading")
    assert type(respaced) is DDIMScheduler and respaced.config.timestep_spacing == "leading"
    with pytest.raises(UserError, match="unknown scheduler 'dpm'"):
        switch_scheduler(base, "dpm")


def test_set_resolution_changes_the_working_size_and_refuses_misfits(tiny_latent):
    assert tiny_latent.resolution == 32  # sample size 16 × VAE factor 2
    set_resolution(tiny_latent, 64)
    assert tiny_latent.resolution == 64
    encoded = tiny_latent.encode("the thing", np.zeros((20, 30, 3), dtype=np.uint8))
    assert encoded.image_latents.shape[-2:] == (32, 32)
    with pytest.raises(UserError, match="multiple of 4 px"):
        set_resolution(tiny_latent, 50)


def test_pipeline_decodes_at_a_fixed_size_with_the_decoder_rule(tiny_latent):
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    kwargs = dict(num_inference_steps=2, output_type="np", show_progress=False, threshold=120.0)
    fixed = tiny_latent("the thing", image, generator=torch.Generator().manual_seed(0), decode_size=48, **kwargs)
    plain = tiny_latent("the thing", image, generator=torch.Generator().manual_seed(0), **kwargs)
    painted = (np.clip(fixed.images[0], 0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(fixed.images, plain.images)
    assert np.array_equal(fixed.masks[0], MaskDecoding(48, 120.0).decode(painted, (24, 40)).mask)
    assert plain.masks[0].shape == (24, 40) and fixed.masks[0].shape == (48, 48)
