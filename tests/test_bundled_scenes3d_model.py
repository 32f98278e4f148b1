"""The bundled Scenes-3D RIS model (`scenes3d-ris-small`): loads by name through the real from_pretrained path with
its calibration, fits its size budget, and keeps its measured quality on unseen scenes (a floor, not the target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from addp_agent.data.sources import load_source
from addp_agent.engine.pipeline import seeded_generators
from addp_agent.generalized_metrics import GeneralizedMetrics
from addp_agent.metrics import RISMetrics, iou_counts
from addp_agent.models.registry import BUNDLED_MODELS, load_pipeline

FOLDER = BUNDLED_MODELS["scenes3d-ris-small"][0]
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (FOLDER / "model_index.json").is_file(), reason="not in this install")]


@pytest.fixture(scope="module")
def pipe():
    pipe = load_pipeline("scenes3d-ris-small", device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_it_is_small_calibrated_and_loads_as_fp32(pipe):
    size = sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file())
    assert size <= 30 * 2**20
    assert pipe.unet.dtype == torch.float32 and pipe.vae is None and pipe.resolution == 128
    assert pipe.config.default_num_inference_steps == 1 and pipe.scheduler.config.timestep_spacing == "trailing"
    assert pipe.config.default_correction_steps == 2
    assert pipe.found_rule is not None and pipe.confidence_map is not None
    assert pipe.domain_check is not None and pipe.domain_check.name == "synthetic-scenes3d"


def _rounds(pipe, spec: str):
    samples = list(load_source(spec, "test"))
    out = pipe.segment_batch([s.expression for s in samples], [s.image for s in samples],
                             generator=seeded_generators([0] * len(samples)), **pipe.resolve_settings(None))
    return samples, out


def test_it_keeps_its_measured_quality_on_unseen_scenes(pipe):
    samples, out = _rounds(pipe, "scenes-gen:48:11:128:default:classic")
    metrics = RISMetrics()
    for sample, mask in zip(samples, out.masks, strict=True):
        metrics.update(np.asarray(mask, bool), sample.mask)
    # A floor under what the bundled weights score on these 48 scenes (MEASURED_CLASSIC); an untrained or wrongly
    # loaded model scores ~0, and the Shapes-Ref weights cannot read these scenes.
    assert metrics.to_dict()["mIoU"] >= MEASURED_CLASSIC - 0.08


def test_it_keeps_its_generalized_scores(pipe):
    samples, out = _rounds(pipe, "scenes-gen:64:12:128:default:generalized:empty_rate=0.4")
    metrics = GeneralizedMetrics()
    for sample, mask, found in zip(samples, out.masks, out.found, strict=True):
        metrics.add(*iou_counts(np.asarray(mask, bool), sample.mask), sample.n_targets, found)
    scores = metrics.to_dict()
    # measured on these 64 (22 without a target): gIoU 0.480, T-acc 1.0, N-acc 0.18. The model paints something
    # for most no-target expressions, so its found rule (fitted for gIoU) rarely answers "not found"; N-acc is only
    # guarded to stay above 0 (the rule fires at all: 4 of 22 here).
    assert scores["gIoU"] >= MEASURED_GIOU - 0.08 and scores["T-acc"] >= 0.95 and scores["N-acc"] > 0


MEASURED_CLASSIC = 0.603  # mIoU of the bundled weights (10 491 steps) on the 48 scenes above
MEASURED_GIOU = 0.480
