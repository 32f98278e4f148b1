"""The results page of an effects study and its plots; the artifacts (effects.json, training logs) next to it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from addp_agent.effects.config import AUGMENTATION, EffectsConfig, command_line, sampler_grid
from addp_agent.effects.registry import get_task
from addp_agent.effects.results import RunResult
from addp_agent.effects.stats import Paired, Spread, t_quantile, verdict
from addp_agent.effects.summary import Summary, summarise, write_effects
from addp_agent.effects.task import EffectsTask, Metric

WORLDS = {"scenes-gen": "Scenes-3D", "shapes-gen": "Shapes-Ref", "synthetic": "the synthetic depth world"}
TASK_TITLES = {"ris": "referring segmentation", "depth": "depth"}


def fmt(metric: Metric, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}" if metric.percent else f"{value:.4f}"


def fmt_diff(metric: Metric, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}" if metric.percent else f"{value:+.4f}"


def fmt_spread(metric: Metric, s: Spread | None, diff: bool = False) -> str:
    if s is None:
        return "–"
    one = fmt_diff if diff else fmt
    sd = "" if s.sd is None else f" ± {fmt(metric, s.sd)}"
    return f"{one(metric, s.mean)}{sd} [{one(metric, s.min)}, {one(metric, s.max)}]"


def plot(task: EffectsTask, summary: Summary, img_dir: Path, prefix: str) -> list[Path]:
    """``<prefix>_curves.png`` (mean curve over seeds, min–max band) and ``<prefix>_bars.png`` (test metrics:
    mean bar, one dot per seed, min–max whisker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    scale = 100 if task.curve_metric.percent else 1
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for s in summary.variants:
        if s.curve is None:
            continue
        line, = ax.plot(s.curve.timesteps, [scale * v for v in s.curve.mean], marker="o", ms=3, label=s.variant.name)
        ax.fill_between(s.curve.timesteps, [scale * v for v in s.curve.min], [scale * v for v in s.curve.max],
                        color=line.get_color(), alpha=0.15)
    ax.invert_xaxis()
    ax.set(xlabel="timestep t of the decoded x̂₀ (denoising runs left → right)",
           ylabel=task.curve_metric.label + (" (%)" if task.curve_metric.percent else ""),
           title=f"{task.curve_metric.label} vs timestep (mean over seeds, band: min–max)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    curves = img_dir / f"{prefix}_curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    shown = task.metrics[:2]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.4 * len(shown), 3.4))
    for ax, metric in zip(axes, shown, strict=True):
        unit = 100 if metric.percent else 1
        for x, s in enumerate(summary.variants):
            spread_ = s.metrics.get(metric.key)
            if spread_ is None:
                continue
            ax.bar(x, unit * spread_.mean, 0.6, color=f"C{x}", alpha=0.6)
            ax.errorbar(x, unit * spread_.mean, yerr=[[unit * (spread_.mean - spread_.min)],
                                                       [unit * (spread_.max - spread_.mean)]], color="k", capsize=4)
        for x, s in enumerate(summary.variants):
            dots = s.seed_values.get(metric.key, [])
            ax.scatter([x] * len(dots), [unit * v for v in dots], color="k", s=10, zorder=3)
        ax.set_xticks(range(len(summary.variants)), [s.variant.name for s in summary.variants], fontsize=8)
        ax.set(title=metric.label + (" (%)" if metric.percent else "") + (" ↑" if metric.higher_is_better else " ↓"))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("test, per variant: mean (bar), seeds (dots), min–max", fontsize=9)
    fig.tight_layout()
    bars = img_dir / f"{prefix}_bars.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [curves, bars]


def _reading(config: EffectsConfig, task: EffectsTask, summary: Summary) -> list[str]:
    """What the numbers do and do not show, in sentences made from them."""
    lines = ["### What the numbers show", ""]
    primary = task.primary
    for name, label in (("timesteps", "Contribution-aware timesteps"), ("augment", "Augmentation"),
                        ("both", "Both together")):
        diff = summary.paired.get(name, {}).get(primary.key)
        if diff is None:
            continue
        sign = "all" if diff.same_sign else "not all"
        lines.append(f"- {label} vs baseline, test {primary.label}: {fmt_diff(primary, diff.mean)} "
                     f"(seeds {', '.join(map(str, diff.seeds))}; {sign} of them moved the same way) — "
                     f"{verdict(diff, primary.higher_is_better)}.")
    chosen = {s.variant.name: s.chosen for s in summary.variants}
    lines.append("- Sampler settings chosen on val, per seed: "
                 + "; ".join(f"{name}: {', '.join(c) or '–'}" for name, c in chosen.items()) + ". Each variant is "
                 "scored at its own choice, so a difference includes how well a recipe suits few-step sampling.")
    lines += ["", "### What they do not show", "",
              f"- The paper's scale: these are small models ({config.channels} UNet widths, "
              f"{config.model_resolution} px) trained for {config.steps} steps of batch {config.batch_size}; "
              "effects can shrink, grow or flip with a larger budget.",
              f"- Test-sample noise: every run is scored on the same {config.n_test} test samples, so the spread is "
              "the training seeds' spread on that sample; the CIs do not include how a new test set would move the "
              "means.",
              _certainty(config.seeds),
              "- Cost: the comparison is at equal steps; a variant's time per step (augmentation runs on the CPU) is "
              "not part of it, and the CPU minutes on this page come from a shared machine."]
    return lines


