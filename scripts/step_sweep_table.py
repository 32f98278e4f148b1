"""Tabulate `scripts/step_sweep.sh`: round-1 and answer mIoU, net gain, answers worse by > 0.1, UNet passes."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def rows(out: Path) -> list[dict]:
    table = []
    for metrics in sorted(out.glob("*/metrics.json")):
        document = json.loads(metrics.read_text())
        config = document["config"]
        first, answer = document["rounds"][0]["mIoU"], document["answer"]["mIoU"]
        table.append({"run": metrics.parent.name, "critic": config["critic"], "steps": config["steps"],
                      "resume_step": config.get("resume_step"),
                      "correction_steps": config.get("correction_steps"),
                      "form": config.get("correction_mode") or "additive", "data": config["data"],
                      "n": document["n"], "round1_mIoU": first,
                      "answer_mIoU": answer, "net_gain": answer - first,
                      "worse": document["answer_vs_round1"]["worse"]["count"],
                      "better": document["answer_vs_round1"]["better"]["count"],
                      "ran_round_2": document["ran_round"].get("2", 0),
                      "passes_per_sample": document["unet"]["passes_per_sample"],
                      "confusable": {k: document["subsets"]["confusable"][k]["mIoU"] if k == "answer" else
                                     document["subsets"]["confusable"]["rounds"][0]["mIoU"]
                                     for k in ("round1", "answer")}})
    return sorted(table, key=lambda r: (r["critic"], r["form"], r["steps"], r["correction_steps"] or 0,
                                         r["resume_step"] or 0))


def markdown(table: list[dict]) -> str:
    lines = ["| critic | form | steps (round 1 → corrected) | resume from k | round 1 mIoU | answer mIoU | net "
             "| worse by > 0.1 | better by > 0.1 | confusable subset (round 1 → answer) | UNet passes / sample |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        steps = f"{r['steps']} → {r['correction_steps']}" if r["correction_steps"] else str(r["steps"])
        lines.append(f"| {r['critic']} | {r['form']} | {steps} | {r['resume_step'] or 'restart'} "
                     f"| {100 * r['round1_mIoU']:.2f} "
                     f"| {100 * r['answer_mIoU']:.2f} | {100 * r['net_gain']:+.2f} | {r['worse']} | {r['better']} "
                     f"| {100 * r['confusable']['round1']:.2f} → {100 * r['confusable']['answer']:.2f} "
                     f"| {r['passes_per_sample']:.2f} |")
    return "\n".join(lines)


def plot(table: list[dict], path: Path) -> None:
    """Answer mIoU against UNet passes per sample, one series per critic, each point labelled with its setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for critic in sorted({r["critic"] for r in table}):
        points = [r for r in table if r["critic"] == critic and r["form"] == "additive"]
        axis.scatter([r["passes_per_sample"] for r in points], [100 * r["answer_mIoU"] for r in points], label=critic)
        for r in points:
            label = (f"{r['steps']}→{r['correction_steps']}" if r["correction_steps"] else
                     f"{r['steps']}" + (f" k{r['resume_step']}" if r["resume_step"] else ""))
            axis.annotate(label, (r["passes_per_sample"], 100 * r["answer_mIoU"]), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("UNet passes per sample (log)")
    axis.set_ylabel("answer mIoU (%)")
    axis.set_title("Steps, resume from k, corrected-round steps (≤ 3 rounds)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    table = rows(folder)
    (folder / "step_sweep.json").write_text(json.dumps(table, indent=2))
    plot(table, folder / "step_sweep.png")
    print(markdown(table))
