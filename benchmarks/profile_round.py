"""Where the time of one round goes: a ``torch.profiler`` summary of one plain and one fast-path engine round.

Per round: wall seconds, the top operators by device time (CPU time without CUDA), and on CUDA the kernel timeline:
kernel count, summed kernel time, the share of the wall time the GPU was busy, and the gaps between consecutive
kernels (launch gaps: total, median, p95, max). The summary is small JSON; no trace file is written.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from benchmarks.measure import sync
from benchmarks.suite import engine_round, sample_images

TOP = 12


def _top_ops(prof: Any, cuda: bool) -> list[dict[str, Any]]:
    rows = []
    for e in prof.key_averages():
        device_us = float(getattr(e, "self_device_time_total", 0.0) or 0.0)
        cpu_us = float(getattr(e, "self_cpu_time_total", 0.0) or 0.0)
        rows.append({"name": e.key[:120], "count": int(e.count), "self_device_ms": device_us / 1e3,
                     "self_cpu_ms": cpu_us / 1e3})
    rows.sort(key=lambda r: -(r["self_device_ms"] if cuda else r["self_cpu_ms"]))
    return rows[:TOP]


def _kernel_timeline(prof: Any, wall_s: float) -> dict[str, Any]:
    kernels = sorted(((e.time_range.start, e.time_range.end) for e in prof.events()
                      if e.device_type == DeviceType.CUDA), key=lambda span: span[0])
    if not kernels:
        return {"kernels": 0}
    busy_us = sum(end - start for start, end in kernels)
    gaps = np.asarray([max(0.0, b[0] - a[1]) for a, b in zip(kernels, kernels[1:], strict=False)] or [0.0])
    span_us = kernels[-1][1] - kernels[0][0]
    return {"kernels": len(kernels), "kernel_ms": busy_us / 1e3, "first_to_last_kernel_ms": span_us / 1e3,
            "gpu_busy_share_of_wall": busy_us / 1e6 / wall_s, "gap_total_ms": float(gaps.sum()) / 1e3,
            "gap_median_us": float(np.median(gaps)), "gap_p95_us": float(np.quantile(gaps, 0.95)),
            "gap_max_ms": float(gaps.max()) / 1e3}


def profile_one(pipe: Any, image: np.ndarray, steps: int, device: torch.device) -> dict[str, Any]:
    """One warmed round of ``pipe`` under the profiler."""
    cuda = device.type == "cuda"
    engine_round(pipe, image, steps, 0)  # warm (graph captures, caches)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        engine_round(pipe, image, steps, 0)
        sync(device)
        wall = time.perf_counter() - start
    summary: dict[str, Any] = {"wall_s": wall, "top_ops": _top_ops(prof, cuda)}
    if cuda:
        summary["timeline"] = _kernel_timeline(prof, wall)
    return summary


def profile_rounds(pipe: Any, fast_pipe: Any, steps: int, device: torch.device) -> dict[str, Any]:
    """The plain engine round and the fast-path round on the same image, steps and seed."""
    image = sample_images(pipe, 1)[0]
    return {"steps": steps, "plain_round": profile_one(pipe, image, steps, device),
            "fast_round": profile_one(fast_pipe, image, steps, device),
            "note": "wall_s includes the profiler's own overhead; compare rounds with each other, not with the "
                    "timed benchmark."}
