"""Correction forms over several data seeds: `python scripts/form_study_table.py runs/form-study/seed-*`.

Each folder is one `scripts/step_sweep.sh` run (FORMS='additive paper replace'); prints, per critic and form, the
net gain over round 1 on each seed, its mean and range, and the answers worse / better by more than 0.1 in total.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from step_sweep_table import rows


def summary(folders: list[Path]) -> list[dict]:
    cells: dict[tuple[str, str], list[dict]] = {}
    for folder in folders:
        for r in rows(folder):
            cells.setdefault((r["critic"], r["form"]), []).append(r)
    out = []
    for (critic, form), runs in sorted(cells.items()):
        gains = [100 * r["net_gain"] for r in runs]
        out.append({"critic": critic, "form": form, "seeds": [r["data"] for r in runs], "net_gains": gains,
                    "mean_net_gain": sum(gains) / len(gains), "worse": sum(r["worse"] for r in runs),
                    "better": sum(r["better"] for r in runs), "n": sum(r["n"] for r in runs),
                    "passes_per_sample": sum(r["passes_per_sample"] for r in runs) / len(runs)})
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| critic | form | net gain per seed | mean (min–max) | worse by > 0.1 | better by > 0.1 | UNet passes |",
             "|---|---|---|---|---|---|---|"]
    for r in table:
        per_seed = ", ".join(f"{g:+.2f}" for g in r["net_gains"])
        lines.append(f"| {r['critic']} | {r['form']} | {per_seed} | {r['mean_net_gain']:+.2f} "
                     f"({min(r['net_gains']):+.2f} to {max(r['net_gains']):+.2f}) | {r['worse']} / {r['n']} "
                     f"| {r['better']} / {r['n']} | {r['passes_per_sample']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    folders = [Path(p) for p in sys.argv[1:]]
    table = summary(folders)
    (folders[0].parent / "form_study.json").write_text(json.dumps(table, indent=2))
    print(markdown(table))
