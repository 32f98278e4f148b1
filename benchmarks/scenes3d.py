"""Scenes-3D generation speed: ``python -m benchmarks.scenes3d [--device cpu|cuda] [--size 128] [--n 128]``.

Cases, timed round-robin (``benchmarks.measure.time_cases``: one warm-up, then ``--repeats`` rounds):

- ``render_one_by_one``: the baseline, each scene rendered alone (what a per-image renderer does);
- ``render_batched``: the same scenes rendered 16 at a time (the default batch);
- ``samples``: complete RIS samples (scene drawing, expression programs, rejection of too-occluded scenes, render,
  masks, names, caption) through ``ScenesRef``, one process;
- ``bulk_2_workers`` (CPU): the training generator's work (``bulk._chunk``: samples as arrays) split over a pool of
  2 worker processes started once before timing (the one-time process start is reported as ``pool_start_s``).

Each case reports scenes (or samples) per second as median and min-max; ratios are against the baseline of the same
run. Scenes are drawn once from a fixed seed, so every case renders the same ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.measure import time_cases


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n", type=int, default=128, help="scenes per timed case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from addp_agent.data.scenes3d import ScenesRef, preset_config
    from addp_agent.data.scenes3d.bulk import _chunk
    from addp_agent.data.scenes3d.render import render
    from addp_agent.data.scenes3d.sampling import sample_scene

    device = torch.device(args.device)
    config = preset_config(args.preset, size=args.size)
    rng = random.Random(0)
    scenes = []
    while len(scenes) < args.n:
        scene = sample_scene(rng, config)
        if scene is not None:
            scenes.append(scene)
    pool = None
    cases = {
        "render_one_by_one": lambda: [render([s], device) for s in scenes],
        "render_batched": lambda: render(scenes, device),
        "samples": lambda: list(ScenesRef("train", args.n, 0, config, device=device)),
    }
    start_s = None
    if device.type == "cpu":
        import multiprocessing
        import time
        from concurrent.futures import ProcessPoolExecutor

        started = time.perf_counter()
        pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        list(pool.map(_chunk, ["train"] * 2, [0, 1], [1, 2], [0, 0], [config.model_dump_json()] * 2, [args.size] * 2))
        start_s = time.perf_counter() - started
        half = args.n // 2
        cases["bulk_2_workers"] = lambda: list(pool.map(
            _chunk, ["train"] * 2, [0, half], [half, args.n], [0, 0], [config.model_dump_json()] * 2, [args.size] * 2))
    try:
        timings = time_cases(cases, device, args.repeats, log=lambda line: print(line, file=sys.stderr))
    finally:
        if pool is not None:
            pool.shutdown()
    baseline = timings["render_one_by_one"].median
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "torch_threads": args.threads, "size": args.size, "preset": args.preset,
        "n": args.n, "repeats": args.repeats, "pool_start_s": start_s,
        "load_average_1min_at_start": os.getloadavg()[0], "cases": {}}
    for name, timing in timings.items():
        report["cases"][name] = {
            "per_s_median": round(args.n / timing.median, 1), "per_s_min": round(args.n / timing.max, 1),
            "per_s_max": round(args.n / timing.min, 1), "speedup_vs_one_by_one": round(baseline / timing.median, 2),
            "seconds": [round(s, 4) for s in timing.samples]}
    for name, row in report["cases"].items():
        print(f"{name:18s} {row['per_s_median']:8.1f}/s  (min-max {row['per_s_min']}-{row['per_s_max']})  "
              f"×{row['speedup_vs_one_by_one']} vs one by one")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
