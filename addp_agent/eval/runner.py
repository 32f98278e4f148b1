"""Evaluation entry point: settings checks, critics, one process's shard, and the merge on the main process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from addp_agent.critic.names import canonical_critic
from addp_agent.critic.noisy import NoisyOracleCritic
from addp_agent.critic.oracle import OracleCritic
from addp_agent.data.sample import RISSample
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.errors import UserError
from addp_agent.eval.batch import CriticFactory
from addp_agent.eval.finish import FINAL_FILES, PROTOCOL_FILE, finalize
from addp_agent.eval.protocols import protocol_record
from addp_agent.eval.records import EvalConfig, check_config
from addp_agent.eval.shard import PARTS, run_shard
from addp_agent.outputs_io import check_run_folder, write_file

EVAL_FILES = ("config.json", PROTOCOL_FILE, PARTS, *FINAL_FILES)  # what an RIS evaluation writes in --out


def critic_factory(config: EvalConfig, critic_model: str | None = None,
                   pipe: ADDPPipeline | None = None) -> CriticFactory:
    """Per-sample critics. The oracle and the noisy oracle read each sample's ground truth; the self critic reads
    the model ``pipe`` (required for it); the LLM critics share one client, and the paper critic asks about each
    sample's own caption (a sample without one fails with a clear error)."""
    name = canonical_critic(config.critic)
    if name == "none":
        return lambda sample: None
    if name == "oracle":
        return lambda sample: OracleCritic.from_sample(sample, config.accept_iou)
    if name == "noisy":
        rates = config.error_rates()
        return lambda sample: NoisyOracleCritic.from_sample(sample, rates, config.critic_seed, config.accept_iou)
    if name == "self":
        if pipe is None:
            raise UserError("the self critic reads the model: pass the pipeline")
        from addp_agent.critic.consistency import SelfConsistencyCritic
        from addp_agent.critic.readings import PipelineReader

        reader = PipelineReader(pipe)
        return lambda sample: SelfConsistencyCritic(reader, seeds=config.self_seeds,
                                                    accept_agreement=config.self_accept)
    from addp_agent.critic.chat import ChatSettings, ChatTransport

    transport = ChatTransport(ChatSettings(model=critic_model))
    if name == "vlm":
        from addp_agent.critic.vlm import VLMCritic

        shared = VLMCritic(transport=transport)
        return lambda sample: shared
    from addp_agent.critic.paper import PaperCritic

    return lambda sample: PaperCritic.from_sample(sample, transport)


def check_captions(config: EvalConfig, stream: Iterator[tuple[int, RISSample]]) -> None:
    """The paper critic asks about each image's caption: refuse a run whose first sample has none, before any
    work (a later captionless sample fails on its own, with the same message)."""
    if config.critic != "paper":
        return
    first = next(stream, None)
    if first is not None and not first[1].caption.strip():
        raise UserError(f"--critic paper needs image captions, and {config.data} has none (sample "
                        f"{first[1].sample_id}); Scenes-3D sources (scenes-gen, scenes:<dir>) have them, Shapes-Ref "
                        "does not. No caption is invented.")


def configure_pipeline(pipe: ADDPPipeline, config: EvalConfig) -> None:
    """Give a loaded pipeline the run's working resolution and sampler (each left as the model's when unset)."""
    from addp_agent.engine.sampling import set_resolution, switch_scheduler

    if config.resolution is not None:
        set_resolution(pipe, config.resolution)
    if config.scheduler is not None or config.timestep_spacing is not None:
        spacing = {"timestep_spacing": config.timestep_spacing} if config.timestep_spacing else {}
        pipe.register_modules(scheduler=switch_scheduler(pipe.scheduler, config.scheduler, **spacing))


def check_resume_step(config: EvalConfig, pipe: ADDPPipeline) -> None:
    """``resume_step`` must fall inside the run's steps (the model's default when ``steps`` is unset)."""
    if config.resume_step is None:
        return
    steps = pipe.resolve_settings(config.steps)["num_inference_steps"]
    if config.resume_step >= steps:
        given = "--steps" if config.steps is not None else "the model's default; give --steps"
        raise UserError(f"--resume-step must be below the steps ({steps}, {given}), got {config.resume_step}")


def prepare(config: EvalConfig, out: Path) -> None:
    """Check the output folder: writable, resumed only with the same settings, and never a folder of other files
    (a run's files would overwrite or mix with them)."""
    check_run_folder(out, "config.json", "addp eval", EVAL_FILES)
    check_config(out, config)


def evaluate(config: EvalConfig, out: Path, pipe: ADDPPipeline, critic_for: CriticFactory, rank: int = 0,
             world: int = 1, wait: Callable[[], None] = lambda: None, progress: bool = False) -> dict[str, Any] | None:
    """Run this process's shard; the main process (rank 0) then merges all shards. Returns metrics on rank 0.

    A run started from a protocol keeps it, and what the run changed in it, in ``protocol.json`` and ``metrics.json``.
    """
    check_resume_step(config, pipe)
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
