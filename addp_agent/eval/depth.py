"""Depth evaluation (Marigold protocol) and the x̂₀ AbsRel-vs-timestep curve; writes the run folder.

For every sample: predict (``steps``, ``ensemble``, a generator seeded with ``seed``), align to the metric ground
truth by least squares on the valid pixels, clip to the source's depth range, score (depth_metrics.py). The first
``curve_n`` samples also record the x̂₀ of every ensemble member after every denoising step; each is aligned and
scored on its own, giving AbsRel and δ1 against the timestep (the depth twin of ``addp analyze-timesteps``) and c_t
from the δ1 curve for ``addp train --timesteps estimated``.

Outputs: ``metrics.json`` (keys abs_rel, sq_rel, rmse, rmse_log, delta1, delta2, delta3, plus n, skipped, config
and the curve), ``samples.jsonl``, ``x0_curve.csv``, ``contribution.json``, ``report.md`` and the plots.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.depth_metrics import DEPTH_KEYS, DepthMetrics, evaluate_depth
from addp_agent.errors import UserError
from addp_agent.limits import MAX_ENSEMBLE, MAX_RESOLUTION, Seed, Steps
from addp_agent.outputs_io import check_output_folder


class DepthEvalConfig(BaseModel):
    """Settings of one depth evaluation run (saved in ``metrics.json``)."""

    model_config = ConfigDict(extra="forbid")
    data: str
    split: str = "test"
    model: str | None = None
    steps: Steps | None = Field(None, description="Denoising steps (default: the model's).")
    ensemble: int = Field(1, ge=1, le=MAX_ENSEMBLE, description="Ensemble size (Marigold's paper protocol: 10).")
    processing_resolution: int | None = Field(None, ge=0, le=MAX_RESOLUTION, multiple_of=8,
                                              description="0: native; default: the model's.")
    seed: Seed = 0
    limit: int | None = Field(None, ge=1)
    alignment_max_res: int | None = Field(None, ge=1, description="Fit scale/shift on a downsample (ETH3D: 1024).")
    curve_n: int = Field(32, ge=0, description="Samples whose x̂₀ is scored after every step (0: no curve).")
    gallery: int = Field(6, ge=0, description="Samples shown in gallery.png.")
    strict: bool = False


@dataclass
class CurveAccumulator:
    """Per-step AbsRel and δ1 of single-member x̂₀ predictions (means over samples of the member means)."""

    timesteps: list[int] = field(default_factory=list)
    abs_rel: list[list[float]] = field(default_factory=list)  # [sample][step]
    delta1: list[list[float]] = field(default_factory=list)

    def add(self, trajectory, gt: np.ndarray, valid: np.ndarray, limits, max_res: int | None) -> None:
        rows = [[evaluate_depth(member, gt, valid, limits.min_depth, limits.max_depth, max_res=max_res)
                 for member in point.prediction] for point in trajectory]
        self.timesteps = [point.timestep for point in trajectory]
        self.abs_rel.append([float(np.mean([m["abs_rel"] for m in row])) for row in rows])
        self.delta1.append([float(np.mean([m["delta1"] for m in row])) for row in rows])

    def summary(self, num_timesteps: int) -> dict[str, Any] | None:
        from addp_agent.train.contribution import estimate_contribution

        if not self.abs_rel:
            return None
        abs_rel, delta1 = np.asarray(self.abs_rel), np.asarray(self.delta1)
        distinct = len(set(self.timesteps)) == len(self.timesteps) >= 2
        contribution = (estimate_contribution(self.timesteps, delta1.mean(0), num_timesteps) if distinct
                        else np.ones(len(self.timesteps)))
        return {"n": int(abs_rel.shape[0]), "timesteps": self.timesteps, "abs_rel": abs_rel.mean(0).tolist(),
                "abs_rel_std": abs_rel.std(0).tolist(), "delta1": delta1.mean(0).tolist(),
                "contribution": [float(c) for c in contribution]}


@dataclass
class GalleryItem:
    sample_id: str
    image: np.ndarray
    gt: np.ndarray
    valid: np.ndarray
    aligned: np.ndarray
    abs_rel: float


def check_out(out: Path) -> None:
    """``out`` can take a depth run: writable, and new, empty or holding an earlier depth run."""
    from addp_agent.eval.depth_report import DEPTH_EVAL_FILES

    check_output_folder(out, DEPTH_EVAL_FILES, "addp eval --task depth")


@torch.no_grad()
def evaluate_depth_run(config: DepthEvalConfig, pipe: Any, out: Path, progress: bool = False) -> dict[str, Any]:
    """Evaluate ``pipe`` on ``config.data`` and write the run folder ``out``; returns the metrics document."""
    from itertools import islice

    from tqdm.auto import tqdm

    from addp_agent.data.depth_sources import depth_range, load_depth_source

    check_out(out)
    limits = depth_range(config.data)
    source = load_depth_source(config.data, config.split, skip_bad=not config.strict)
    metrics, curve, skipped, domain = DepthMetrics(), CurveAccumulator(), Counter(), Counter()
    records: list[dict[str, Any]] = []
    gallery: list[GalleryItem] = []
    total = config.limit or (len(source) if hasattr(source, "__len__") else None)
    for index, sample in enumerate(tqdm(islice(iter(source), config.limit), total=total, disable=not progress,
                                        desc="depth eval")):
        start = time.perf_counter()
        with_curve = index < config.curve_n
        output = pipe(sample.image, num_inference_steps=config.steps, ensemble_size=config.ensemble,
                      processing_resolution=config.processing_resolution,
                      generator=torch.Generator().manual_seed(config.seed), output_trajectory=with_curve,
                      show_progress=False)
        prediction = output.prediction[0, :, :, 0]
        if pipe.config.prediction_type == "disparity":
            prediction = 1.0 - prediction
        seconds = time.perf_counter() - start
        try:
            scores = evaluate_depth(prediction, sample.depth, sample.valid, limits.min_depth, limits.max_depth,
                                    max_res=config.alignment_max_res)
        except ValueError:
            skipped["too few valid pixels"] += 1
            continue
        metrics.add(scores)
        if with_curve:
            curve.add(output.trajectories[0], sample.depth, sample.valid, limits, config.alignment_max_res)
        verdict = pipe.check_domain(sample.image)
        domain[{True: "in_domain", False: "out_of_domain", None: "unchecked"}[verdict.in_domain]] += 1
        records.append({"index": index, "sample_id": sample.sample_id, **{k: round(v, 6) for k, v in scores.items()},
                        "valid_pixels": int(sample.valid.sum()), "seconds": round(seconds, 4),
                        "in_domain": verdict.in_domain, "domain_score": verdict.to_json()["domain_score"]})
        if len(gallery) < config.gallery:
            gallery.append(GalleryItem(sample.sample_id, sample.image, sample.depth, sample.valid,
                                       (prediction * scores["scale"] + scores["shift"]).astype(np.float32),
                                       scores["abs_rel"]))
    for reason, count in (getattr(source, "skipped", None) or {}).items():
        skipped[reason] += count
    if metrics.n == 0:
        raise UserError(f"{config.data}: no sample could be evaluated (skipped: {dict(skipped) or 'none'})")
    summary = metrics.to_dict()
    document = {"config": config.model_dump(), **{k: summary[k] for k in DEPTH_KEYS}, "n": summary["n"],
                "skipped": {"total": sum(skipped.values()), "reasons": dict(sorted(skipped.items()))},
                "domain": {key: domain.get(key, 0) for key in ("in_domain", "out_of_domain", "unchecked")},
                "depth_range": [limits.min_depth, limits.max_depth if np.isfinite(limits.max_depth) else None],
                "seconds_per_sample": round(float(np.mean([r["seconds"] for r in records])), 4),
                "x0_curve": curve.summary(int(pipe.scheduler.config.num_train_timesteps))}
    from addp_agent.eval.depth_report import write_outputs

    write_outputs(out, document, records, gallery, metrics)
    return document


def load_depth_metrics(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())
