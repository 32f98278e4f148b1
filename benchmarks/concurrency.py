"""Concurrency sweep: ``python -m benchmarks.concurrency [--device cuda] [--suite sd15-256] [--batches 1,4,16,64]``.

For each B, B client threads submit at once to one long-lived ``DynamicBatcher`` over the engine with the fast path
(the server's path), and every request's latency is stamped when its future completes. In the same round-robin
repeats: one stock ``StableDiffusionInstructPix2PixPipeline`` round, and stock called once with all B prompts and
images (stock's own batching). Throughput against stock is reported two ways: against B stock rounds one after
another (B × the stock round of the same repeat, the way stock serves B separate requests) and against stock's one
batched call. With ``--profile`` it also writes a profiler summary of one plain and one fast round
(:mod:`benchmarks.profile_round`). One JSON file, rewritten at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from addp_agent.engine.batcher import DynamicBatcher
from benchmarks.measure import sync, time_cases
from benchmarks.run import build
from benchmarks.suite import PROMPT, SuiteConfig, fast_copy, sample_images


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (numpy's default)."""
    return float(np.quantile(np.asarray(values, dtype=float), q))


def latency_stats(values: list[float]) -> dict[str, float]:
    return {"p50": quantile(values, 0.5), "p95": quantile(values, 0.95), "min": min(values), "max": max(values),
            "n": len(values)}


def burst(batcher: DynamicBatcher, images: list[np.ndarray], steps: int, seed: int) -> list[float]:
    """B threads submit together; each request's seconds from the common start to its result."""
    count = len(images)
    barrier = threading.Barrier(count + 1)
    done = [0.0] * count
    futures: list[Any] = [None] * count

    def client(i: int) -> None:
        barrier.wait()
        futures[i] = batcher.submit(images[i], PROMPT, steps=steps, seed=seed + i)
        futures[i].result()
        done[i] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    for future in futures:
        future.result()  # re-raises a failed request
    return [t - start for t in done]


def paired_ratio(numerators: list[float], denominators: list[float]) -> dict[str, float]:
    values = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def sweep(pipe: Any, baseline_round: Any, stock: Any, batches: list[int], steps: int, repeats: int,
          device: torch.device, log: Any = print) -> dict[str, Any]:
    """Time stock one round, stock batched and the engine's bursts round-robin; latencies and throughput per B."""
    config = SuiteConfig(steps=steps, repeats=repeats, concurrency=max(batches))
    engine, fast = fast_copy(pipe, config)
    images = sample_images(pipe, max(batches))
    batcher = DynamicBatcher(engine, max_batch=max(batches), max_wait_ms=50)
    cfg = pipe.config
    latencies: dict[int, list[list[float]]] = {b: [] for b in batches}

    def stock_batched(b: int) -> Any:
        return stock(prompt=[PROMPT] * b, image=[PIL.Image.fromarray(i) for i in images[:b]],
                     num_inference_steps=steps, guidance_scale=cfg.default_guidance_scale,
                     image_guidance_scale=cfg.default_image_guidance_scale, output_type="np",
                     generator=[torch.Generator().manual_seed(k) for k in range(b)]).images

    cases: dict[str, Any] = {"stock_round": lambda: baseline_round(images[0], [], 0)}
    for b in batches:
        cases[f"stock_batched{b}"] = lambda b=b: stock_batched(b)
        cases[f"engine_burst{b}"] = lambda b=b: latencies[b].append(burst(batcher, images[:b], steps, 0))
    timings = time_cases(cases, device, repeats, log)
    batcher.close()
    stock_s = timings["stock_round"].samples
    rows = {}
    for b in batches:
        engine_t, batched_t = timings[f"engine_burst{b}"], timings[f"stock_batched{b}"]
        timed = [x for run in latencies[b][1:] for x in run]  # the first burst is the warm-up
        sequential = [[(i + 1) * s for i in range(b)] for s in stock_s]  # request i waits for the i before it
        rows[str(b)] = {
            "engine_burst_s": engine_t.as_dict(), "stock_batched_s": batched_t.as_dict(),
            "engine_latency_s": latency_stats(timed),
            "stock_sequential_latency_s": latency_stats([x for run in sequential for x in run]),
            "engine_requests_per_s": b / engine_t.median,
            "throughput_vs_stock_sequential": paired_ratio([b * s for s in stock_s], engine_t.samples),
            "throughput_vs_stock_batched": paired_ratio(batched_t.samples, engine_t.samples),
        }
    return {"steps": steps, "repeats": repeats, "batches": batches, "stock_round_s": timings["stock_round"].as_dict(),
            "rows": rows, "batcher_batch_sizes": batcher.stats.batch_sizes,
            "fast_path": None if fast is None else {"backend": fast.backend, "graphs_captured": fast.graphs_captured,
                                                    "graph_replays": fast.graph_replays,
                                                    "graph_fallbacks": fast.graph_fallbacks},
            "basis": "throughput_vs_stock_sequential: B × the stock round of the same repeat (B separate stock "
                     "requests served one after another); throughput_vs_stock_batched: stock called once with "
                     "all B prompts and images. Latency: seconds from the common start to each result.",
            "engine": engine}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--suite", default=None, help="sd15-256 on CUDA, latent on CPU (default)")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile one plain and one fast round")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    suite = args.suite or ("sd15-256" if device.type == "cuda" else "latent")
    batches = sorted({int(b) for b in args.batches.split(",")})
    if not batches or batches[0] < 1:
        parser.error("--batches must be positive integers")
    import benchmarks.run as run_module

    run_module.CONFIG.steps = args.steps  # the stock round reads the step count from the run module's config
    pipe, source, _, baseline_round = build(suite, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    from benchmarks.models import stock_from

    stock = stock_from(pipe)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = sweep(pipe, baseline_round, stock, batches, args.steps, args.repeats, device,
                   lambda line: print(line, flush=True))
    engine = result.pop("engine")
    report: dict[str, Any] = {"suite": suite, "model": source, "device": str(device), "dtype": str(dtype),
                              "time_utc": started, **result}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    if args.profile:
        from benchmarks.profile_round import profile_rounds

        report["profile"] = profile_rounds(pipe, engine, args.steps, device)
    sync(device)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    for b, row in report["rows"].items():
        lat = row["engine_latency_s"]
        print(f"B={b:>3}: engine p50 {lat['p50']:.3f} s p95 {lat['p95']:.3f} s; throughput × stock sequential "
              f"{row['throughput_vs_stock_sequential']['median']:.2f}, × stock batched "
              f"{row['throughput_vs_stock_batched']['median']:.2f}")
    return report


if __name__ == "__main__":
    main()
