"""Sharded, resumable evaluation: batch b of the sample stream belongs to process ``b % world``.

Batches are fixed by position (samples ``[b·B, (b+1)·B)``), so every sample is computed in the same batch whatever
the number of processes, and 1 or N processes give identical records. Each process appends whole batches to
``parts/part-<world>-<rank>.jsonl`` and, at the end, writes the integer metrics state of the batches it owns
(``parts/summary-<world>-<rank>.json``); merging those states sums intersections, unions and counts exactly.
A resume reads every part file (whatever the earlier process count) and skips batches already complete.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from addp_agent.data.sample import RISSample
from addp_agent.data.sources import load_source
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.eval.batch import CriticFactory, run_batch
from addp_agent.eval.records import EvalConfig, SampleRecord, append_records, read_records
from addp_agent.eval.summary import EvalSummary

PARTS = "parts"


def part_files(out: Path) -> list[Path]:
    return sorted((out / PARTS).glob("part-*.jsonl"))


def summary_path(out: Path, rank: int, world: int) -> Path:
    return out / PARTS / f"summary-{world}-{rank}.json"


def open_stream(config: EvalConfig) -> tuple[Iterable[RISSample], Iterator[tuple[int, RISSample]]]:
    """The source and its first ``limit`` samples, numbered (unreadable ones skipped unless ``strict``)."""
    source = load_source(config.data, config.split, skip_bad=not config.strict)
    return source, enumerate(islice(iter(source), config.limit))


def batches(stream: Iterator[tuple[int, RISSample]], size: int) -> Iterator[list[tuple[int, RISSample]]]:
    batch: list[tuple[int, RISSample]] = []
    for item in stream:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_shard(pipe: ADDPPipeline, config: EvalConfig, out: Path, critic_for: CriticFactory, rank: int = 0,
              world: int = 1, progress: bool = False) -> EvalSummary:
    """Evaluate this process's batches (skipping complete ones) and write its summary file."""
    done = read_records(part_files(out))
    mine = out / PARTS / f"part-{world}-{rank}.jsonl"
    source, stream = open_stream(config)
    total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
    if total is not None and config.limit is not None:
        total = min(total, config.limit)
    owned: list[SampleRecord] = []
    running = EvalSummary(config.max_rounds)
    seen = 0
    bar = tqdm(total=total, disable=not progress, desc=f"eval {rank + 1}/{world}", unit="sample")
    with bar:
        for number, batch in enumerate(batches(stream, config.batch_size)):
            seen = batch[-1][0] + 1
            if number % world != rank:
                continue
            if all(index in done for index, _ in batch):
                records = [done[index] for index, _ in batch]
            else:
                records = run_batch(pipe, batch, config, critic_for)
                append_records(mine, records)
            owned += records
            for record in records:
                running.add(record)
            bar.update(len(batch) * world if total is not None else len(batch))
            metrics = running.to_metrics()
            if metrics["n"]:
                bar.set_postfix(mIoU_r1=f"{metrics['rounds'][0]['mIoU']:.3f}",
                                mIoU_last=f"{metrics['rounds'][-1]['mIoU']:.3f}")
    summary = EvalSummary.of(owned, config.max_rounds)
    skipped = Counter(getattr(source, "skipped", None) or {})
    state = {"summary": summary.state(), "seen": seen, "loader_skipped": dict(skipped),
             "indices": sorted(r.index for r in owned)}
    path = summary_path(out, rank, world)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return summary
