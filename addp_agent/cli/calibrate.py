"""`addp calibrate --model DIR --data SPEC`: fit the found rule, the confidence map and the domain check into
DIR/calibration.json (see docs/calibration.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from addp_agent.cli.app import app
from addp_agent.limits import MAX_SEED

SECTIONS = ("found", "confidence", "domain")
MAX_NATURAL = 20_000  # natural images for the domain detection rate (generated and checked one at a time)


def _sections(only: str | None, domain: str | None, domain_data: str | None) -> set[str]:
    from addp_agent.errors import UserError

    if domain is not None and not domain.strip():
        raise UserError("--domain is empty; name the model's domain, e.g. synthetic-scenes3d")
    if (domain is None) != (domain_data is None):
        raise UserError("--domain and --domain-data go together (the domain's name and the model's training images)")
    if only is None:
        return {"found", "confidence", *(("domain",) if domain else ())}
    chosen = {name.strip() for name in only.split(",") if name.strip()}
    unknown = sorted(chosen - set(SECTIONS))
    if unknown or not chosen:
        raise UserError(f"--only takes a comma-separated subset of {', '.join(SECTIONS)}, got {only!r}")
    if "domain" in chosen and domain is None:
        raise UserError("--only domain needs --domain NAME and --domain-data SPEC")
    return chosen


@app.command("calibrate")
def calibrate_command(
    model: Path = typer.Option(..., "--model", help="Model folder; calibration.json is written into it."),
    data: str = typer.Option(..., "--data", help="Validation source, e.g. shapes-gen:1000:0:64 or "
                                                 "scenes-gen:400:1:128:default:generalized (no-target samples "
                                                 "for the found rule)."),
    split: str = typer.Option("val", "--split"),
    only: str = typer.Option(None, "--only", help="Fit only these sections: found,confidence,domain (default: "
                                                  "found when the data has no-target samples, confidence, and "
                                                  "domain when --domain is given)."),
    domain: str = typer.Option(None, "--domain", help="The model's domain, e.g. synthetic-shapes, "
                                                      "synthetic-scenes3d."),
    domain_data: str = typer.Option(None, "--domain-data", help="The model's training images (split train), "
                                                                "e.g. shapes-gen:2000:0:64."),
    resolution: int = typer.Option(None, "--resolution", help="Working resolution for the domain check (default: "
                                                              "the model's; needed for non-RIS models)."),
    test: str = typer.Option(None, "--test", help="Unseen data (e.g. another seed) to measure ECE and domain "
                                                  "rates on."),
    test_split: str = typer.Option("test", "--test-split"),
    natural: int = typer.Option(400, "--natural", help="Natural images for the domain detection rate."),
    plot: Path = typer.Option(None, "--plot", help="Write the reliability diagram (on --test, else --data) here."),
    limit: int = typer.Option(None, "--limit", help="Use the first N samples of --data and of --test (default: all)."),
    steps: int = typer.Option(None, "--steps", help="Denoising steps (default: the model's)."),
    found_objective: str = typer.Option("gIoU", "--found-objective", help="What the found rule maximises on "
                                        "--data: gIoU (GRES's headline metric) or balanced (½·(N-acc + T-acc))."),
    batch_size: int = typer.Option(16, "--batch-size"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED),
    device: str = typer.Option(None, help="cpu | cuda (default: cuda if available)."),
) -> None:
    """Fit the found rule (best gIoU, or ½·(N-acc + T-acc)), the confidence map (Platt scaling of the decoder's score to
    P(IoU ≥ 0.5)) and the domain check (image statistics of the training images) on validation data."""
    from addp_agent.errors import UserError
    from addp_agent.eval import calibrate as fit
    from addp_agent.models.calibration import CALIBRATION_FILE, FOUND_OBJECTIVES, Calibration
    from addp_agent.outputs_io import check_output_file

    if found_objective not in FOUND_OBJECTIVES:
        raise UserError(f"--found-objective must be one of {', '.join(FOUND_OBJECTIVES)}, got {found_objective!r}")
    if not model.is_dir():
        raise UserError(f"--model {model}: not a model folder (calibration.json is written into it)")
    for name, value in (("--limit", limit), ("--steps", steps), ("--resolution", resolution)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be ≥ 1, got {value}")
    if plot is not None and (plot.suffix.lower() != ".png" or plot.is_dir()):
        raise UserError(f"--plot {plot}: give a .png file path")
    check_output_file(model / CALIBRATION_FILE, "--model")  # both written after the fit: checked before it
    if plot is not None:
        check_output_file(plot, "--plot")
    if not 0 <= natural <= MAX_NATURAL:
        raise UserError(f"--natural must be between 0 and {MAX_NATURAL}, got {natural}")
    sections = _sections(only, domain, domain_data)
    existing = Calibration.load(model) or Calibration()
    pipe = None
    if sections & {"found", "confidence"} or resolution is None:
        from addp_agent.errors import ModelLoadError
        from addp_agent.models.registry import load_pipeline

        try:
            pipe = load_pipeline(str(model), device=device, progress=False)
        except ModelLoadError as error:
            hint = "" if sections & {"found", "confidence"} else " (for a depth model: --only domain --resolution N)"
            raise UserError(f"{error}{hint}") from None
        pipe.set_progress_bar_config(disable=True)
    fitted: dict[str, object] = {}
    lines: list[str] = []
    rounds = test_rounds = None
    if pipe is not None and sections & {"found", "confidence"}:
        rounds = fit.run_rounds(pipe, data, split, limit, batch_size, seed, steps)
        if test is not None:
            test_rounds = fit.run_rounds(pipe, test, test_split, limit, batch_size, seed, steps)
    rule = existing.found_rule()
    if "found" in sections and rounds is not None and (only is not None or 0 in rounds.targets):
        found = fit.fit_found_section(rounds, found_objective)  # type: ignore[arg-type]
        fitted["found"], rule = found, found.found_rule()
        lines.append(f"found rule (maximises {found.objective}): {found.statistic} ≥ {found.threshold:.6g} on "
                     f"{found.n} samples ({found.n_no_target} without a target): N-acc {found.n_acc:.3f}, T-acc "
                     f"{found.t_acc:.3f}, gIoU {found.g_iou:.3f} (uncalibrated: N-acc {found.uncalibrated_n_acc:.3f}, "
                     f"T-acc {found.uncalibrated_t_acc:.3f}, gIoU {found.uncalibrated_g_iou:.3f})")
    elif "found" in sections and rounds is not None:
        lines.append(f"found rule: not fitted ({data} has no no-target samples); kept: "
                     f"{'none' if rule is None else f'{rule.statistic} ≥ {rule.threshold:.6g}'}")
    report = None
    if "confidence" in sections and rounds is not None:
        confidence = fit.fit_confidence_section(rounds, rule)
        if test_rounds is not None:
            report = fit.confidence_report(test_rounds, rule, confidence.confidence_map())
            confidence = confidence.model_copy(update={"test": {
                key: report[key] for key in ("data", "split", "n", "accuracy", "ece_before", "ece_after")}})
        else:
            report = fit.confidence_report(rounds, rule, confidence.confidence_map())
        fitted["confidence"] = confidence
        measured = f"; on {test} {test_split}: ECE {report['ece_before']:.3f} → {report['ece_after']:.3f}" \
            if test_rounds is not None else ""
        lines.append(f"confidence map: σ({confidence.slope:.4g}·logit(c) + {confidence.bias:.4g}) on {confidence.n} "
                     f"rounds (accuracy {confidence.accuracy:.3f}): ECE {confidence.ece_before:.3f} → "
                     f"{confidence.ece_after:.3f}{measured}")
    if "domain" in sections:
        assert domain is not None and domain_data is not None
        held_out = [s.image for s in fit.load_samples(data, split, limit)]
        check = fit.fit_domain_section(domain, resolution or pipe.resolution, domain_data, held_out,
                                       f"{data} split {split}")
        if test is not None:
            test_images = [s.image for s in fit.load_samples(test, test_split, limit)]
            rates = fit.domain_rates(check, test_images, natural)
            check = check.model_copy(update={"measured": {"in_domain_data": f"{test} split {test_split}", **rates}})
            lines.append(f"domain {domain}: false alarms {rates['false_alarm_rate']:.3%} of {rates['n_in_domain']} "
                         f"unseen in-domain images, detection {rates['detection_rate']:.2%} of "
                         f"{rates['n_out_of_domain']} natural images")
        fitted["domain"] = check
        lines.append(f"domain {domain}: fitted on {check.n_fit} images, threshold from {check.n_held_out} held-out")
    path = fit.write_sections(model, **fitted)
    if plot is not None and report is not None:
        from addp_agent.eval.plots import reliability_diagram

        reliability_diagram(report["raw"], report["mapped"], report["correct"], plot,  # type: ignore[arg-type]
                            f"{model.name}: {report['data']} {report['split']}, n={report['n']}")
        lines.append(f"reliability diagram → {plot}")
    for line in lines:
        typer.echo(line)
    typer.echo(f"→ {path}")
