"""Fit a model's calibration (``addp calibrate``) and write it into the model's calibration.json.

One pass of the model over the validation samples feeds the two model sections: every sample runs one uncorrected
round with the model's default settings (or ``steps``), seeded like the first round of ``addp eval``, decoded
without a found rule and without a confidence map. From those rounds:

- ``found`` (:func:`addp_agent.models.calibration.fit_found`): needs samples with and without targets; the
  objective is gIoU by default (each painted mask's IoU with its truth comes from the same rounds);
- ``confidence`` (:func:`addp_agent.reliability.fit_confidence_map`): is the round right (IoU ≥ 0.5 under the found
  rule the model will use; a no-target sample is right when nothing is found)?

The ``domain`` section needs no model: :func:`addp_agent.domain.fit_domain` on the model's training images, with
the validation images as the held-out set. Other sections of an existing ``calibration.json`` are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from addp_agent.data.natural import natural_images
from addp_agent.data.sample import RISSample
from addp_agent.data.sources import load_source
from addp_agent.domain import DomainCheck, fit_domain, rates, with_resized
from addp_agent.engine.decode import FoundRule
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.errors import UserError
from addp_agent.metrics import iou_counts, iou_from_counts
from addp_agent.models.calibration import (
    Calibration,
    ConfidenceCalibration,
    FoundCalibration,
    FoundObjective,
    fit_found,
)
from addp_agent.reliability import ConfidenceMap, expected_calibration_error, fit_confidence_map


def load_samples(data: str, split: str, limit: int | None) -> list[RISSample]:
    samples = list(islice(iter(load_source(data, split, skip_bad=True)), limit))
    if not samples:
        raise UserError(f"{data} split {split}: no samples to calibrate on")
    return samples


@dataclass
class Rounds:
    """One uncalibrated round per sample: its painted mask, paint statistics and the decoder's confidence."""

    data: str
    split: str
    steps: int
    targets: list[int]
    truths: list[np.ndarray]
    painted: list[np.ndarray]
    statistics: list[dict[str, float]]
    confidences: list[float]

    def painted_ious(self) -> list[float]:
        """Each painted mask's IoU with its truth, before any found rule (both empty counts as 1)."""
        pairs = zip(self.painted, self.truths, strict=True)
        return [iou_from_counts(*iou_counts(mask, truth)) for mask, truth in pairs]

    def correct(self, rule: FoundRule | None) -> list[bool]:
        """Is each round right under ``rule``: IoU ≥ 0.5 (both empty counts as 1)?"""
        right = []
        for truth, mask, statistics in zip(self.truths, self.painted, self.statistics, strict=True):
            found = bool(mask.any()) and (rule is None or rule.found(statistics))
            right.append(iou_from_counts(*iou_counts(mask if found else np.zeros_like(mask), truth)) >= 0.5)
        return right


@torch.no_grad()
def run_rounds(pipe: ADDPPipeline, data: str, split: str = "val", limit: int | None = None, batch_size: int = 16,
               seed: int = 0, steps: int | None = None) -> Rounds:
    """The first ``limit`` samples of ``data``'s ``split``, one round each, with the model's found rule, confidence
    map and domain check switched off for the pass."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    samples = load_samples(data, split, limit)
    settings = pipe.resolve_settings(steps)
    saved = pipe.found_rule, pipe.confidence_map, pipe.domain_check
    pipe.found_rule, pipe.confidence_map, pipe.domain_check = None, None, None
    rounds = Rounds(data, split, settings["num_inference_steps"], [s.n_targets for s in samples],
                    [s.mask for s in samples], [], [], [])
    try:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            output = pipe.segment_batch([s.expression for s in chunk], [s.image for s in chunk],
                                        generator=seeded_generators([seed] * len(chunk)), **settings)
            rounds.painted += output.masks
            rounds.statistics += output.paint
            rounds.confidences += output.confidences
    finally:
        pipe.found_rule, pipe.confidence_map, pipe.domain_check = saved
    return rounds


def fit_found_section(rounds: Rounds, objective: FoundObjective = "gIoU") -> FoundCalibration:
    return fit_found(rounds.statistics, rounds.targets, rounds.data, rounds.split, rounds.steps,
                     rounds.painted_ious(), objective)


def fit_confidence_section(rounds: Rounds, rule: FoundRule | None) -> ConfidenceCalibration:
    """The ``confidence`` section fitted on ``rounds`` judged under ``rule``."""
    correct = rounds.correct(rule)
    fitted = fit_confidence_map(rounds.confidences, correct)
    return ConfidenceCalibration(slope=fitted.slope, bias=fitted.bias, data=rounds.data, split=rounds.split,
                                 steps=rounds.steps, n=len(correct), accuracy=float(np.mean(correct)),
                                 ece_before=expected_calibration_error(rounds.confidences, correct),
                                 ece_after=expected_calibration_error(fitted.apply(rounds.confidences), correct))


def confidence_report(rounds: Rounds, rule: FoundRule | None, mapping: ConfidenceMap | None) -> dict[str, object]:
    """ECE before and after ``mapping`` on (test) ``rounds``, with the values a reliability diagram needs."""
    correct = rounds.correct(rule)
    mapped = mapping.apply(rounds.confidences).tolist() if mapping is not None else list(rounds.confidences)
    return {"data": rounds.data, "split": rounds.split, "n": len(correct), "accuracy": float(np.mean(correct)),
            "ece_before": expected_calibration_error(rounds.confidences, correct),
            "ece_after": expected_calibration_error(mapped, correct),
            "raw": list(rounds.confidences), "mapped": mapped, "correct": correct}


def fit_domain_section(name: str, resolution: int, train_data: str, held_out: Sequence[np.ndarray],
                       held_out_data: str, limit: int = 2000) -> DomainCheck:
    """The ``domain`` section: fitted on ``train_data``'s train split (first ``limit`` images), threshold from the
    held-out images; both with resized copies (:func:`addp_agent.domain.with_resized`)."""
    train = [s.image for s in load_samples(train_data, "train", limit)]
    return fit_domain(name, resolution, with_resized(train, resolution, 0), with_resized(held_out, resolution, 1),
                      f"{train_data} split train", held_out_data)


def domain_rates(check: DomainCheck, in_domain: Sequence[np.ndarray], n_natural: int = 400,
                 seed: int = 7) -> dict[str, float]:
    """False alarms on (unseen) in-domain images and detection on ``n_natural`` natural images
    (:func:`addp_agent.data.natural.natural_images`)."""
    return rates(check, in_domain, natural_images(n_natural, seed))


def write_sections(folder: Path, **sections: object) -> Path:
    """Put the given sections into ``folder``'s calibration.json (atomically; other sections kept)."""
    calibration = Calibration.load(folder) or Calibration()
    return calibration.model_copy(update=sections).save(folder)
