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


def metrics_document(config: EvalConfig, summary: EvalSummary, loader_skipped: dict[str, int]) -> dict[str, Any]:
    """``metrics.json``: the settings, then the summary (loader skips added to the skipped counts)."""
    body = summary.to_metrics()
    reasons = dict(body["skipped"]["reasons"])
    for reason, count in loader_skipped.items():
        reasons[reason] = reasons.get(reason, 0) + int(count)
    body["skipped"] = {"total": sum(reasons.values()), "reasons": dict(sorted(reasons.items()))}
    return {"config": config.model_dump(), "critic": critic_label(config.critic), **body}


def finalize(config: EvalConfig, out: Path, world: int, plots: bool = True) -> dict[str, Any]:
    """Write the run's outputs from its part files and shard summaries; returns the metrics document."""
    summary, info = merge_summaries(out, world)
    records = read_records(part_files(out))
    ordered: list[SampleRecord] = [records[i] for i in range(info["seen"])]
    write_records(out / "samples.jsonl", ordered)
    document = metrics_document(config, summary, info["loader_skipped"])
    (out / "metrics.json").write_text(json.dumps(document, indent=2))
    figures: dict[str, str] = {}
    if plots:
        from addp_agent.eval.plots import gallery, metrics_plot

        figures["metrics per round"] = metrics_plot(document, out / "metrics_per_round.png").name
        picked = gallery(config, ordered, out / "gallery.png")
        if picked:
            figures["biggest gains and losses"] = picked.name
    from addp_agent.eval.report import write_report

    write_report(out / "report.md", document, ordered, figures)
    return document
