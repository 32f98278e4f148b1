"""`addp agent IMAGE "EXPRESSION" --critic …`: multi-round correctional segmentation with a critic.

Writes ``round<k>_overlay.png`` / ``round<k>_mask.png`` per round (and ``round<k>_step<s>_overlay.png`` for the
intermediate mask a resumed round starts from), ``mask.png`` / ``overlay.png`` for the best round, and
``trace.json``; prints a per-round table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer
from PIL import Image
from rich.console import Console
from rich.table import Table

from addp_agent.cli.app import app
from addp_agent.critic.names import CHOICES_HELP, CRITIC_NAMES, canonical_critic, critic_label
from addp_agent.errors import UserError
from addp_agent.limits import MAX_ROUNDS, MAX_SEED, MAX_STEPS

CRITICS = CRITIC_NAMES
AGENT_FILES = ("round*_overlay.png", "round*_mask.png", "mask.png", "overlay.png", "trace.json")


def parse_shapes_spec(spec: str) -> tuple[str, int, int]:
    """``SPLIT:INDEX[:SEED]`` → (split, index, seed); the seed is the data stream's (0 unless given)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        raise UserError(f"--shapes-sample expects SPLIT:INDEX or SPLIT:INDEX:SEED (e.g. val:12, test:245:1), "
                        f"got {spec!r}")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 0


def _inputs(image: Path | None, expression: str | None, shapes_sample: str | None, gt_mask: Path | None):
    """(RGB image, expression, ground truth or None, other instances) from the arguments."""
    from addp_agent.images import load_image, load_mask

    if shapes_sample:
        from addp_agent.data.shapes import SPLITS, generate_sample

        if image is not None:
            raise UserError("give either IMAGE or --shapes-sample, not both")
        split, index, seed = parse_shapes_spec(shapes_sample)
        if split not in SPLITS:
            raise UserError(f"--shapes-sample: unknown split {split!r}; use one of {list(SPLITS)}")
        sample = generate_sample(split, index, seed)
        return sample.image, expression or sample.expression, sample.mask, sample.others
    if image is None or not expression:
        raise UserError("give IMAGE and EXPRESSION (or --shapes-sample SPLIT:INDEX)")
    rgb = load_image(image)
    truth = None
    if gt_mask is not None:
        truth = load_mask(gt_mask)
        if truth.shape != rgb.shape[:2]:
            raise UserError(f"--gt-mask is {truth.shape[1]}×{truth.shape[0]} but the image is "
                            f"{rgb.shape[1]}×{rgb.shape[0]}")
    return rgb, expression, truth, []


def _critic(name: str, truth: np.ndarray | None, instances: list, accept_iou: float, caption: str | None,
            settings: Any, accuracy: float | None, critic_seed: int, pipe: Any = None):
    if name == "none":
        return None
    if name in ("oracle", "noisy"):
        from addp_agent.critic.oracle import OracleCritic

        if truth is None:
            raise UserError(f"--critic {name} reads the ground truth: pass --gt-mask MASK.png, or "
                            "--shapes-sample SPLIT:INDEX for a Shapes-Ref sample with its instances")
        oracle = OracleCritic(truth, instances, accept_iou)
        if name == "oracle":
            return oracle
        from addp_agent.critic.noisy import ErrorRates, NoisyOracleCritic

        if accuracy is None:
            raise UserError("--critic noisy needs --critic-accuracy A (every error rate is 1 − A)")
        return NoisyOracleCritic(oracle, ErrorRates.from_accuracy(accuracy), critic_seed, key="agent")
    if name == "self":
        from addp_agent.critic.consistency import SelfConsistencyCritic
        from addp_agent.critic.readings import PipelineReader

        return SelfConsistencyCritic(PipelineReader(pipe))
    if name == "paper":
        from addp_agent.critic.paper import PaperCritic

        if not caption:
            raise UserError("--critic paper asks 'This is an image of <CAPTION>. What might confuse …?': "
                            "pass --caption \"a short description of the image\"")
        return PaperCritic(caption, settings=settings)
    from addp_agent.critic.vlm import VLMCritic

    return VLMCritic(settings=settings)


