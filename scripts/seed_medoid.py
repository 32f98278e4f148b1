"""Offline check: does the medoid of K seed readings (chosen without ground truth) beat round 1?

``python scripts/seed_medoid.py MODEL DATA_SPEC K OUT.json`` prints, on all samples and on the confusable subset,
mean IoU of round 1 (seed 0), of the medoid (the reading that agrees most with the others), of the majority vote,
and of the best of K picked with ground truth (an upper bound no critic can use).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from addp_agent.critic.consistency import agreement, similarity
from addp_agent.data.sample import RISSample
from addp_agent.data.sources import load_source
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.models.registry import load_pipeline


def seed_readings(model: str, spec: str, k: int) -> Iterator[tuple[ADDPPipeline, RISSample, list[np.ndarray]]]:
    """(pipeline, test sample, its K readings at seeds 0 … K − 1 and the model's defaults) for each test sample;
    the found rule is off, so what is painted is compared."""
    pipe = load_pipeline(model, device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.found_rule = None
    settings = pipe.resolve_settings(None)
    for sample in load_source(spec, "test"):
        readings = pipe.segment_batch([sample.expression] * k, [sample.image] * k,
                                      generator=seeded_generators(list(range(k))), **settings)
        yield pipe, sample, [np.asarray(m, bool) for m in readings.masks]


def main(model: str, spec: str, k: int, out: Path) -> None:
    rows = []
    for _, sample, masks in seed_readings(model, spec, k):
        agree = [agreement(m, masks[:i] + masks[i + 1:]) for i, m in enumerate(masks)]
        vote = np.mean(np.stack(masks), axis=0) > 0.5
        rows.append({"confusable": bool(sample.confusable), "ious": [similarity(m, sample.mask) for m in masks],
                     "agree": agree, "medoid": int(np.argmax(agree)), "vote_iou": similarity(vote, sample.mask)})
    out.write_text(json.dumps(rows))
    for subset in ("all", "confusable"):
        chosen = [r for r in rows if subset == "all" or r["confusable"]]

        def mean(pick, chosen=chosen) -> float:
            return 100 * float(np.mean([pick(r) for r in chosen]))

        print(f"{subset} ({len(chosen)}): round 1 {mean(lambda r: r['ious'][0]):.2f}, medoid "
              f"{mean(lambda r: r['ious'][r['medoid']]):.2f}, vote {mean(lambda r: r['vote_iou']):.2f}, best of {k} "
              f"by ground truth {mean(lambda r: max(r['ious'])):.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
