"""Timing with spread, peak memory, FLOPs per UNet call and the device's peak FLOP/s."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import torch
from torch.utils.flop_counter import FlopCounterMode

# dense (no sparsity) tensor-core peaks, FLOP/s, from the vendors' data sheets
GPU_PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H100": {"float16": 989e12, "bfloat16": 989e12, "float32": 67e12},
    "H200": {"float16": 989e12, "bfloat16": 989e12, "float32": 67e12},
    "A100": {"float16": 312e12, "bfloat16": 312e12, "float32": 19.5e12},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds: the median, the spread (min, max, interquartile range) and the raw samples."""

    median: float
    min: float
    max: float
    iqr: float
    samples: list[float]
    warmup_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timing(samples: list[float], warmup_s: float) -> Timing:
    quartiles = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return Timing(median=statistics.median(samples), min=min(samples), max=max(samples),
                  iqr=quartiles[2] - quartiles[0], samples=samples, warmup_s=warmup_s)


def time_cases(cases: dict[str, Callable[[], Any]], device: torch.device, repeats: int,
               log: Callable[[str], None] = lambda line: None) -> dict[str, Timing]:
    """Warm every case once (compilation, caches), then time them round-robin ``repeats`` times.

    Round-robin keeps the ratios between cases honest on a machine whose load drifts during the run.
    """
    warmups: dict[str, float] = {}
    for name, fn in cases.items():
        log(f"  warm {name}")
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        warmups[name] = time.perf_counter() - start
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(max(1, repeats)):
        log(f"  repeat {r + 1}/{repeats}")
        for name, fn in cases.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: _timing(samples[name], warmups[name]) for name in cases}


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, float]]:
    """Peak memory while the block runs: CUDA allocated bytes, or the process RSS sampled every 2 ms on CPU."""
    result: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield result
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
        result.update(kind="cuda_max_allocated", peak_mib=peak / 2**20, increase_mib=(peak - base) / 2**20)
        return
    process = psutil.Process()
    base = process.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.002):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        result.update(kind="process_rss", peak_mib=peak[0] / 2**20, increase_mib=(peak[0] - base) / 2**20)


def unet_flops(unet: torch.nn.Module, batch: int, in_channels: int, size: int, seq: int, dim: int,
               device: torch.device, dtype: torch.dtype) -> int:
    """FLOPs of one UNet forward at this batch (torch's FlopCounterMode: matmuls, convolutions, attention)."""
    sample = torch.randn(batch, in_channels, size, size, device=device, dtype=dtype)
    context = torch.randn(batch, seq, dim, device=device, dtype=dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context, return_dict=False)
    return int(counter.get_total_flops())


def device_peak_flops(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The data-sheet peak of a known GPU, else a measured GEMM (the best of a few 1024² matmuls)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for key, peaks in GPU_PEAK_FLOPS.items():
        if key in name and str(dtype).removeprefix("torch.") in peaks:
            return {"device": name, "peak_flops": peaks[str(dtype).removeprefix("torch.")], "source": "data sheet"}
    n = 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return {"device": name, "peak_flops": 2 * n**3 / best, "source": f"measured {n}x{n} {dtype} GEMM, best of 5",
            "threads": torch.get_num_threads()}
