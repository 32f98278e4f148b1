"""Depth benchmark: ``python -m benchmarks.depth [--model DIR] [--repeats 5] [--json out.json]``.

Times, on one 128-px image, the proposed pixel depth model (random weights unless ``--model``; the compute is the
same): one UNet forward, one image at the model's defaults, 4 members run as one UNet batch (the engine) against
the same 4 members one after another (diffusers' ``batch_size=1`` default), and an ensemble of 4 with its alignment.
Round-robin repeats; every case reports min / median / max, and the ratio comes from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks.measure import time_cases


def build(model: str | None):
    from addp_agent.models.depth_build import PixelDepthModelConfig, build_pixel_depth_pipeline
    from addp_agent.models.registry import load_depth_pipeline

    if model:
        return load_depth_pipeline(model, device="cpu", progress=False), model
    return build_pixel_depth_pipeline(PixelDepthModelConfig()), "PixelDepthModelConfig() defaults, random weights"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="A depth model folder (default: the proposed config).")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be ≥ 3 (speed claims need a spread)")
    pipe, source = build(args.model)
    pipe.set_progress_bar_config(disable=True)
    device = torch.device("cpu")
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    encoded = pipe.encode(image)
    sample = torch.randn(1, pipe.depth_channels, *encoded.condition.shape[2:])
    unet_input = torch.cat([encoded.condition, sample], dim=1)
    embeds = encoded.text_embeds

    def unet_forward():
        with torch.no_grad():
            pipe.unet(unet_input, 999, encoder_hidden_states=embeds)

    four = pipe.encode([image] * 4)  # 4 members without the ensemble alignment, to time the batching alone
    cases = {
        "unet_forward": unet_forward,
        "image_at_defaults": lambda: pipe.estimate(image, seed=0, show_progress=False),
        "members4_one_batch": lambda: pipe(encoded=four, generator=torch.Generator()),
        "members4_sequential": lambda: pipe(encoded=four, batch_size=1, generator=torch.Generator()),
        "ensemble4_with_alignment": lambda: pipe(encoded=encoded, ensemble_size=4, generator=torch.Generator()),
    }
    timings = time_cases(cases, device, args.repeats, log=print)
    result = {
        "model": source, "steps": pipe.default_steps, "resolution": pipe.default_resolution, "image_px": args.size,
        "parameters_m": round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 3),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "cases": {name: t.as_dict() for name, t in timings.items()},
        "ratios": {"members4_one_batch_speedup": {
            stat: getattr(timings["members4_sequential"], stat) / getattr(timings["members4_one_batch"], stat)
            for stat in ("min", "median", "max")}},
    }
    for name, t in timings.items():
        print(f"{name:>22}: min {t.min * 1000:7.1f} ms  median {t.median * 1000:7.1f} ms  max {t.max * 1000:7.1f} ms")
    ratio = result["ratios"]["members4_one_batch_speedup"]
    print(f"4 members as one UNet batch vs one after another: {ratio['median']:.2f}× (median; "
          f"{ratio['min']:.2f}× on the min times)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
