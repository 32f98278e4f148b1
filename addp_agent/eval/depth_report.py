"""The files of a depth evaluation run: metrics.json, samples.jsonl, the x̂₀ curve, report.md and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from addp_agent.depth_metrics import DEPTH_KEYS, DepthMetrics  # noqa: E402
from addp_agent.outputs_io import output_set  # noqa: E402

DEPTH_EVAL_FILES = ("metrics.json", "samples.jsonl", "metrics_state.json", "report.md", "*.png", "x0_curve.csv",
                    "contribution.json")

LABELS = {"abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE", "rmse_log": "RMSE-log", "delta1": "δ1",
          "delta2": "δ2", "delta3": "δ3"}
PERCENT = ("abs_rel", "delta1", "delta2", "delta3")


def curve_plot(curve: dict[str, Any], path: Path) -> Path:
    """AbsRel and δ1 of the x̂₀ after each step against the timestep, noisiest on the left."""
    t = np.asarray(curve["timesteps"])
    abs_rel, spread = 100 * np.asarray(curve["abs_rel"]), 100 * np.asarray(curve["abs_rel_std"])
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    ax.fill_between(t, abs_rel - 1.96 * spread / np.sqrt(curve["n"]), abs_rel + 1.96 * spread / np.sqrt(curve["n"]),
                    alpha=0.25, label="95 % band")
    ax.plot(t, abs_rel, marker="o", markersize=3, label="AbsRel")
    ax.invert_xaxis()
    ax.set_xlabel("timestep t (denoising →)")
    ax.set_ylabel("AbsRel (%) of x̂₀")
    twin = ax.twinx()
    twin.plot(t, 100 * np.asarray(curve["delta1"]), color="tab:green", linestyle="--", label="δ1")
    twin.set_ylabel("δ1 (%)")
    ax.set_title(f"Depth of x̂₀ vs. timestep ({curve['n']} samples)")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def histogram_plot(records: list[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.hist([100 * r["abs_rel"] for r in records], bins=30)
    ax.set_xlabel("AbsRel (%) per sample")
    ax.set_ylabel("samples")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def gallery_plot(items: list, path: Path) -> Path:
    """Rows of RGB | ground truth | aligned prediction | relative error, depth on one colour scale per row."""
    fig, axes = plt.subplots(len(items), 4, figsize=(10, 2.6 * len(items)), dpi=100, squeeze=False)
    for row, item in zip(axes, items, strict=True):
        gt = np.where(item.valid, item.gt, np.nan)
        low, high = np.nanpercentile(gt, [1, 99]) if item.valid.any() else (0, 1)
        error = np.where(item.valid, np.abs(item.aligned - item.gt) / np.maximum(item.gt, 1e-6), np.nan)
        panels = [(item.image, "RGB", {}), (gt, "ground truth", {"cmap": "Spectral", "vmin": low, "vmax": high}),
                  (item.aligned, "prediction (aligned)", {"cmap": "Spectral", "vmin": low, "vmax": high}),
                  (error, f"|error| / depth, AbsRel {100 * item.abs_rel:.1f} %", {"cmap": "magma", "vmin": 0,
                                                                                     "vmax": 0.2})]
        for ax, (data, title, style) in zip(row, panels, strict=True):
            ax.imshow(data, **style)
            ax.set_title(title if ax is not row[0] else f"{item.sample_id[-24:]}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_curve(curve: dict[str, Any], folder: Path, meta: dict[str, Any]) -> list[Path]:
    from addp_agent.train.contribution import write_contribution

    table = folder / "x0_curve.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "timestep", "abs_rel", "abs_rel_std", "delta1", "contribution"])
        for step, row in enumerate(zip(curve["timesteps"], curve["abs_rel"], curve["abs_rel_std"], curve["delta1"],
                                       curve["contribution"], strict=True)):
            writer.writerow([step, row[0], *(f"{v:.6f}" for v in row[1:])])
    contribution = write_contribution(folder / "contribution.json", curve["timesteps"], curve["contribution"],
                                      source="addp eval --task depth (δ1 of x̂₀)", n=curve["n"], **meta)
    return [table, contribution, curve_plot(curve, folder / "x0_curve.png")]


def report(document: dict[str, Any], figures: dict[str, str]) -> str:
    config = document["config"]
    low, high = document["depth_range"]
    lines = ["# Depth evaluation report", "",
             f"Data `{config['data']}` split `{config['split']}`, model `{config['model'] or 'bundled depth model'}`, "
             f"steps {config['steps'] or 'model default'}, ensemble {config['ensemble']}, processing resolution "
             f"{config['processing_resolution'] if config['processing_resolution'] is not None else 'model default'}"
             f", seed {config['seed']}.", "",
             f"{document['n']} samples evaluated; {document['skipped']['total']} skipped"
             + "".join(f", {n} {reason}" for reason, n in document["skipped"]["reasons"].items()) + f". Valid depth "
             f"range {low:g}–{'∞' if high is None else f'{high:g}'} m; "
             f"{document['seconds_per_sample']:.3f} s per sample.", "",
             "Least-squares scale and shift on the valid pixels, clipped to the range, then per-image metrics averaged "
             "over images (Marigold's protocol). AbsRel and δ in %, SqRel and RMSE in metres.", "",
             "| " + " | ".join(LABELS[k] for k in DEPTH_KEYS) + " |", "|---" * len(DEPTH_KEYS) + "|",
             "| " + " | ".join(f"{100 * document[k]:.2f}" if k in PERCENT else f"{document[k]:.3f}"
                               for k in DEPTH_KEYS) + " |"]
    curve = document.get("x0_curve")
    if curve:
        lines += ["", f"## x̂₀ after each step ({curve['n']} samples, single members)", "",
                  "| step | t | AbsRel % | δ1 % | c_t |", "|---|---|---|---|---|"]
        lines += [f"| {i} | {t} | {100 * a:.2f} | {100 * d:.2f} | {c:.3f} |" for i, (t, a, d, c) in
                  enumerate(zip(curve["timesteps"], curve["abs_rel"], curve["delta1"], curve["contribution"],
                                strict=True))]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{title}]({name})" for title, name in figures.items()]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, document: dict[str, Any], records: list[dict[str, Any]], gallery: list,
                  metrics: DepthMetrics) -> None:
    """Write every file into a staging folder beside ``out`` and swap it in whole (no half-written run, no file of
    an earlier run left beside the new ones)."""
    with output_set(out, owns=DEPTH_EVAL_FILES, command="addp eval --task depth") as staging:
        (staging / "metrics.json").write_text(json.dumps(document, indent=2))
        (staging / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        metrics.save(staging / "metrics_state.json")
        figures = {"AbsRel per sample": histogram_plot(records, staging / "abs_rel_hist.png").name}
        if gallery:
            figures["RGB | ground truth | prediction | error"] = gallery_plot(gallery, staging / "gallery.png").name
        if document.get("x0_curve"):
            meta = {"data": document["config"]["data"], "split": document["config"]["split"]}
            files = write_curve(document["x0_curve"], staging, meta)
            figures["x̂₀ AbsRel and δ1 vs. timestep"] = files[-1].name
        (staging / "report.md").write_text(report(document, figures))
