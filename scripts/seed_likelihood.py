"""Offline check: can the model's own denoising error pick the right one of K seed readings?

A diffusion-classifier-style verifier that reads no ground truth. Each reading is painted into the image (as in
training), noised at fixed timesteps with noise shared by all readings, and denoised once by the model, with the
expression (``err_c``) and with the null prompt (``err_u``); the error is the mean squared difference between the
model's x̂₀ and the painted reading. A lower error means the model finds the reading more likely.

``python scripts/seed_likelihood.py MODEL DATA_SPEC K OUT.json`` writes one row per test sample (its readings'
IoUs with the ground truth, their seed agreement, ``err_c`` and ``err_u`` per timestep) and prints, on the
confusable subset, round 1 (seed 0) against the reading each score picks (ties and no improvement: seed 0), and
the best of K by ground truth (an upper bound no critic can use). ``python scripts/seed_likelihood.py --table
OUT.json ...`` prints the same from saved rows.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from seed_medoid import seed_readings

from addp_agent.critic.consistency import agreement, similarity
from addp_agent.engine.pipeline import ADDPPipeline
from addp_agent.train.augment import paint

TIMESTEPS = [50, 150, 300, 450, 600, 750, 900, 999]
NOISE_SEED = 1234

Score = Callable[[dict], np.ndarray]


@torch.no_grad()
def denoising_errors(pipe: ADDPPipeline, image: np.ndarray, masks: list[np.ndarray], expression: str
                     ) -> dict[str, list[list[float]]]:
    """(readings × timesteps) x̂₀ errors of each painted reading, with the expression and with the null prompt."""
    pixels = torch.from_numpy(np.asarray(image)).float().permute(2, 0, 1)[None] / 255.0
    k = len(masks)
    x0 = pipe.target_latents(paint(pixels.expand(k, -1, -1, -1), torch.from_numpy(np.stack(masks))) * 2 - 1)
    condition = pipe.encode_images([image]).expand(k, -1, -1, -1)
    noise = torch.randn((len(TIMESTEPS), *x0.shape[1:]), generator=torch.Generator().manual_seed(NOISE_SEED))
    alphas = pipe.scheduler.alphas_cumprod
    errors: dict[str, list[list[float]]] = {}
    for name, text in (("err_c", expression), ("err_u", "")):
        embeds = pipe.encode_text([text]).expand(k, -1, -1)
        columns = []
        for j, t in enumerate(TIMESTEPS):
            noisy = alphas[t].sqrt() * x0 + (1 - alphas[t]).sqrt() * noise[j][None]
            x0_hat = pipe.unet(torch.cat([noisy, condition], 1), torch.full((k,), t),
                               encoder_hidden_states=embeds).sample
            columns.append(((x0_hat - x0) ** 2).mean(dim=(1, 2, 3)).tolist())
        errors[name] = np.array(columns).T.tolist()
    return errors


def measure(model: str, spec: str, k: int) -> list[dict]:
    rows = []
    for pipe, sample, masks in seed_readings(model, spec, k):
        if pipe.scheduler.config.prediction_type != "sample":
            raise SystemExit("this check compares x̂₀ predictions; the model must predict the sample")
        rows.append({"confusable": bool(sample.confusable), "ious": [similarity(m, sample.mask) for m in masks],
                     "agree": [agreement(m, masks[:i] + masks[i + 1:]) for i, m in enumerate(masks)],
                     **denoising_errors(pipe, sample.image, masks, sample.expression)})
    return rows


def scores() -> dict[str, Score]:
    """Each verifier's score per reading, lower is better."""
    def err(r: dict, key: str) -> np.ndarray:
        return np.asarray(r[key])

    table: dict[str, Score] = {
        "medoid (most seed agreement)": lambda r: -np.asarray(r["agree"]),
        "err_c, mean over t": lambda r: err(r, "err_c").mean(1),
        "err_c − err_u, mean over t": lambda r: (err(r, "err_c") - err(r, "err_u")).mean(1),
    }
    for j, t in enumerate(TIMESTEPS):
        table[f"err_c at t = {t}"] = lambda r, j=j: err(r, "err_c")[:, j]
    table["best of K by ground truth (upper bound)"] = lambda r: -np.asarray(r["ious"])
    return table


def picked(rows: list[dict], score: Score) -> tuple[float, float, int, int]:
    """(round 1, picked) mean IoU ×100 on the confusable subset, and answers worse / better by > 0.1 on all."""
    first, chosen, worse, better = [], [], 0, 0
    for r in rows:
        s = score(r)
        j = int(np.argmin(s))
        j = j if s[j] < s[0] else 0
        gain = r["ious"][j] - r["ious"][0]
        worse, better = worse + (gain < -0.1), better + (gain > 0.1)
        if r["confusable"]:
            first.append(r["ious"][0])
            chosen.append(r["ious"][j])
    return 100 * float(np.mean(first)), 100 * float(np.mean(chosen)), worse, better


def table(files: list[Path]) -> None:
    sets = [json.loads(gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_text()) for f in files]
    print("| score | " + " | ".join(f.name for f in files) + " | mean net | worse / better by > 0.1 |")
    print("|---" * (len(files) + 3) + "|")
    for name, score in scores().items():
        cells = [picked(rows, score) for rows in sets]
        nets = [c[1] - c[0] for c in cells]
        per_seed = " | ".join(f"{c[0]:.2f} → {c[1]:.2f} ({n:+.2f})" for c, n in zip(cells, nets, strict=True))
        print(f"| {name} | {per_seed} | {np.mean(nets):+.2f} | {sum(c[2] for c in cells)} / "
              f"{sum(c[3] for c in cells)} |")


if __name__ == "__main__":
    if sys.argv[1] == "--table":
        table([Path(p) for p in sys.argv[2:]])
    else:
        out = Path(sys.argv[4])
        out.write_text(json.dumps(measure(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
        table([out])
