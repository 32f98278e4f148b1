"""How accurate must a critic be before correction pays? Net gain of the loop against the noisy critic's accuracy.

For each accuracy A the study is one ``addp eval --critic noisy --critic-accuracy A`` run (every error rate
1 − A), in its own subfolder (resumable, with its own ``metrics.json`` and ``samples.jsonl``); round 1 is the same
in every run. It then writes ``critic_study.json`` (one row per accuracy: the measured accuracy, round-1 and
answer mIoU, net gain, samples worse / better than round 1 by more than 0.1, UNet passes) with the *break-even
accuracy*, where the net gain crosses zero, and ``critic_study.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from addp_agent.critic.names import critic_label
from addp_agent.critic.noisy import ERROR_MARK, ErrorRates
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.eval.critic_study_config import CriticStudyConfig
from addp_agent.eval.finish import finalize
from addp_agent.eval.records import read_records
from addp_agent.eval.runner import critic_factory, prepare
from addp_agent.eval.shard import part_files, run_shard

STUDY_FILE = "critic_study.json"
PLOT_FILE = "critic_study.png"


def folder_for(out: Path, accuracy: float) -> Path:
    return out / f"accuracy-{accuracy:.3f}"


def measured_accuracy(folder: Path) -> tuple[int, int]:
    """(critiques given, deliberate errors among them) over a run's records."""
    critiques = errors = 0
    for record in read_records(part_files(folder)).values():
        for r in record.rounds:
            if r.critique is not None:
                critiques += 1
                errors += str(r.critique.get("problem", "")).startswith(ERROR_MARK)
    return critiques, errors


def study_row(accuracy: float, document: dict[str, Any], critiques: int, errors: int) -> dict[str, Any]:
    """One accuracy's line of the study."""
    first, answer = document["rounds"][0]["mIoU"], document["answer"]["mIoU"]
    versus = document["answer_vs_round1"]
    return {"accuracy": accuracy, "rates": ErrorRates.from_accuracy(accuracy).model_dump(),
            "critiques": critiques, "errors": errors,
            "measured_accuracy": None if not critiques else 1.0 - errors / critiques,
            "n": document["n"], "round1_mIoU": first, "answer_mIoU": answer,
            "net_gain": None if first is None or answer is None else answer - first,
            "worse_share": versus["worse"]["share"], "better_share": versus["better"]["share"],
            "ran_round_2": document["ran_round"].get("2", 0),
            "passes_per_sample": document["unet"]["passes_per_sample"]}


def break_even(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The accuracy where the net gain crosses zero (linear between the two accuracies around the highest
    crossing), or ``None`` with a note when it stays on one side over the accuracies tried."""
    points = [(r["accuracy"], r["net_gain"]) for r in rows if r["net_gain"] is not None]
    if not points:
        return {"accuracy": None, "note": "no samples"}
    if points[-1][1] < 0:
        return {"accuracy": None, "note": f"the net gain is negative even at accuracy {points[-1][0]:g}"}
    below = [k for k, (_, gain) in enumerate(points) if gain < 0]
    if not below:
        return {"accuracy": None, "note": f"the net gain is ≥ 0 at every accuracy tried, from {points[0][0]:g}"}
    (a0, g0), (a1, g1) = points[below[-1]], points[below[-1] + 1]
    return {"accuracy": a0 + (a1 - a0) * (-g0) / (g1 - g0),
            "note": f"interpolated between {a0:g} (net gain {100 * g0:+.2f}) and {a1:g} ({100 * g1:+.2f})"}


def run_study(config: CriticStudyConfig, out: Path, pipe: ADDPPipeline, progress: bool = False) -> dict[str, Any]:
    """Evaluate every accuracy (finished runs are reused), then write the study's JSON and plot."""
    rows = []
    for accuracy in config.accuracies:
        settings, folder = config.eval_config(accuracy), folder_for(out, accuracy)
        prepare(settings, folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(settings.model_dump_json(indent=2))
        run_shard(pipe, settings, folder, critic_factory(settings), progress=progress)
        document = finalize(settings, folder, world=1, plots=False)
        rows.append(study_row(accuracy, document, *measured_accuracy(folder)))
    study = {"critic": critic_label("noisy"), "config": config.model_dump(), "rows": rows,
             "break_even": break_even(rows),
             "definitions": {"net_gain": "answer mIoU − round-1 mIoU (fractions)",
                             "worse_share": "samples whose answer IoU is more than 0.1 below their round 1",
                             "measured_accuracy": "1 − deliberate errors / critiques given",
                             "passes_per_sample": "UNet rows / rows of one uncorrected step of one sample"}}
    (out / STUDY_FILE).write_text(json.dumps(study, indent=2))
    from addp_agent.eval.plots import critic_study_plot

    critic_study_plot(study, out / PLOT_FILE)
    return study