@app.command("agent")
def agent_command(
    image: Path = typer.Argument(None, help="Input image (omit with --shapes-sample)."),
    expression: str = typer.Argument(None, help="Referring expression (default with --shapes-sample: its own)."),
    critic: str = typer.Option("none", "--critic", help=CHOICES_HELP),
    max_rounds: int = typer.Option(3, "--max-rounds", min=1, max=MAX_ROUNDS),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    model: str = typer.Option(None, "--model", help="Model folder, .ckpt/.safetensors file, hub id "
                              "or bundled name, e.g. scenes3d-ris-small (default: shapes-ref-small)."),
    steps: int = typer.Option(None, "--steps", min=1, max=MAX_STEPS, help="Denoising steps (default: the model's)."),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    correction_mode: str = typer.Option(None, "--correction-mode",
                                        help="additive | replace | paper (default: the model's)."),
    resume_step: int = typer.Option(None, "--resume-step", min=1,
                                    help="k: the critic also sees the mask at step k; later rounds resume there."),
    correction_steps: int = typer.Option(None, "--correction-steps", min=1, max=MAX_STEPS,
                                         help="Steps of the corrected rounds, restarted (default: the model's, else "
                                              "--steps)."),
    correction: list[str] = typer.Option(None, "--correction", help="Correctional prompt for round 1 (repeatable)."),
    gt_mask: Path = typer.Option(None, "--gt-mask", help="Ground-truth mask PNG (for --critic oracle / noisy)."),
    shapes_sample: str = typer.Option(None, "--shapes-sample", metavar="SPLIT:INDEX[:SEED]",
                                      help="Image, expression, ground truth and instances from Shapes-Ref (seed 0 "
                                           "unless given; shapes-gen:N:SEED:64 in `addp eval` is the same stream)."),
    convergence_iou: float = typer.Option(0.98, "--convergence-iou", min=0.0,
                                          help="Stop when mask IoU with the previous round reaches this (>1: never)."),
    accept_iou: float = typer.Option(0.9, "--accept-iou", min=0.0, max=1.0, help="The oracle's accept threshold."),
    critic_accuracy: float = typer.Option(None, "--critic-accuracy", min=0.0, max=1.0,
                                          help="--critic noisy: every error rate is 1 − this."),
    critic_seed: int = typer.Option(0, "--critic-seed", min=0, max=MAX_SEED,
                                    help="--critic noisy: seed of its errors."),
    caption: str = typer.Option(None, "--caption", help="Image caption for --critic paper."),
    critic_model: str = typer.Option(None, "--critic-model", help="LLM/VLM name (default: $ADDP_CRITIC_MODEL)."),
    base_url: str = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds per critic request."),
    cache_dir: Path = typer.Option(Path("~/.cache/addp-agent/critic"), "--cache-dir",
                                   help="Critic answer cache (re-runs are free)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the critic cache."),
    device: str = typer.Option(None, help="cpu | cuda | cuda:1 (default: cuda if available)."),
) -> None:
    """Segment, let a critic review each round, add its correction, repeat until it accepts."""
    from addp_agent.devices import check_device
    from addp_agent.limits import Corrections, Expression, check_value
    from addp_agent.outputs_io import check_output_folder
    from addp_agent.text import clean_text

    critic = canonical_critic(critic)
    from addp_agent.engine.guidance import CORRECTION_MODES

    if correction_mode is not None and correction_mode not in CORRECTION_MODES:
        raise UserError(f"--correction-mode must be one of {', '.join(CORRECTION_MODES)}, got {correction_mode!r}")
    if resume_step is not None and steps is not None and resume_step >= steps:
        raise UserError(f"--resume-step must be below --steps ({steps}), got {resume_step}")
    if resume_step is not None and correction_steps is not None:
        raise UserError("--correction-steps and --resume-step exclude each other: a resumed round continues round 1's "
                        "schedule")
    correction = check_value(Corrections, [clean_text(c, "--correction") for c in correction or []], "--correction")
    if expression is not None:
        expression = check_value(Expression, clean_text(expression), "EXPRESSION")
    check_device(device)
    check_output_folder(out, AGENT_FILES, "addp agent")
    from addp_agent.agent import LoopConfig, Session  # the engine's imports: after the cheap checks
    from addp_agent.models.registry import load_pipeline

    rgb, expression, truth, instances = _inputs(image, expression, shapes_sample, gt_mask)
    settings = None
    if critic in ("vlm", "paper"):
        from addp_agent.critic.chat import ChatSettings

        settings = ChatSettings(base_url=base_url, model=critic_model, timeout_s=timeout,
                                cache_dir=None if no_cache else cache_dir).resolved()
    checked = (critic, truth, instances, accept_iou, caption, settings, critic_accuracy, critic_seed)
    judge = _critic(*checked) if critic != "self" else None  # bad critic settings fail before the model loads
    pipe = load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    judge = judge if critic != "self" else _critic(*checked, pipe=pipe)
    config = LoopConfig(max_rounds=max_rounds, num_inference_steps=steps, seed=seed, resume_step=resume_step,
                        correction_steps=correction_steps,
                        convergence_iou=convergence_iou, correction_mode=correction_mode)  # type: ignore[arg-type]
    session = Session(pipe, rgb, expression, config)
    result = session.run(judge, list(correction or []))
    _write(out, session, result, truth, {"critic": critic, "critic_label": critic_label(critic),
                                         "model": model or "bundled default",
                                         "image": str(image) if image else f"shapes:{shapes_sample}"})
    _print_table(result, truth)
    if result.best.result.warning:
        typer.echo(f"warning: {result.best.result.warning}", err=True)


