"""Settings of `addp critic-study` (torch-free, so registering the command loads no engine)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from addp_agent.eval.records import EvalConfig
from addp_agent.limits import MAX_ROUNDS, Seed, Steps


class CriticStudyConfig(BaseModel):
    """Settings of a critic-accuracy study (each accuracy becomes one noisy-critic evaluation)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="Data source spec, as for `addp eval`.")
    split: str = "test"
    model: str | None = Field(None, description="Model folder, .ckpt/.safetensors file or hub id (default: the "
                                             "bundled model).")
    accuracies: list[float] = Field([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0], min_length=2, description=(
        "Comma-separated critic accuracies; each error rate of the noisy critic is 1 − accuracy."))
    max_rounds: Annotated[int, Field(strict=True, ge=2, le=MAX_ROUNDS)] = 3
    steps: Steps | None = Field(None, description="Denoising steps (default: the model's).")
    limit: int = Field(200, ge=1, description="Samples per accuracy.")
    batch_size: int = Field(16, ge=1, description="Samples per round-1 pipeline call.")
    seed: Seed = 0
    critic_seed: Seed = Field(0, description="Seed of the noisy critic's errors.")
    accept_iou: float = Field(0.9, gt=0.0, le=1.0, description="The oracle behind the noisy critic accepts at this "
                                                               "IoU.")

    @field_validator("accuracies")
    @classmethod
    def _accuracies(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"accuracies must lie in [0, 1], got {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"accuracies must differ, got {values}")
        return sorted(values)

    def eval_config(self, accuracy: float) -> EvalConfig:
        return EvalConfig(data=self.data, split=self.split, model=self.model, critic="noisy",
                          critic_accuracy=accuracy, critic_seed=self.critic_seed, max_rounds=self.max_rounds,
                          steps=self.steps, limit=self.limit, batch_size=self.batch_size, seed=self.seed,
                          accept_iou=self.accept_iou)
