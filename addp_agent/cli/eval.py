"""`addp eval` (multi-round evaluation, shardable with `accelerate launch`) and `addp analyze-timesteps`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from addp_agent.cli.app import app
from addp_agent.cli.options import build_config, config_options, flag, given_options
from addp_agent.cli.tasks import TaskDispatchCommand
from addp_agent.eval.records import EvalConfig
from addp_agent.limits import MAX_SEED, MAX_STEPS


def _check_limit(limit: int | None) -> None:
    from addp_agent.errors import UserError

    if limit is not None and limit < 1:
        raise UserError(f"--limit must be ≥ 1, got {limit}")


@app.command("eval", cls=TaskDispatchCommand)
@config_options(EvalConfig)
def eval_command(
    context: typer.Context,
    options: dict[str, Any],
    task: str = typer.Option("ris", "--task", help="ris | depth (depth has its own options: addp eval --task depth "
                                                   "--help)."),
    critic_model: str = typer.Option(None, help="Model name of the vlm/paper critic (else ADDP_CRITIC_MODEL)."),
    out: Path = typer.Option(..., "--out", help="Output folder; an interrupted run there resumes."),
    device: str = typer.Option(None, help="cpu | cuda (default: the process's accelerate device)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Evaluate over rounds; writes metrics.json, samples.jsonl, report.md and plots. Runs under accelerate."""
    from addp_agent.extras import require_extra

    require_extra("eval")  # accelerate now, matplotlib for the plots at the end: check both before any work
    from accelerate import PartialState

    from addp_agent.critic.names import canonical_critic
    from addp_agent.devices import check_device
    from addp_agent.eval.protocols import find_protocol, resolve_protocol
    from addp_agent.eval.runner import check_captions, configure_pipeline, critic_factory, evaluate, prepare
    from addp_agent.eval.shard import open_stream
    from addp_agent.models.registry import load_pipeline
    from addp_agent.presets import describe

    values = resolve_protocol(options, given_options(context, options), name=flag)
    values["critic"] = canonical_critic(values["critic"])  # 'simulated' → 'oracle'; unknown names fail here
    _check_limit(values["limit"])
    config = build_config(EvalConfig, values)
    check_device(device)
    prepare(config, out)
    check_captions(config, open_stream(config)[1])  # bad specs, missing folders, captionless paper runs fail here
    critic_for = critic_factory(config, critic_model) if config.critic != "self" else None
    import torch

    # CPU hosts: `accelerate launch --multi_gpu --num_processes N` starts N processes that join over gloo
    state = PartialState(cpu=device == "cpu" or not torch.cuda.is_available())
    if state.is_main_process and config.protocol is not None:
        typer.echo("\n".join(describe(find_protocol(config.protocol, flag), config.model_dump(), "protocol", flag)))
    pipe = load_pipeline(config.model, device=device or state.device, progress=not quiet)
    pipe.set_progress_bar_config(disable=True)
    configure_pipeline(pipe, config)
    critic_for = critic_for or critic_factory(config, critic_model, pipe)
    document = evaluate(config, out, pipe, critic_for, state.process_index, state.num_processes,
                        state.wait_for_everyone, progress=not quiet and state.is_main_process)
    if document is not None and not quiet:
        rounds = ", ".join(f"r{r['round']} {100 * (r['mIoU'] or 0):.2f}" for r in document["rounds"])
        generalized = ""
        if document["rounds"][0]["n_no_target"]:
            generalized = "; gIoU " + ", ".join(f"r{r['round']} {100 * r['gIoU']:.2f}" for r in document["rounds"]) \
                + ", N-acc " + ", ".join(f"r{r['round']} {r['N-acc']:.3f}" for r in document["rounds"])
        overall = f", oIoU {100 * (document['rounds'][-1]['oIoU'] or 0):.2f}" if config.max_rounds == 1 else ""
        typer.echo(f"{document['n']} samples ({document['skipped']['total']} skipped), mIoU {rounds}{overall}"
                   f"{generalized} → {out}")
    if document is not None and document["domain"]["out_of_domain"]:
        typer.echo(f"warning: {document['domain']['out_of_domain']} of {document['n']} images look outside the "
                   "model's domain (metrics.json: domain; samples.jsonl: in_domain)", err=True)


@app.command("analyze-timesteps")
def analyze_timesteps_command(
    data: str = typer.Option(..., "--data", help="Data source spec (as for `addp eval`)."),
    split: str = typer.Option("val", "--split"),
    model: str = typer.Option(None, "--model", help="Model folder, .ckpt/.safetensors file, hub id "
                              "or bundled name, e.g. scenes3d-ris-small (default: shapes-ref-small)."),
    steps: int = typer.Option(None, "--steps", min=2, max=MAX_STEPS, help="Denoising steps (default: the "
                                                                          "model's)."),
    limit: int = typer.Option(64, "--limit", min=1, help="Samples to average over."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    out: Path = typer.Option(..., "--out"),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
) -> None:
    """IoU of the decoded x̂₀ at every timestep (CSV, JSON, PNG like Fig. 1a) and c_t for `--timesteps estimated`."""
    from itertools import islice

    from addp_agent.data.sources import load_source
    from addp_agent.devices import check_device
    from addp_agent.eval.timesteps import OUTPUT_FILES, curve, measure, write_outputs
    from addp_agent.extras import require_extra
    from addp_agent.models.registry import load_pipeline
    from addp_agent.outputs_io import check_output_folder, output_set

    require_extra("eval", "matplotlib")  # for the plot at the end
    check_device(device)
    check_output_folder(out, OUTPUT_FILES, "addp analyze-timesteps")
    source = load_source(data, split, skip_bad=True)
    samples = list(islice(iter(source), limit))
    skipped = sum((getattr(source, "skipped", None) or {}).values())
    pipe = load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    step_ids, timesteps, counts = measure(pipe, samples, steps, batch_size, seed)
    result = curve(step_ids, timesteps, counts, int(pipe.scheduler.config.num_train_timesteps))
    meta = {"data": data, "split": split, "model": model or "bundled-default", "seed": seed, "skipped": skipped}
    with output_set(out, owns=OUTPUT_FILES, command="addp analyze-timesteps") as staging:
        files = write_outputs(result, staging, meta)
    peak = max(range(len(result.miou)), key=result.miou.__getitem__)
    typer.echo(f"{result.n} samples, {len(timesteps)} steps: mIoU {100 * result.miou[0]:.1f} % at t={timesteps[0]}, "
               f"peak {100 * result.miou[peak]:.1f} % at t={timesteps[peak]}, final {100 * result.miou[-1]:.1f} % "
               f"→ {', '.join(f.name for f in files)}")