def _write(out: Path, session: Any, result: Any, truth: np.ndarray | None, meta: dict[str, Any]) -> None:
    """The run's files, swapped in together (an earlier run's rounds do not linger)."""
    from addp_agent.masks import mask_iou, mask_to_png_bytes, overlay
    from addp_agent.outputs_io import output_set

    best = result.best
    trace = {**meta, **result.to_json(), **best.result.domain.to_json(), "warning": best.result.warning,
             "config": {k: v for k, v in vars(session.config).items()}}
    if truth is not None:
        for entry, r in zip(trace["rounds"], result.rounds, strict=True):
            entry["iou_with_ground_truth"] = round(mask_iou(r.mask, truth), 4)
    with output_set(out, owns=AGENT_FILES, command="addp agent") as staging:
        for r in result.rounds:
            Image.fromarray(overlay(session.image, r.mask)).save(staging / f"round{r.index}_overlay.png")
            (staging / f"round{r.index}_mask.png").write_bytes(mask_to_png_bytes(r.mask))
            if r.intermediate_mask is not None:
                name = f"round{r.index}_step{r.resumed_from_step}_overlay.png"
                Image.fromarray(overlay(session.image, r.intermediate_mask)).save(staging / name)
        best = result.best
        Image.fromarray(overlay(session.image, best.mask)).save(staging / "overlay.png")
        (staging / "mask.png").write_bytes(mask_to_png_bytes(best.mask))
        (staging / "trace.json").write_text(json.dumps(trace, indent=2, ensure_ascii=False) + "\n",
                                            encoding="utf-8")


def _print_table(result: Any, truth: np.ndarray | None) -> None:
    from addp_agent.masks import mask_iou

    table = Table(title=f"'{result.expression}': stop = {result.stop_reason}, best = round {result.best.index}")
    for column in ("round", "corrections", "area %", "conf.", "IoU prev", *(["IoU GT"] if truth is not None else []),
                   "verdict", "problem / error", "time s"):
        table.add_column(column, overflow="fold")
    for r in result.rounds:
        verdict = r.critique.verdict if r.critique else ("error" if r.critic_error else "-")
        problem = (r.critique.problem if r.critique else r.critic_error) or ""
        area = f"{100 * r.result.area_fraction:.2f}" if r.result.found else "not found"
        row = [str(r.index), "; ".join(r.corrections) or "-", area,
               f"{r.confidence:.2f}", "-" if r.iou_with_previous is None else f"{r.iou_with_previous:.3f}"]
        if truth is not None:
            row.append(f"{mask_iou(r.mask, truth):.3f}")
        row += [verdict, problem[:160], f"{sum(r.timings.values()):.2f}"]
        table.add_row(*row)
    Console(width=160).print(table)
    if result.stop_detail:
        print(f"stop: {result.stop_reason}: {result.stop_detail}")