def render(config: EffectsConfig, task: EffectsTask, summary: Summary, results: list[RunResult],
           images: list[Path], doc: Path, artifacts: Path, hardware: list[str], note: str | None = None) -> str:
    rel = [os.path.relpath(p, doc.parent) for p in images]
    art = os.path.relpath(artifacts, doc.parent)
    world = WORLDS.get(config.source.partition(":")[0], config.source)
    grid = sampler_grid(config)
    excluded = [(s.variant.name, k, steps) for s in summary.variants for k, steps in s.incomplete.items()]
    cpu_train = sum(r.train_cpu_s for r in results) / 60
    cpu_eval = sum(r.eval_cpu_s for r in results) / 60
    wall = sum(r.train_wall_s + r.eval_wall_s for r in results) / 60
    metric_cols = " | ".join(f"{m.label}{' (%)' if m.percent else ''} {'↑' if m.higher_is_better else '↓'}"
                             for m in task.metrics)
    lines = [
        f"# ADDP effects on {world}: {TASK_TITLES[config.task]}",
        "",
        *([f"> **{note.strip()}**", ""] if note and note.strip() else []),
        *(["An earlier single-seed Shapes-Ref study (equal time, not equal steps) is kept in "
           "[results-shapes-ref.md](results-shapes-ref.md).", ""]
          if config.task == "ris" and (doc.parent / "results-shapes-ref.md").exists() else []),
        f"> **Small models, small budget.** {config.seeds} training seeds × 4 variants of a "
        f"{config.model_resolution}-px pixel-space model, {config.steps} steps each. The numbers test "
        "the ADDP recipe's pieces against each other at this budget; they are not the paper's experiment.",
        "",
        "Generated by `addp effects` (`addp_agent/effects/`):",
        "",
        "```",
        command_line(config, doc),
        "```",
        "",
        "Each run can go to its own process (`--variant NAME --seed-index K`, resumable: finished runs are reused, "
        "unfinished trainings resume from their checkpoints); the command above then assembles the page.",
        "",
        "## Setup",
        "",
        f"- **Variants** (the same data, model, steps and lr schedule): baseline = uniform t, no augmentation; "
        f"timesteps = `--timesteps {config.sampler}`; augment = {AUGMENTATION[config.task]}; both.",
        f"- **Data**: `{config.source}` — {config.n_train} training samples (the same set for every run); val and "
        f"test are the generator's own val and test splits.",
        f"- **Training**: {config.steps} AdamW steps × batch {config.batch_size} per run (equal steps), lr "
        f"{config.lr:g} ({config.schedule}, {config.warmup} warm-up steps), "
        f"{config.mixed_precision if config.mixed_precision != 'no' else 'fp32'}, EMA; UNet widths "
        f"{config.channels}, {config.model_resolution} px"
        + (f", {config.text_hidden}-d {config.text_layers}-layer text encoder, loss weight {config.paint_weight:g} "
           "on the referent" if config.task == "ris" else ", v-prediction, multi-resolution noise")
        + ".",
        f"- **Seeds**: {config.seeds} per variant; seed index k trains with seed {config.seed} + k (initial weights "
        "and random stream); runs of one index are paired in the differences.",
        f"- **Sampler chosen per run on val** ({config.n_val} val samples, best {task.primary.label}; ties → fewer "
        f"UNet passes): " + "; ".join(s.label for s in grid)
        + (f"; image guidance {config.image_guidance:g}" if config.task == "ris" else "; ensemble 1")
        + ", DDIM trailing. Test never takes part in the choice.",
        f"- **Test**: the first {config.n_test} test samples at the chosen settings"
        + ("; confusable = samples with a same-looking distractor" if config.task == "ris" else
           "; AbsRel, δ1 and RMSE after least-squares scale-and-shift alignment (Marigold protocol)")
        + f". Curve: {config.curve_steps} steps at the chosen guidance, first {config.curve_n} test samples.",
        f"- **Hardware**: {'; '.join(hardware)}. CPU time over all runs: training {cpu_train:.1f} min, selection "
        f"+ test + curve {cpu_eval:.1f} min; wall time {wall:.1f} min (runs may overlap; the machine was shared).",
        "- **Safety stop**: "
        + (f"--max-minutes {config.max_minutes:g} per run. " if config.max_minutes else "none. ")
        + ("Left out as incomplete: " + ", ".join(f"{v} seed {k} ({s} of {config.steps} steps)"
                                                 for v, k, s in excluded) + "."
           if excluded else "No run was stopped early: every run trained for all its steps."),
        "",
        "## Test metrics",
        "",
        "Mean ± SD over seeds, [min, max]" + (" (percent)" if any(m.percent for m in task.metrics) else "") + ".",
        "",
        f"| variant | seeds | {metric_cols} | chosen on val (per seed) |",
        "|---|---|" + "---|" * len(task.metrics) + "---|",
    ]
    for s in summary.variants:
        cells = " | ".join(fmt_spread(m, s.metrics.get(m.key)) for m in task.metrics)
        lines.append(f"| {s.variant.name} | {len(s.seeds)} | {cells} | {'; '.join(s.chosen) or '–'} |")
    lines += ["", "## Differences against the baseline (paired by seed)", "",
              "Δ = variant − baseline per seed: mean ± SD [min, max], the 95 % CI of the mean (Student t), and "
              "whether every seed moved the same way.", "",
              "| variant | metric | Δ | 95 % CI | same sign | reading |", "|---|---|---|---|---|---|"]
    for name, by_metric in summary.paired.items():
        for m in task.metrics:
            diff: Paired | None = by_metric.get(m.key)
            if diff is None:
                lines.append(f"| {name} | {m.label} | – | – | – | no paired seeds |")
                continue
            ci = "–" if diff.ci_low is None else f"[{fmt_diff(m, diff.ci_low)}, {fmt_diff(m, diff.ci_high)}]"
            lines.append(f"| {name} | {m.label} | {fmt_spread(m, diff, diff=True)} | {ci} | "
                         f"{'yes' if diff.same_sign else 'no'} | {verdict(diff, m.higher_is_better)} |")
    lines += ["", f"![test metrics]({rel[1]})", "", f"## {task.curve_metric.label} vs timestep", "",
              f"![curves]({rel[0]})", ""]
    curves = [s for s in summary.variants if s.curve is not None]
    if curves:
        steps = curves[0].curve.timesteps
        lines += [f"Mean over seeds of the {task.curve_metric.label} after each of {config.curve_steps} DDIM steps "
                  "(the x̂₀ of the last step comes before the scheduler's final update):", "",
                  "| variant | " + " | ".join(f"t={t}" for t in steps) + " |", "|---|" + "---|" * len(steps)]
        for s in curves:
            lines.append(f"| {s.variant.name} | " + " | ".join(fmt(task.curve_metric, v) for v in s.curve.mean)
                         + " |")
        lines.append("")
    lines += ["## Sampler selection on val", "",
              f"Val {task.primary.label} per grid setting (mean ± SD over seeds) and how many seeds chose it:", "",
              "| variant | " + " | ".join(f"{g.label}" for g in grid) + " |", "|---|" + "---|" * len(grid)]
    for s in summary.variants:
        by_label = {g.label: g for g in s.grid}
        cells = []
        for g in grid:
            score = by_label.get(g.label)
            cells.append("–" if score is None else
                         f"{fmt(task.primary, score.val.mean)}"
                         + ("" if score.val.sd is None else f" ± {fmt(task.primary, score.val.sd)}")
                         + (f" (**{score.chosen}**)" if score.chosen else ""))
        lines.append(f"| {s.variant.name} | " + " | ".join(cells) + " |")
    lines += ["", *_reading(config, task, summary), "", "## Artifacts", "",
              f"- `{art}/effects.json`: the config, the summary above, and every run (val rows, chosen setting, the "
              "val sample ids, test metrics, curve, steps, CPU and wall time).",
              f"- `{art}/logs/<variant>-seed<k>.jsonl`: each run's training log (loss, lr, steps/s).",
              f"- Plots: `{rel[0]}`, `{rel[1]}`.", ""]
    return "\n".join(lines)


