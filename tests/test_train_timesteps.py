"""Timestep samplers match their definitions (official presets, analytic c_t, estimated files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from addp_agent.errors import UserError
from addp_agent.train.timesteps import TimestepSampler, timestep_probabilities


def bin_mass(probs: np.ndarray, groups: int = 10) -> np.ndarray:
    return probs.reshape(groups, -1).sum(axis=1)


def test_ris_preset_mass_per_bin_is_official_weights():
    probs = timestep_probabilities("ris")
    np.testing.assert_allclose(bin_mass(probs), np.array([1, 1, 1, 1, 1, 1, 1, 2, 4, 95]) / 108, atol=1e-12)
    assert np.ptp(probs[900:]) == 0 and probs[0] == pytest.approx(1 / 108 / 100)  # flat inside a bin


def test_depth_and_uniform_presets():
    np.testing.assert_allclose(bin_mass(timestep_probabilities("depth")),
                               np.array([1, 1, 3, 7, 13, 14, 8, 4, 22, 33]) / 106, atol=1e-12)
    np.testing.assert_allclose(timestep_probabilities("uniform"), np.full(1000, 1e-3))


def test_analytic_matches_formula_on_the_ddpm_schedule():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    betas = scheduler.betas.double().numpy()
    abar = scheduler.alphas_cumprod.double().numpy()  # float32 inside diffusers
    c = betas / (np.sqrt(abar) * np.sqrt(1 - abar))
    probs = timestep_probabilities("analytic", betas=betas)
    np.testing.assert_allclose(probs, c**2 / (c**2).sum(), rtol=1e-4)
    np.testing.assert_allclose(timestep_probabilities("analytic"), probs, rtol=1e-6)  # default = SD schedule
    # the per-bin masses the research notes derived for this schedule (%)
    np.testing.assert_allclose(100 * bin_mass(probs), [0.23, 0.09, 0.12, 0.19, 0.36, 0.78, 1.94, 5.57, 18.58, 72.14],
                               atol=0.006)


def test_sampler_draws_follow_the_ris_distribution():
    sampler = TimestepSampler.from_preset("ris")
    draws = sampler.sample(200_000, torch.Generator().manual_seed(0)).numpy()
    assert draws.min() >= 0 and draws.max() <= 999
    freq = np.bincount(draws // 100, minlength=10) / draws.size
    expected = np.array([1, 1, 1, 1, 1, 1, 1, 2, 4, 95]) / 108
    np.testing.assert_array_less(np.abs(freq - expected), 4 * np.sqrt(expected * (1 - expected) / draws.size))


def test_estimated_file_is_interpolated_and_squared(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"timesteps": [0, 999], "contribution": [1.0, 3.0]}))
    probs = timestep_probabilities("estimated", estimated_path=path)
    c = np.linspace(1.0, 3.0, 1000)
    np.testing.assert_allclose(probs, c**2 / (c**2).sum(), rtol=1e-12)
    assert probs[999] / probs[0] == pytest.approx(9.0)


@pytest.mark.parametrize("content, message", [
    (None, "no such contribution file"),
    ("not json", "not a contribution file"),
    (json.dumps({"timesteps": [1, 2]}), "not a contribution file"),
    (json.dumps({"timesteps": [5], "contribution": [1.0]}), "≥ 2 finite"),
    (json.dumps({"timesteps": [1, 2], "contribution": [0.0, 0.0]}), "total weight of 0.0"),
    (json.dumps({"timesteps": [1, 2], "contribution": [1e300, 1.0]}), "total weight of inf"),
    ('{"timesteps": [1, NaN], "contribution": [1.0, 1.0]}', "≥ 2 finite"),
    (json.dumps({"timesteps": [[1, 2]], "contribution": [[1.0, 1.0]]}), "≥ 2 finite"),
    ("a folder", "cannot read a contribution file"),
])
def test_bad_estimated_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    if content == "a folder":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        timestep_probabilities("estimated", estimated_path=path)


def test_unknown_preset_and_missing_file_argument():
    with pytest.raises(UserError, match="unknown timestep sampler"):
        timestep_probabilities("cosine")
    with pytest.raises(UserError, match="needs a contribution file"):
        timestep_probabilities("estimated")
