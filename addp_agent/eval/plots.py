"""Evaluation figures: metrics per round, and an overlay gallery of the biggest gains and losses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from addp_agent.critic.names import critic_label  # noqa: E402
from addp_agent.eval.records import EvalConfig, SampleRecord  # noqa: E402
from addp_agent.masks import decode_rle, overlay  # noqa: E402

KEYS = ("mIoU", "oIoU", "P@0.5", "P@0.7", "P@0.9")


def metrics_plot(document: dict[str, Any], path: Path) -> Path:
    """mIoU, oIoU and P@k (%) against the round (later rounds include carried-forward masks)."""
    rounds = [r["round"] for r in document["rounds"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    generalized = ("gIoU", "N-acc") if document["rounds"][0].get("n_no_target") else ()
    for key in (*KEYS, *generalized):
        values = [100 * (r[key] or 0.0) for r in document["rounds"]]
        ax.plot(rounds, values, marker="o", label=key)
    if "confusable" in document.get("subsets", {}):
        values = [100 * (r["mIoU"] or 0.0) for r in document["subsets"]["confusable"]["rounds"]]
        ax.plot(rounds, values, marker="s", linestyle="--", label="mIoU (confusable)")
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel("%")
    ax.set_title(f"{document['n']} samples, critic: {critic_label(document['config']['critic'])}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def gains(records: list[SampleRecord]) -> list[tuple[float, SampleRecord]]:
    """(last-round IoU − first-round IoU, record) for samples whose IoU changed, biggest gain first."""
    changed = [(r.rounds[-1].iou - r.rounds[0].iou, r) for r in records if r.rounds]
    return sorted([c for c in changed if c[0] != 0.0], key=lambda c: (-c[0], c[1].index))


def gallery(config: EvalConfig, records: list[SampleRecord], path: Path, size: int = 4) -> Path | None:
    """Rows of (ground truth, round 1, last round) overlays for the ``size`` biggest gains and losses."""
    from addp_agent.eval.batch import scored_view
    from addp_agent.eval.shard import open_stream

    ranked = gains(records)
    picked = [c for c in ranked if c[0] > 0][:size] + [c for c in ranked[::-1] if c[0] < 0][:size]
    if not picked:
        return None
    wanted = {r.index for _, r in picked}
    images: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    _, stream = open_stream(config)
    for index, sample in stream:
        if index in wanted:
            scored = scored_view(sample, config.decoding)  # the size the masks were scored at
            images[index] = (scored.image, scored.mask)
        if len(images) == len(wanted) or index > max(wanted):
            break
    fig, axes = plt.subplots(len(picked), 3, figsize=(7.5, 2.6 * len(picked)), dpi=100, squeeze=False)
    for row, (gain, record) in zip(axes, picked, strict=True):
        image, gt = images[record.index]
        first, last = record.rounds[0], record.rounds[-1]
        panels = [(gt, f"GT ({record.targets} targets): {record.expression[:40]}"),
                  (decode_rle(first.mask_rle), f"round 1: IoU {first.iou:.3f}{'' if first.found else ', not found'}"),
                  (decode_rle(last.mask_rle), f"round {last.round}: IoU {last.iou:.3f} ({gain:+.3f})"
                                              f"{'' if last.found else ', not found'}\n"
                                              f"D⁻: {', '.join(last.corrections)[:40] or 'none'}")]
        for ax, (mask, title) in zip(row, panels, strict=True):
            ax.imshow(overlay(image, mask))
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def critic_study_plot(study: dict[str, Any], path: Path) -> Path:
    """Net gain of the loop (mIoU points) and the share of samples made worse, against the critic's accuracy."""
    rows = [r for r in study["rows"] if r["net_gain"] is not None]
    accuracy = [r["accuracy"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.plot(accuracy, [100 * r["net_gain"] for r in rows], marker="o", label="net gain (answer − round 1)")
    ax.set_xlabel("critic accuracy (each error rate = 1 − accuracy)")
    ax.set_ylabel("mIoU points")
    worse = ax.twinx()
    worse.plot(accuracy, [100 * (r["worse_share"] or 0.0) for r in rows], marker="s", linestyle="--",
               color="tab:red", label="worse than round 1 by > 0.1")
    worse.set_ylabel("% of samples", color="tab:red")
    even = study["break_even"]["accuracy"]
    if even is not None:
        ax.axvline(even, color="tab:green", linestyle=":", label=f"break-even {even:.3f}")
    lines = ax.get_legend_handles_labels()
    more = worse.get_legend_handles_labels()
    fig.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="lower center", ncol=3, frameon=False)
    ax.set_title(f"{study['critic']}: {study['config']['data']}, n = {rows[0]['n'] if rows else 0}", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def reliability_diagram(raw: list[float], mapped: list[float], correct: list[bool], path: Path,
                        title: str = "") -> Path:
    """Accuracy against confidence in 10 equal-width bins, before (the decoder's score) and after the confidence
    map, with each curve's ECE; the diagonal is perfect calibration."""
    from addp_agent.reliability import expected_calibration_error, reliability_bins

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.8, 5.4), dpi=120, sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for values, label, marker in ((raw, "decoder score", "o"), (mapped, "calibrated", "s")):
        bins = reliability_bins(values, correct)
        ece = expected_calibration_error(values, correct)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker,
                label=f"{label} (ECE {ece:.3f})")
        hist.hist(values, bins=np.linspace(0, 1, 11), alpha=0.5, label=label)
    ax.set_ylabel("accuracy (IoU ≥ 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=9)
    hist.set_xlabel("confidence")
    hist.set_ylabel("rounds")
    hist.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
