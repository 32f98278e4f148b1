"""Merge the shards of a run into ``samples.jsonl``, ``metrics.json``, ``report.md`` and the plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from addp_agent.critic.names import critic_label
from addp_agent.errors import DataError
from addp_agent.eval.records import EvalConfig, SampleRecord, read_records, write_records
from addp_agent.eval.shard import part_files, summary_path
from addp_agent.eval.summary import EvalSummary
from addp_agent.outputs_io import output_set, write_file

FINAL_FILES = ("samples.jsonl", "metrics.json", "metrics_per_round.png", "gallery.png", "report.md")

PROTOCOL_FILE = "protocol.json"  # the protocol a run's settings came from, and what the command line changed


def merge_summaries(out: Path, world: int) -> tuple[EvalSummary, dict[str, Any]]:
    """Sum the ``world`` shard states of the latest run; returns the merged summary and rank 0's stream info."""
    merged: EvalSummary | None = None
    info: dict[str, Any] = {}
    indices: list[int] = []
    for rank in range(world):
        path = summary_path(out, rank, world)
        try:
            state = json.loads(path.read_text())
            shard = EvalSummary.from_state(state["summary"])
        except (OSError, ValueError, KeyError) as error:
            raise DataError(f"{path}: missing or unreadable shard summary ({error})") from None
        merged = shard if merged is None else merged.merge(shard)
        indices += state["indices"]
        if rank == 0:
            info = state
    assert merged is not None
    if sorted(indices) != list(range(info["seen"])):
        raise DataError(f"{out}: shards cover {len(indices)} of {info['seen']} samples; rerun to finish")
    return merged, info


def metrics_document(config: EvalConfig, summary: EvalSummary, loader_skipped: dict[str, int],
                     protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """``metrics.json``: the settings (and the protocol they came from), then the summary (loader skips added to the
    skipped counts)."""
    body = summary.to_metrics()
    reasons = dict(body["skipped"]["reasons"])
    for reason, count in loader_skipped.items():
        reasons[reason] = reasons.get(reason, 0) + int(count)
    body["skipped"] = {"total": sum(reasons.values()), "reasons": dict(sorted(reasons.items()))}
    head: dict[str, Any] = {"config": config.model_dump(), "critic": critic_label(config.critic)}
    if protocol is not None:
        head["protocol"] = protocol
    return {**head, **body}


def finalize(config: EvalConfig, out: Path, world: int, plots: bool = True) -> dict[str, Any]:
    """Write the run's outputs from its part files and shard summaries; returns the metrics document.

    The final files are written beside the run folder and swapped in with it in one step
    (:func:`~addp_agent.outputs_io.output_set`): a run folder holds the previous final files or the new ones, never
    a mix, and the records stay as they are.
    """
    from addp_agent.eval.report import write_report

    summary, info = merge_summaries(out, world)
    records = read_records(part_files(out))
    ordered: list[SampleRecord] = [records[i] for i in range(info["seen"])]
    saved = out / PROTOCOL_FILE
    protocol = json.loads(saved.read_text()) if config.protocol and saved.is_file() else None
    document = metrics_document(config, summary, info["loader_skipped"], protocol)
    with output_set(out, keep=True, owns=FINAL_FILES) as staging:
        write_records(staging / "samples.jsonl", ordered)
        write_file(staging / "metrics.json", json.dumps(document, indent=2))
        figures: dict[str, str] = {}
        if plots:
            from addp_agent.eval.plots import gallery, metrics_plot

            figures["metrics per round"] = metrics_plot(document, staging / "metrics_per_round.png").name
            picked = gallery(config, ordered, staging / "gallery.png")
            if picked:
                figures["biggest gains and losses"] = picked.name
        write_report(staging / "report.md", document, ordered, figures)
    return document
