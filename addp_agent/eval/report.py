"""``report.md``: the run's settings, metrics per round, transitions, stops, skips and figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from addp_agent.critic.names import critic_label
from addp_agent.eval.records import SampleRecord

COLUMNS = ("mIoU", "oIoU", "P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "gIoU", "cIoU", "N-acc", "T-acc")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _protocol_lines(document: dict[str, Any]) -> list[str]:
    """Where the settings came from: the protocol and what the command line changed in it; the decoding rule."""
    config, lines = document["config"], []
    protocol = document.get("protocol")
    if protocol:
        changed = [f"`{k}` {v['used']} (protocol: {v['preset']})" for k, v in protocol["changed"].items()]
        lines.append(f"Protocol `{protocol['name']}`: {protocol['title']}; "
                     + (f"changed for this run: {', '.join(changed)}." if changed else "as specified."))
    size = f"{config['decode_size']}×{config['decode_size']} (ground truth resized NEAREST)" \
        if config.get("decode_size") else "each image's size"
    def given(key: str) -> Any:
        return "model default" if config.get(key) is None else config[key]

    lines.append(f"Masks: RGB distance to pure red < {config.get('threshold', 50.0):g}, decoded and scored at {size}; "
                 f"working resolution {given('resolution')}, sampler {given('scheduler')}, guidance text "
                 f"{given('guidance_scale')} / image {given('image_guidance_scale')}.")
    return [*lines, ""]


def metrics_table(block: dict[str, Any]) -> list[str]:
    """Markdown rows: one per round and one for the loop's answer (percent)."""
    lines = ["| round | n | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    rows = [(str(r["round"]), r) for r in block["rounds"]] + [("answer", block["answer"])]
    lines += [f"| {name} | {r['n']} | " + " | ".join(_pct(r[c]) for c in COLUMNS) + " |" for name, r in rows]
    return lines


def target_counts(records: list[SampleRecord]) -> str:
    """``"3 without a target, 40 with one, 7 with several"`` over the evaluated records."""
    counts = Counter(min(r.targets, 2) for r in records if r.rounds)
    return f"{counts[0]} without a target, {counts[1]} with one, {counts[2]} with several"


def write_report(path: Path, document: dict[str, Any], records: list[SampleRecord], figures: dict[str, str]) -> Path:
    """Write the markdown report next to ``metrics.json``."""
    config = document["config"]
    lines = ["# Evaluation report", "",
             f"Data `{config['data']}` split `{config['split']}`, model `{config['model'] or 'bundled default'}`, "
             f"critic **{critic_label(config['critic'])}**, up to {config['max_rounds']} rounds, steps "
             f"{config['steps'] or 'model default'}, seed {config['seed']}, batch {config['batch_size']}.", "",
             *_protocol_lines(document),
             f"{document['n']} samples evaluated ({target_counts(records)}); {document['skipped']['total']} skipped"
             + "".join(f", {n} {reason}" for reason, n in document["skipped"]["reasons"].items()) + ".", "",
             "Values in %. Every round covers all samples: a sample that stopped early (accepted, converged, critic "
             "failure, no usable correction) carries its last mask forward. *answer* scores the round the loop "
             "picked (the accepted one, else the one the critic scores highest, else the most confident; never "
             "by ground truth). mIoU, oIoU and P@X count an empty prediction of "
             "an empty truth as IoU 1; gIoU, cIoU, N-acc and T-acc follow gRefCOCO (ReLA): N-acc is the share of "
             "no-target samples answered *not found*, T-acc the share of samples with targets answered *found*.",
             "", "## All samples", "", *metrics_table(document)]
    for name, block in document.get("subsets", {}).items():
        if name == "one_target" and block["rounds"][0]["n"] == document["n"]:
            continue  # every sample has one target: the table would repeat the one above
        lines += ["", f"## {name.replace('_', ' ').capitalize()} subset", "", *metrics_table(block)]
    lines += ["", "## Between rounds", "", "| rounds | improved | worsened | unchanged | ran the later round |",
              "|---|---|---|---|---|"]
    lines += [f"| {t['from']}→{t['to']} | {t['improved']} | {t['worsened']} | {t['unchanged']} | "
              f"{document['ran_round'][str(t['to'])]} |" for t in document["transitions"]]
    failures = document["critic_failures"]
    lines += ["", f"Critic failures: {failures['total']} (by round: {failures['by_round']}).",
              f"Stop reasons: {document['stop_reasons']}.",
              "Domain check (the model's own; a warning, samples are still scored): "
              + ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in document.get("domain", {}).items()) + "."]
    versus = document.get("answer_vs_round1")
    if versus:
        lines.append(f"Answer vs round 1: {versus['worse']['count']} samples ({_pct(versus['worse']['share'])} %) "
                     f"end more than {versus['by']:g} IoU below their round 1, {versus['better']['count']} "
                     f"({_pct(versus['better']['share'])} %) more than {versus['by']:g} above.")
    unet = document.get("unet")
    if unet and unet.get("passes_per_sample") is not None:
        lines.append(f"Cost: {unet['passes_per_sample']:.2f} UNet passes per sample (a pass: one uncorrected step of "
                     f"one sample; {unet['rows_per_sample']:.1f} image rows, {unet['calls_per_sample']:.2f} calls).")
    changed = sorted((r for r in records if r.rounds), key=lambda r: r.rounds[-1].iou - r.rounds[0].iou)
    if changed and len(changed[0].rounds) > 1:
        worst = changed[0]
        lines.append(f"Largest loss: `{worst.sample_id}` \"{worst.expression}\" "
                     f"{worst.rounds[0].iou:.3f} → {worst.rounds[-1].iou:.3f}.")
    if changed and len(changed[-1].rounds) > 1:
        best = changed[-1]
        lines.append(f"Largest gain: `{best.sample_id}` \"{best.expression}\" "
                     f"{best.rounds[0].iou:.3f} → {best.rounds[-1].iou:.3f}.")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{title}]({name})" for title, name in figures.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