def write_report(config: EffectsConfig, results: list[RunResult], doc: Path, img_dir: Path,
                 artifacts: Path | None = None, note: str | None = None) -> Path:
    """The page, its two plots, and the artifacts folder (effects.json, one training log per run); ``note`` is
    put at the top of the page (e.g. what scale the study ran at)."""
    task = get_task(config.task)
    artifacts = artifacts or doc.parent / "effects" / config.task
    (artifacts / "logs").mkdir(parents=True, exist_ok=True)
    document = write_effects(config, task, results, artifacts / "effects.json")
    for r in results:
        source = config.folder / r.log
        if source.exists():
            shutil.copyfile(source, artifacts / "logs" / f"{r.variant.name}-seed{r.seed_index}.jsonl")
    summary = summarise(config, task, results)
    images = plot(task, summary, img_dir, f"effects_{config.task}")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(config, task, summary, results, images, doc, artifacts, document["hardware"], note))
    return doc


def load_results(path: Path) -> tuple[EffectsConfig, list[RunResult]]:
    """An ``effects.json`` back as its config and runs (to re-render a page without the run folders)."""
    document = json.loads(path.read_text())
    return (EffectsConfig.model_validate(document["config"]),
            [RunResult.model_validate(r) for r in document["runs"]])


def _certainty(seeds: int) -> str:
    """The page's line on what n seeds can tell apart (Student's t for the actual n)."""
    if seeds < 2:
        return "- Certainty with 1 seed: none; a difference from one seed has no confidence interval."
    return (f"- Certainty with {seeds} seeds: a 95 % CI from n seeds uses Student's t with n − 1 degrees of freedom "
            f"({t_quantile(seeds - 1):.2f} for n = {seeds}), so only effects several times the seed SD are called "
            "distinguishable.")
