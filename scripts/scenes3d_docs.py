"""Gallery images and distribution tables for docs/scenes-3d.md.

    python scripts/scenes3d_docs.py --n 2000            # tables (markdown on stdout) + docs/img/scenes3d_*.png
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from addp_agent.data.scenes3d import FAMILIES, ScenesRef, preset_config  # noqa: E402
from addp_agent.data.scenes3d.dataset import generate_records, to_ris  # noqa: E402


def gallery(preset: str, mode: str, path: Path, seed: int = 7, rows: int = 4) -> None:
    config = preset_config(preset, mode=mode)
    records = generate_records("val", list(range(rows)), seed, config)
    fig, axes = plt.subplots(rows, 4, figsize=(12, 3.3 * rows))
    palette = plt.get_cmap("tab10")
    for row, record in zip(axes, records, strict=True):
        sample = to_ris(record, config)
        ids = record.rendered.ids
        instances = np.zeros((*ids.shape, 3))
        instances[ids == -1] = 0.15
        for k in range(len(record.facts)):
            instances[ids == k] = palette(k % 10)[:3]
        overlay = sample.image.astype(float) / 255
        overlay[sample.mask] = overlay[sample.mask] * 0.35 + np.array([1.0, 0.0, 0.0]) * 0.65
        depth = row[2].imshow(record.rendered.depth, cmap="Spectral")
        fig.colorbar(depth, ax=row[2], fraction=0.046, pad=0.02, label="z-depth (m)")
        for ax, image, title in ((row[0], sample.image, "RGB"), (row[1], instances, "visible instance masks"),
                                 (row[3], overlay, f"[{sample.family}, {sample.n_targets} target(s)]\n"
                                                   f"{sample.expression}")):
            ax.imshow(image)
            ax.set_title(title, fontsize=8, wrap=True)
        row[2].set_title("metric depth", fontsize=8)
        for ax in row:
            ax.axis("off")
    fig.suptitle(f"Scenes-3D, preset {preset}, {mode} mode (128 px, val, seed {seed})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def table_rows(preset: str, mode: str, n: int) -> dict:
    config = preset_config(preset, mode=mode)
    families, targets, objects, words = Counter(), Counter(), Counter(), []
    visible, target_px, confusable, texts = [], [], 0, set()
    for sample in ScenesRef("test", n, 0, config):
        families[sample.family] += 1
        targets[min(sample.n_targets, 3)] += 1
        objects[len(sample.meta["objects"])] += 1
        visible += [o["visible_fraction"] for o in sample.meta["objects"]]
        target_px += [m.sum() for m in sample.target_masks]
        confusable += sample.confusable
        words.append(len(sample.expression.split()))
        texts.add(sample.expression)
    visible_array = np.asarray(visible)
    return {"families": families, "targets": targets, "objects": objects, "n": n,
            "mean_visible": visible_array.mean(), "occluded": (visible_array < 0.99).mean(),
            "under_half": (visible_array < 0.5).mean(), "target_px": statistics.mean(target_px),
            "target_px_min": min(target_px), "confusable": confusable / n, "words": statistics.mean(words),
            "distinct": len(texts)}


def markdown(results: dict[tuple[str, str], dict]) -> str:
    keys = list(results)
    head = "| | " + " | ".join(f"{p} / {m}" for p, m in keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    out = ["### Families (share of expressions)\n", head]
    for family in FAMILIES:
        out.append(f"| {family} | " + " | ".join(f"{results[k]['families'][family] / results[k]['n']:.1%}"
                                                for k in keys) + " |\n")
    out += ["\n### Targets per expression\n", head]
    for count, label in ((0, "0 (no target)"), (1, "1"), (2, "2"), (3, "3 or more")):
        out.append(f"| {label} | " + " | ".join(f"{results[k]['targets'][count] / results[k]['n']:.1%}"
                                               for k in keys) + " |\n")
    out += ["\n### Objects per scene\n", head]
    for count in range(2, 11):
        if any(results[k]["objects"][count] for k in keys):
            out.append(f"| {count} | " + " | ".join(f"{results[k]['objects'][count] / results[k]['n']:.1%}"
                                                   for k in keys) + " |\n")
    out += ["\n### Occlusion, areas, language\n", head]
    for name, key, fmt in (("mean visible fraction of an object", "mean_visible", "{:.1%}"),
                           ("objects partly hidden (< 99 % visible)", "occluded", "{:.1%}"),
                           ("objects under half visible", "under_half", "{:.1%}"),
                           ("mean target area (px at 128 px)", "target_px", "{:.0f}"),
                           ("smallest target (px)", "target_px_min", "{:.0f}"),
                           ("confusable (has a near-miss distractor)", "confusable", "{:.1%}"),
                           ("mean words per expression", "words", "{:.1f}"),
                           ("distinct expressions", "distinct", "{}")):
        out.append(f"| {name} | " + " | ".join(fmt.format(results[k][key]) for k in keys) + " |\n")
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="test samples per preset/mode for the tables")
    parser.add_argument("--img-dir", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.img_dir.mkdir(parents=True, exist_ok=True)
    for preset in ("default", "hard"):
        gallery(preset, "generalized", args.img_dir / f"scenes3d_{preset}.png")
    results = {(p, m): table_rows(p, m, args.n) for p in ("default", "hard") for m in ("classic", "generalized")}
    print(f"({args.n} test samples each, seed 0, 128 px)\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
