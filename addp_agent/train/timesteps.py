"""Training timestep samplers: uniform, the official ADDP presets, analytic DDPM contribution, estimated c_t².

Every sampler is a probability vector over the T training timesteps; t ~ Multinomial(p).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from addp_agent.errors import UserError

# Official ADDP code: piece-wise constant weights over ten 100-step bins, least noisy bin first.
RIS_GROUP_WEIGHTS = (1, 1, 1, 1, 1, 1, 1, 2, 4, 95)
DEPTH_GROUP_WEIGHTS = (1, 1, 3, 7, 13, 14, 8, 4, 22, 33)
PRESETS = ("uniform", "ris", "depth", "analytic", "estimated")


def group_weights_to_probs(weights: tuple[float, ...] | list[float], num_timesteps: int = 1000) -> np.ndarray:
    """Spread bin weights evenly over their timesteps; bin 0 holds t ∈ [0, T/G)."""
    groups = len(weights)
    if num_timesteps % groups:
        raise UserError(f"{num_timesteps} timesteps do not split into {groups} equal bins")
    per_step = np.repeat(np.asarray(weights, dtype=np.float64), num_timesteps // groups)
    return per_step / per_step.sum()


def scaled_linear_betas(num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> np.ndarray:
    """Stable Diffusion's β schedule."""
    return np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=np.float64) ** 2


def analytic_contribution(betas: np.ndarray) -> np.ndarray:
    """DDPM contribution factor c_t = β_t / (√ᾱ_t · √(1 − ᾱ_t)) of ε_θ(x_t) to the final x̂₀."""
    alphas_cumprod = np.cumprod(1.0 - betas)
    return betas / (np.sqrt(alphas_cumprod) * np.sqrt(1.0 - alphas_cumprod))


def load_estimated(path: str | Path, num_timesteps: int = 1000) -> np.ndarray:
    """Read c_t from a JSON file ``{"timesteps": [...], "contribution": [...]}`` (``addp analyze-timesteps``).

    Values at the listed timesteps are linearly interpolated over 0..T−1 and squared.
    """
    file = Path(path)
    try:
        data = json.loads(file.read_text())
        timesteps = np.asarray(data["timesteps"], dtype=np.float64)
        contribution = np.asarray(data["contribution"], dtype=np.float64)
    except FileNotFoundError:
        raise UserError(f"{file}: no such contribution file (make one with `addp analyze-timesteps`)") from None
    except OSError as error:  # a folder, no read permission
        raise UserError(f"{file}: cannot read a contribution file ({error.strerror or error})") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise UserError(f"{file}: not a contribution file with 'timesteps' and 'contribution' ({error})") from None
    if (timesteps.ndim != 1 or timesteps.size < 2 or timesteps.shape != contribution.shape
            or not np.all(np.isfinite(timesteps)) or not np.all(np.isfinite(contribution))):
        raise UserError(f"{file}: needs ≥ 2 finite (timestep, contribution) pairs of equal length")
    order = np.argsort(timesteps)
    c = np.interp(np.arange(num_timesteps), timesteps[order], np.abs(contribution[order]))
    return c


def timestep_probabilities(preset: str, num_timesteps: int = 1000, estimated_path: str | Path | None = None,
                           betas: np.ndarray | None = None) -> np.ndarray:
    """Probability of each training timestep for a named preset."""
    if preset == "uniform":
        probs = np.full(num_timesteps, 1.0 / num_timesteps)
    elif preset == "ris":
        probs = group_weights_to_probs(RIS_GROUP_WEIGHTS, num_timesteps)
    elif preset == "depth":
        probs = group_weights_to_probs(DEPTH_GROUP_WEIGHTS, num_timesteps)
    elif preset == "analytic":
        c = analytic_contribution(betas if betas is not None else scaled_linear_betas(num_timesteps))
        probs = c**2
    elif preset == "estimated":
        if estimated_path is None:
            raise UserError("--timesteps estimated needs a contribution file (--timesteps-file)")
        with np.errstate(over="ignore"):  # an overflow is refused below as an infinite total
            probs = load_estimated(estimated_path, num_timesteps) ** 2
    else:
        raise UserError(f"unknown timestep sampler {preset!r}; use one of {', '.join(PRESETS)}")
    total = probs.sum()
    if not 0 < total < np.inf:
        raise UserError(f"timestep sampler {preset!r} gives a total weight of {total} (it must be positive and "
                        "finite)")
    return probs / total


class TimestepSampler:
    """Draws training timesteps t ~ Multinomial(p)."""

    def __init__(self, probabilities: np.ndarray):
        self.probabilities = torch.as_tensor(probabilities, dtype=torch.float64)

    @classmethod
    def from_preset(cls, preset: str, num_timesteps: int = 1000, estimated_path: str | Path | None = None,
                    betas: np.ndarray | None = None) -> TimestepSampler:
        return cls(timestep_probabilities(preset, num_timesteps, estimated_path, betas))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.probabilities, n, replacement=True, generator=generator)
