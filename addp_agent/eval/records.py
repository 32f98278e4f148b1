"""Per-sample evaluation records (one JSON line each) and the run settings they belong to.

Every round keeps its exact pixel counts (``intersection``, ``union``) and whether it found a target, and every sample
its number of ground-truth targets, so all metrics (classic and generalized) can be recomputed from the records
alone, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from addp_agent.critic.names import ALIASES, CHOICES_HELP, CRITIC_NAMES
from addp_agent.critic.noisy import ErrorRates
from addp_agent.errors import UserError, validation_message
from addp_agent.limits import MAX_RESOLUTION, Rounds, Seed, Steps
from addp_agent.models.config import SchedulerName

if TYPE_CHECKING:
    from addp_agent.engine.decode import MaskDecoding

CriticName = Literal["oracle", "noisy", "self", "vlm", "paper", "none"]
# engine.guidance.CorrectionMode, spelled out so that registering `addp eval` imports neither torch nor diffusers
# (tests/test_correction_cli.py checks that the two agree)
CorrectionModeName = Literal["additive", "replace", "paper"]
CRITICS: tuple[str, ...] = CRITIC_NAMES


class EvalConfig(BaseModel):
    """Settings of one evaluation run (saved as ``config.json``; a resume must match them)."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(description="shapes:<dir>, shapes-gen:<n>[:<seed>[:<size>]], "
                                  "scenes-gen:<n>[:<seed>[:<size>[:<preset>[:<mode>]]]], scenes:<dir>, "
                                  "refer:<root>:<dataset>:<splitBy>, cris:<root>:<dataset>, grefcoco:<root>, "
                                  "clevr-ref:<root>.")
    split: str = "val"
    model: str | None = Field(None, description="Model folder, .ckpt/.safetensors file or hub id (default: the "
                                             "bundled model).")
    critic: CriticName = Field("oracle", description=CHOICES_HELP + ".")
    critic_accuracy: float | None = Field(None, ge=0.0, le=1.0, description=(
        "noisy critic: every error rate is 1 − this (override one with --false-accept, --false-reject, "
        "--wrong-name)."))
    false_accept: float | None = Field(None, ge=0.0, le=1.0, description="noisy critic: P(accept | a wrong mask).")
    false_reject: float | None = Field(None, ge=0.0, le=1.0, description="noisy critic: P(revise | a right mask).")
    wrong_name: float | None = Field(None, ge=0.0, le=1.0, description="noisy critic: P(another object is named).")
    critic_seed: Seed = Field(0, description="noisy critic: seed of its errors (with each sample's id and round).")
    self_seeds: int = Field(4, ge=2, le=16, description="self critic: readings compared (the round's seed and "
                                                        "the next ones).")
    self_accept: float = Field(0.8, gt=0.0, le=1.0, description="self critic: accept at this agreement (mean IoU "
                                                               "with the other readings).")
    max_rounds: Rounds = 3
    steps: Steps | None = Field(None, description="Denoising steps (default: the model's).")
    resume_step: int | None = Field(None, ge=1, description="k: corrected rounds resume from the first round's "
                                                            "state after step k (below the steps; default: restart).")
    correction_steps: Steps | None = Field(None, description="Steps of the restarted rounds after the first (default: "
                                                             "the model's, else --steps).")
    correction_mode: CorrectionModeName | None = Field(None, description="How corrections guide: additive | replace | "
                                                                     "paper (default: the model's).")
    limit: int | None = Field(None, ge=1, description="Evaluate the first K samples.")
    batch_size: int = Field(8, ge=1, description="Samples per round-1 pipeline call.")
    seed: Seed = 0
    accept_iou: float = Field(0.9, gt=0.0, le=1.0, description="The oracle (and noisy) critic accepts masks with "
                                                                "IoU ≥ this.")
    strict: bool = Field(False, description="Fail on the first unreadable sample instead of skipping it.")
    protocol: str | None = Field(None, description="Start from a named protocol's settings (paper: the ADDP paper's "
                                                   "RIS evaluation) or a .json preset; flags given override it.")
    resolution: int | None = Field(None, ge=8, description="Working resolution in px (default: the model's).")
    scheduler: SchedulerName | None = Field(None, description="Sampler (default: the model's).")
    timestep_spacing: Literal["linspace", "leading", "trailing"] | None = Field(
        None, description="Timestep spacing of the sampler (default: the model's).")
    guidance_scale: float | None = Field(None, ge=0.0, description="Text guidance (default: the model's).")
    image_guidance_scale: float | None = Field(None, ge=0.0, description="Image guidance (default: the model's).")
    decode_size: int | None = Field(None, ge=1, le=MAX_RESOLUTION, description=(
        "Decode masks and score them at this size² (the paper: 512; default: each image's own size)."))
    threshold: float = Field(50.0, gt=0.0, description="RGB distance to pure red below which a pixel is mask.")

    @property
    def decoding(self) -> MaskDecoding:
        """The paint → mask rule of this run."""
        from addp_agent.engine.decode import MaskDecoding  # torch-free config module: the engine loads on use

        return MaskDecoding(self.decode_size, self.threshold)

    @field_validator("critic", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return ALIASES.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _resume_below_steps(self) -> EvalConfig:
        if self.resume_step is not None and self.steps is not None and self.resume_step >= self.steps:
            raise ValueError(f"resume_step must be below steps ({self.steps}), got {self.resume_step}")
        if self.resume_step is not None and self.correction_steps is not None:
            raise ValueError("correction_steps and resume_step exclude each other: a resumed round continues round "
                             "1's schedule")
        return self

    @model_validator(mode="after")
    def _noisy_rates(self) -> EvalConfig:
        rates = (self.critic_accuracy, self.false_accept, self.false_reject, self.wrong_name)
        if self.critic == "noisy" and all(r is None for r in rates):
            raise ValueError("the noisy critic needs --critic-accuracy (or --false-accept, --false-reject, "
                             "--wrong-name)")
        return self

    def error_rates(self) -> ErrorRates:
        """The noisy critic's rates: 1 − ``critic_accuracy`` each (0 when unset), then the explicit ones."""
        base = ErrorRates.from_accuracy(1.0 if self.critic_accuracy is None else self.critic_accuracy)
        given = {k: v for k in ("false_accept", "false_reject", "wrong_name") if (v := getattr(self, k)) is not None}
        return base.model_copy(update=given)

    def identity(self) -> dict[str, Any]:
        """What must not change between an interrupted run and its resume (``limit`` may grow)."""
        return self.model_dump(exclude={"limit", "strict"})


class RoundRecord(BaseModel):
    """One round of one sample: exact counts against the ground truth, whether a target was found (its mask is empty
    when not), plus what the critic said. ``iou`` is 1 when the truth and the prediction are both empty."""

    round: int
    intersection: int
    union: int
    iou: float
    found: bool
    confidence: float
    corrections: list[str]
    critique: dict[str, Any] | None = None
    critic_error: str | None = None
    mask_rle: dict[str, Any]
    denoise_s: float = 0.0
    critic_s: float = 0.0


class SampleRecord(BaseModel):
    """One sample's evaluation. ``error`` is set (and ``rounds`` empty) when the sample could not be run."""

    index: int  # position in the (limited) data stream, 0-based
    sample_id: str
    image_id: str = ""
    ref_id: str = ""
    expression: str
    targets: int = Field(ge=0, description="ground-truth targets: 0 (no target), 1, or more")
    family: str = ""
    confusable: bool = False
    error: str | None = None
    stop_reason: str = ""
    stop_detail: str = ""
    best_round: int = 0
    rounds: list[RoundRecord] = []
    unet_calls: int = 0  # UNet calls the sample needed (its round-1 batch's calls count once)
    unet_rows: int = 0  # images through the UNet for this sample (its share of round 1, its critic, later rounds)
    unet_pass_rows: int = 0  # rows of one uncorrected step of one sample: unet_rows / this = passes
    in_domain: bool | None = Field(None, description="the model's domain check of the image (None: not checked)")
    domain_score: float | None = None


def read_records(paths: Iterable[Path]) -> dict[int, SampleRecord]:
    """Records from JSON-lines files, first occurrence of an index wins; torn or foreign lines are ignored."""
    found: dict[int, SampleRecord] = {}
    for path in paths:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            try:
                record = SampleRecord.model_validate_json(line)
            except ValueError:
                continue  # a line cut short by an interruption
            found.setdefault(record.index, record)
    return found


def append_records(path: Path, records: list[SampleRecord]) -> None:
    """Append records in one write (a batch lands whole or not at all, bar a torn last line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):  # drop a line torn by an earlier interruption
            path.write_bytes(data[: data.rfind(b"\n") + 1])
    text = "".join(r.model_dump_json() + "\n" for r in records)
    with path.open("a") as handle:
        handle.write(text)
        handle.flush()


def write_records(path: Path, records: Iterable[SampleRecord]) -> None:
    """Write records (sorted by the caller) as ``samples.jsonl``."""
    path.write_text("".join(r.model_dump_json() + "\n" for r in records))


def check_config(out: Path, config: EvalConfig) -> None:
    """Refuse to resume a run made with other settings."""
    saved = out / "config.json"
    if not saved.is_file():
        return
    try:
        previous = EvalConfig.model_validate(json.loads(saved.read_text()))
    except ValidationError as error:  # another command's config.json (a model folder, a training run)
        raise UserError(f"{saved}: not an evaluation's settings ({validation_message(error, limit=2)}); use a new "
                        f"--out") from None
    except ValueError as error:
        raise UserError(f"{saved}: unreadable run settings ({error}); use a new --out") from None
    if previous.identity() != config.identity():
        changed = sorted(k for k, v in config.identity().items() if previous.identity().get(k) != v)
        raise UserError(f"{out} holds a run with other settings ({', '.join(changed)}); use a new --out")
