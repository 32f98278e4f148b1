"""Domain-check cost: ``python -m benchmarks.domain [--repeats 5] [--json out.json]``.

Times the bundled model's domain check on a 64-px Shapes-Ref image, on the 512×600 ``grace_hopper.jpg`` and on a
2048-px image, against one round of the bundled model on the 64-px image (the baseline) in the same run.
Round-robin repeats; every case reports min / median / max, and the ratios come from the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from benchmarks.measure import time_cases


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from PIL import Image

    from addp_agent.data.natural import package_photos
    from addp_agent.data.sources import load_source
    from addp_agent.models.registry import load_pipeline

    pipe = load_pipeline(device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    check = pipe.domain_check
    sample = next(iter(load_source("shapes-gen:1:1:64", "test")))
    photo = package_photos()[0]
    large = np.asarray(Image.fromarray(photo).resize((2048, 2048)))
    cases = {
        "round_64px": lambda: pipe.segment(sample.image, sample.expression, seed=0, show_progress=False),
        "check_64px": lambda: [check.check(sample.image) for _ in range(10)],
        "check_photo_512x600": lambda: [check.check(photo) for _ in range(10)],
        "check_2048px": lambda: [check.check(large) for _ in range(10)],
    }
    timings = time_cases(cases, torch.device("cpu"), args.repeats)
    per_call = {name: (t.min / (1 if name.startswith("round") else 10), t.median / (1 if name.startswith("round")
                       else 10), t.max / (1 if name.startswith("round") else 10)) for name, t in timings.items()}
    baseline = per_call["round_64px"][1]
    result = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "repeats": args.repeats,
              "cases": {name: {"min_s": v[0], "median_s": v[1], "max_s": v[2], "ratio_to_round": v[1] / baseline}
                        for name, v in per_call.items()}}
    for name, v in result["cases"].items():
        print(f"{name:22s} median {1000 * v['median_s']:8.2f} ms (min {1000 * v['min_s']:.2f}, max "
              f"{1000 * v['max_s']:.2f})  = {v['ratio_to_round']:.3f} × one round")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
