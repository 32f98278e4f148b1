"""Evaluation entry point: settings checks, critics, one process's shard, and the merge on the main process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from addp_agent.critic.simulated import SimulatedCritic
from addp_agent.data.sample import RISSample
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.errors import UserError
from addp_agent.eval.batch import CriticFactory
from addp_agent.eval.finish import PROTOCOL_FILE, finalize
from addp_agent.eval.protocols import protocol_record
from addp_agent.eval.records import CRITICS, EvalConfig, check_config
from addp_agent.eval.shard import run_shard
from addp_agent.outputs_io import check_output_folder, write_file


def critic_factory(config: EvalConfig, critic_model: str | None = None) -> CriticFactory:
    """Per-sample critics: the simulated one sees each sample's ground truth; LLM critics share one client."""
    if config.critic not in CRITICS:
        raise UserError(f"unknown critic {config.critic!r}; use one of {', '.join(CRITICS)}")
    if config.critic == "none":
        return lambda sample: None
    if config.critic == "simulated":
        return lambda sample: SimulatedCritic.from_sample(sample, config.accept_iou)
    from addp_agent.critic.chat import ChatSettings, ChatTransport

    transport = ChatTransport(ChatSettings(model=critic_model))
    if config.critic == "vlm":
        from addp_agent.critic.vlm import VLMCritic

        shared = VLMCritic(transport=transport)
        return lambda sample: shared
    from addp_agent.critic.paper import PaperCritic

    def paper(sample: RISSample) -> PaperCritic:
        return PaperCritic(str(sample.meta.get("caption") or "a scene"), transport=transport)

    return paper


def configure_pipeline(pipe: ADDPPipeline, config: EvalConfig) -> None:
    """Give a loaded pipeline the run's working resolution and sampler (each left as the model's when unset)."""
    from addp_agent.engine.sampling import set_resolution, switch_scheduler

    if config.resolution is not None:
        set_resolution(pipe, config.resolution)
    if config.scheduler is not None or config.timestep_spacing is not None:
        spacing = {"timestep_spacing": config.timestep_spacing} if config.timestep_spacing else {}
        pipe.register_modules(scheduler=switch_scheduler(pipe.scheduler, config.scheduler, **spacing))


def prepare(config: EvalConfig, out: Path) -> None:
    """Check the output folder: writable, and resumed only with the same settings."""
    check_output_folder(out)
    check_config(out, config)


def evaluate(config: EvalConfig, out: Path, pipe: ADDPPipeline, critic_for: CriticFactory, rank: int = 0,
             world: int = 1, wait: Callable[[], None] = lambda: None, progress: bool = False) -> dict[str, Any] | None:
    """Run this process's shard; the main process (rank 0) then merges all shards. Returns metrics on rank 0.

    A run started from a protocol keeps it, and what the run changed in it, in ``protocol.json`` and ``metrics.json``.
    """
    prepare(config, out)
    wait()
    if rank == 0:
        write_file(out / "config.json", config.model_dump_json(indent=2))
        protocol = protocol_record(config)
        if protocol is not None:
            write_file(out / PROTOCOL_FILE, json.dumps(protocol, indent=2))
    run_shard(pipe, config, out, critic_for, rank, world, progress)
    wait()
    if rank != 0:
        return None
    return finalize(config, out, world)
