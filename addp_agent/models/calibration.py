"""A model's calibration, fitted on validation data and kept with the model as ``calibration.json``.

One optional section per calibrated quantity, so the file grows without breaking older sections:

- ``found``: when a target counts as found (generalized RIS). The decoder computes paint statistics
  (:func:`addp_agent.engine.decode.paint_statistics`); a target is found when the section's statistic reaches its
  threshold. Fitted by ``addp calibrate`` (:func:`fit_found`): the statistic and threshold that maximise the
  objective on the validation samples, the lowest such threshold on ties. The objective is gIoU (GRES's headline
  metric; never below the uncalibrated rule's on the fit samples, since threshold 0 is a candidate) or the balanced
  accuracy ½·(N-acc + T-acc), which files written before the choice existed used.

- ``confidence``: the map from the decoder's confidence to the probability that the mask is right (IoU ≥ 0.5;
  for a no-target expression: nothing found), Platt scaling fitted on validation rounds
  (:mod:`addp_agent.reliability`), with the expected calibration error before and after.
- ``domain``: the model's domain (``synthetic-shapes``, ``synthetic-scenes3d``) and the image statistics that tell
  its images from others (:class:`addp_agent.domain.DomainCheck`), fitted on the model's training images.

A model folder without ``calibration.json`` keeps the uncalibrated rule (found = something is painted), the raw
decoder confidence, and the ``open`` domain (no check).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from addp_agent.domain import DomainCheck
from addp_agent.engine.decode import PAINT_STATISTICS, FoundRule, PaintStatistic
from addp_agent.errors import ModelLoadError, UserError
from addp_agent.reliability import ConfidenceMap

CALIBRATION_FILE = "calibration.json"
FoundObjective = Literal["gIoU", "balanced"]
FOUND_OBJECTIVES: tuple[FoundObjective, ...] = ("gIoU", "balanced")
FOUND_RULES: dict[FoundObjective, str] = {
    "balanced": "maximise ½·(N-acc + T-acc) on the fit samples; lowest threshold on ties",
    "gIoU": "maximise gIoU (mean per-sample IoU; a no-target sample scores 1 when nothing is found) on the fit "
            "samples; lowest threshold on ties",
}


class FoundFit(BaseModel):
    """One statistic's best threshold on the fit samples, and the accuracies it reaches there."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    statistic: PaintStatistic
    threshold: float = Field(ge=0.0)
    n_acc: float = Field(description="no-target samples answered 'not found', fraction")
    t_acc: float = Field(description="samples with targets answered 'found', fraction")
    g_iou: float | None = Field(None, description="gIoU on the fit samples under this rule (None: IoUs not given)")

    @property
    def balanced(self) -> float:
        return (self.n_acc + self.t_acc) / 2

    def score(self, objective: FoundObjective) -> float:
        if objective == "balanced":
            return self.balanced
        if self.g_iou is None:
            raise ValueError("the gIoU objective needs each sample's IoU")
        return self.g_iou


class FoundCalibration(FoundFit):
    """The ``found`` section: the chosen rule, what it was fitted on, and the uncalibrated accuracies beside it."""

    objective: FoundObjective = "balanced"
    rule: str = FOUND_RULES["balanced"]
    data: str
    split: str
    steps: int = Field(description="denoising steps of the fit's single rounds")
    n: int
    n_no_target: int
    n_target: int
    uncalibrated_n_acc: float
    uncalibrated_t_acc: float
    uncalibrated_g_iou: float | None = None
    candidates: list[FoundFit] = Field(default_factory=list, description="each statistic's best fit")

    def found_rule(self) -> FoundRule:
        return FoundRule(self.statistic, self.threshold)


class ConfidenceCalibration(BaseModel):
    """The ``confidence`` section: ``p = σ(slope·logit(c) + bias)`` and how well it and the raw score fit."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    slope: float = Field(gt=0)
    bias: float
    target: str = "IoU ≥ 0.5 with the ground truth (no-target expressions: nothing found)"
    data: str
    split: str
    steps: int = Field(description="denoising steps of the fit's single rounds")
    n: int
    accuracy: float = Field(description="fraction of the fit rounds that are right")
    ece_before: float = Field(description="ECE of the raw decoder confidence on the fit rounds")
    ece_after: float = Field(description="ECE of the mapped confidence on the fit rounds")
    test: dict[str, float | int | str] | None = Field(None, description="ECE before/after on unseen data")

    def confidence_map(self) -> ConfidenceMap:
        return ConfidenceMap(self.slope, self.bias)


class Calibration(BaseModel):
    """Everything calibrated for one model (``calibration.json``); each section is optional."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    version: Literal[1] = 1
    found: FoundCalibration | None = None
    confidence: ConfidenceCalibration | None = None
    domain: DomainCheck | None = None

    def found_rule(self) -> FoundRule | None:
        return self.found.found_rule() if self.found is not None else None

    def confidence_map(self) -> ConfidenceMap | None:
        return self.confidence.confidence_map() if self.confidence is not None else None

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Calibration | None:
        """The folder's calibration; ``None`` without a ``calibration.json``; :class:`ModelLoadError` if unreadable."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, ValidationError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelLoadError(f"{path}: unreadable calibration ({message}); refit it with `addp calibrate` or "
                                 "delete it") from None

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``calibration.json`` into ``folder`` atomically (a temporary file, then a rename)."""
        path = Path(folder) / CALIBRATION_FILE
        staging = path.with_name(f".{CALIBRATION_FILE}.{os.getpid()}.tmp")
        try:
            staging.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")
            staging.replace(path)
        finally:
            staging.unlink(missing_ok=True)
        return path


