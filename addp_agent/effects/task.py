"""What a task gives the effects study: training, sampler scoring on a split, and the metric-vs-timestep curve."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel

from addp_agent.effects.config import EffectsConfig, SamplerSetting, Variant


class Metric(NamedTuple):
    key: str
    label: str
    higher_is_better: bool
    percent: bool  # shown ×100


class Scores(BaseModel):
    """Metrics of one sampler setting over a list of samples, and the ids of the samples scored."""

    metrics: dict[str, float | int | None]
    ids: list[str]


class Curve(BaseModel):
    """A metric of the x̂₀ decoded after each denoising step (noisiest first)."""

    metric: str
    timesteps: list[int]
    values: list[float]
    n: int


class EffectsTask(Protocol):
    name: str
    primary: Metric  # chooses the sampler settings on val
    metrics: tuple[Metric, ...]  # shown for test
    curve_metric: Metric

    def train_config(self, config: EffectsConfig, variant: Variant, seed_index: int, folder: Path) -> BaseModel:
        """The validated training config of one run (nothing is written)."""

    def train(self, train_config: Any, progress: bool) -> Path:
        """Train or resume; the folder of the exported EMA pipeline."""

    def load(self, model_dir: Path) -> Any: ...

    def samples(self, config: EffectsConfig, split: str, n: int) -> list: ...

    def score(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Scores: ...

    def curve(self, config: EffectsConfig, pipe: Any, samples: list, setting: SamplerSetting) -> Curve: ...

    def unet_passes(self, config: EffectsConfig, setting: SamplerSetting) -> int:
        """UNet evaluations per sample (the cost that breaks ties between equally good settings)."""