def _scores(values: np.ndarray, painted: np.ndarray, no_target: np.ndarray, ious: np.ndarray | None,
            threshold: float) -> tuple[float, float, float | None]:
    """N-acc, T-acc and (with ``ious``: each painted mask's IoU with the truth) gIoU when found is
    ``painted and value ≥ threshold``."""
    found = painted & (values >= threshold)
    g_iou = None if ious is None else float(np.where(no_target, ~found, found * ious).mean())
    return float((~found[no_target]).mean()), float(found[~no_target].mean()), g_iou


def fit_statistic(statistic: PaintStatistic, values: Sequence[float], painted: Sequence[bool],
                  targets: Sequence[int], ious: Sequence[float] | None = None,
                  objective: FoundObjective = "balanced") -> FoundFit:
    """The threshold on ``statistic`` with the best ``objective`` (lowest on ties). Candidates: 0 (the uncalibrated
    rule), the midpoints between consecutive distinct values of painted samples, and one above all. ``ious`` (each
    sample's painted mask against its truth) is needed for the gIoU objective."""
    if objective == "gIoU" and ious is None:
        raise ValueError("the gIoU objective needs each sample's IoU")
    v, p, no_target = np.asarray(values, float), np.asarray(painted, bool), np.asarray(targets) == 0
    iou = None if ious is None else np.asarray(ious, float)
    distinct = np.unique(v[p])
    candidates = [0.0, *((distinct[1:] + distinct[:-1]) / 2).tolist(),
                  *([float(distinct[-1]) * 1.5 + 1e-6] if distinct.size else [])]
    best: FoundFit | None = None
    for threshold in candidates:
        n_acc, t_acc, g_iou = _scores(v, p, no_target, iou, threshold)
        fit = FoundFit(statistic=statistic, threshold=float(threshold), n_acc=n_acc, t_acc=t_acc, g_iou=g_iou)
        if best is None or fit.score(objective) > best.score(objective):
            best = fit
    assert best is not None
    return best


def fit_found(statistics: Sequence[dict[str, float]], targets: Sequence[int], data: str, split: str,
              steps: int, ious: Sequence[float] | None = None, objective: FoundObjective = "balanced"
              ) -> FoundCalibration:
    """Fit the ``found`` section from each sample's paint statistics (decoded without a found rule), its number of
    ground-truth targets and (for gIoU) its painted mask's IoU; needs samples without a target and with one or
    more."""
    painted = [s["area_fraction"] > 0 for s in statistics]
    n_no_target = sum(1 for t in targets if t == 0)
    if not n_no_target or n_no_target == len(targets):
        raise UserError(f"calibration needs samples with and without targets; {data} split {split} gave "
                        f"{n_no_target} no-target of {len(targets)} (use a generalized source, e.g. "
                        "scenes-gen:N:SEED:SIZE:default:generalized)")
    fits = [fit_statistic(name, [s[name] for s in statistics], painted, targets, ious,  # type: ignore[arg-type]
                          objective) for name in PAINT_STATISTICS]
    best = max(fits, key=lambda f: f.score(objective))  # the first statistic on ties
    n_acc, t_acc, g_iou = _scores(np.zeros(len(targets)), np.asarray(painted, bool), np.asarray(targets) == 0,
                                  None if ious is None else np.asarray(ious, float), 0.0)
    return FoundCalibration(**best.model_dump(), objective=objective, rule=FOUND_RULES[objective], data=data,
                            split=split, steps=steps, n=len(targets), n_no_target=n_no_target,
                            n_target=len(targets) - n_no_target, uncalibrated_n_acc=n_acc, uncalibrated_t_acc=t_acc,
                            uncalibrated_g_iou=g_iou, candidates=fits)
