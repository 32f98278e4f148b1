"""One benchmark suite: a baseline and the engine on the same weights and settings, measured in the same run."""

from __future__ import annotations

import copy
import statistics
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from addp_agent.engine.batcher import DynamicBatcher
from addp_agent.engine.fast import FastPath, enable_fast_path
from addp_agent.engine.pipeline import ADDPPipeline
from benchmarks.measure import Timing, peak_memory, time_cases, unet_flops

PROMPT = "the large green circle on the left"
CORRECTIONS = ["the small green circle", "the green square"]


@dataclass
class SuiteConfig:
    """What every case of a suite shares."""

    steps: int = 20
    repeats: int = 3
    concurrency: int = 4
    resume_step: int | None = None  # None: half the steps
    fast: str = "auto"  # off | auto (enable_fast_path's device defaults) | compile
    compile_backend: str | None = None  # None: enable_fast_path's default (CUDA: graphs captured by hand)
    seed: int = 0

    @property
    def k(self) -> int:
        k = self.resume_step if self.resume_step is not None else self.steps // 2
        return min(max(1, k), self.steps - 1) if self.steps > 1 else 1


# a baseline round: (image, corrections, seed) -> painted images (B, H, W, 3) in [0, 1]
BaselineRound = Callable[[np.ndarray, list[str], int], np.ndarray]


def sample_images(pipe: ADDPPipeline, count: int) -> list[np.ndarray]:
    size = pipe.resolution
    return [np.random.default_rng(k).integers(0, 256, (size, size, 3), dtype=np.uint8) for k in range(count)]


def engine_round(pipe: ADDPPipeline, image: np.ndarray, steps: int, seed: int, corrections: list[str] | None = None,
                 encoded: Any = None) -> np.ndarray:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    kwargs = {"encoded": encoded} if encoded is not None else {"prompt": PROMPT, "image": image}
    out = pipe(**kwargs, num_inference_steps=steps, generator=generator, corrections=corrections or None,
               output_type="np", show_progress=False, resolution="working")
    return np.asarray(out.images)


def engine_session(pipe: ADDPPipeline, image: np.ndarray, steps: int, k: int, seed: int) -> list[np.ndarray]:
    """What ``Session(resume_step=k)`` does: encode once, denoise k shared steps once, 3 rounds resumed from k."""
    encoded = pipe.encode(PROMPT, image)
    prefix = pipe(encoded=encoded, num_inference_steps=steps, generator=torch.Generator().manual_seed(seed),
                  stop_after_step=k, output_type="latent", show_progress=False)
    return [np.asarray(pipe(state=prefix.state, corrections=CORRECTIONS[:r] or None, output_type="np",
                            show_progress=False).images) for r in range(3)]


def engine_concurrent(batcher: DynamicBatcher, images: list[np.ndarray], steps: int, seed: int) -> list[int]:
    """``len(images)`` clients submit at once to a long-lived DynamicBatcher; returns the batch sizes it ran."""
    barrier = threading.Barrier(len(images))
    futures: list[Any] = [None] * len(images)
    before = len(batcher.stats.batch_sizes)

    def client(i: int) -> None:
        barrier.wait()
        futures[i] = batcher.submit(images[i], PROMPT, steps=steps, seed=seed + i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for future in futures:
        future.result()
    return batcher.stats.batch_sizes[before:]


def fast_copy(pipe: ADDPPipeline, config: SuiteConfig) -> tuple[ADDPPipeline, Any]:
    """The engine with the fast path on its own UNet copy (the baseline keeps the untouched UNet)."""
    keys = ("default_num_inference_steps", "default_guidance_scale", "default_image_guidance_scale",
            "default_correction_scale", "default_correction_mode", "resolution", "pixel_patch_size")
    fast_pipe = ADDPPipeline(unet=copy.deepcopy(pipe.unet), scheduler=pipe.scheduler, text_encoder=pipe.text_encoder,
                             tokenizer=pipe.tokenizer, vae=pipe.vae, **{key: pipe.config[key] for key in keys})
    fast_pipe.set_progress_bar_config(disable=True)
    state = enable_fast_path(fast_pipe, compile=True if config.fast == "compile" else None,
                             backend=config.compile_backend, channels_last=True)  # CPU: measure channels_last
    return fast_pipe, state


def run_suite(pipe: ADDPPipeline, baseline: BaselineRound, config: SuiteConfig, log: Callable[[str], None]) -> dict:
    """Every case (timed round-robin), peak memory, FLOPs per step, ratios and output checks."""
    device = pipe.device
    steps, k, seed, concurrency = config.steps, config.k, config.seed, config.concurrency
    images = sample_images(pipe, concurrency)
    image = images[0]
    flops = flops_per_step(pipe, concurrency)
    engine, fast = (pipe, None) if config.fast == "off" else fast_copy(pipe, config)
    encoded = pipe.encode(PROMPT, image)
    batcher = DynamicBatcher(engine, max_batch=concurrency, max_wait_ms=50)  # one server-like worker thread
    batch_sizes: list[list[int]] = []
    cases: dict[str, Callable[[], Any]] = {
        "baseline_round": lambda: baseline(image, [], seed),
        "engine_round": lambda: engine_round(pipe, image, steps, seed),
        "engine_round_cached": lambda: engine_round(pipe, image, steps, seed, encoded=encoded),
        "baseline_session3": lambda: [baseline(image, CORRECTIONS[:r], seed) for r in range(3)],
        "engine_session3": lambda: engine_session(engine, image, steps, k, seed),
        f"baseline_concurrent{concurrency}": lambda: [baseline(i, [], seed + n) for n, i in enumerate(images)],
        f"engine_concurrent{concurrency}": lambda: batch_sizes.append(engine_concurrent(batcher, images, steps, seed)),
    }
    if fast is not None:
        cases["engine_fast_round"] = lambda: engine_round(engine, image, steps, seed)
    timings = time_cases(cases, device, config.repeats, log)
    plain = engine_round(pipe, image, steps, seed)
    checks = {"engine_vs_baseline_max_abs": float(np.abs(plain - baseline(image, [], seed)).max())}
    if fast is not None:
        checks["fast_vs_plain_max_abs"] = float(np.abs(engine_round(engine, image, steps, seed) - plain).max())
    memory = {}
    for name in ("baseline_round", "engine_round", f"engine_concurrent{concurrency}"):
        with peak_memory(device) as memory[name]:
            cases[name]()
    batcher.close()
    return {"cases": {name: t.as_dict() for name, t in timings.items()}, "memory": memory, "flops": flops,
            "ratios": ratios(timings, concurrency), "checks": checks, "resume_step": k,
            "concurrent_batch_sizes": batch_sizes[-1] if batch_sizes else [],
            "fast_path": None if fast is None else fast_path_report(fast)}


def fast_path_report(fast: FastPath) -> dict[str, Any]:
    """What the fast path was and did during the suite (CUDA graphs captured, replays, failed captures)."""
    return {"compiled": fast.compiled, "mode": fast.mode, "backend": fast.backend, "channels_last": fast.channels_last,
            "buckets": fast.buckets, "graphs": fast.graphs, "calls": fast.calls, "padded_rows": fast.padded_rows,
            "graphs_captured": fast.graphs_captured, "graph_replays": fast.graph_replays,
            "graph_fallbacks": fast.graph_fallbacks, "capture_seconds": fast.capture_seconds,
            "capture_failures": {str(key): reason for key, reason in fast.capture_failures.items()}}


def flops_per_step(pipe: ADDPPipeline, concurrency: int) -> dict[str, int]:
    """FLOPs of one denoising step at the model's default guidance: a round (3 branches, or 2 when image guidance
    is 1 and the engine drops ε_u), a 2-correction round (+2), B requests batched (B × a round's rows)."""
    unet = pipe.unet
    grid = pipe.resolution // pipe.vae_scale_factor
    seq, dim = int(pipe.tokenizer.model_max_length), int(unet.config.cross_attention_dim)
    rows = 2 if pipe.resolve_settings()["image_guidance_scale"] == 1.0 else 3

    def count(batch: int) -> int:
        return unet_flops(unet, batch, int(unet.config.in_channels), grid, seq, dim, pipe.device, pipe.unet.dtype)

    return {"round": count(rows), "corrected_2": count(rows + 2), f"concurrent{concurrency}": count(rows * concurrency)}


def paired(numerator: Timing, denominator: Timing) -> dict[str, float]:
    """The ratio of two cases timed in the same round-robin repeats: median and spread of per-repeat ratios."""
    values = [a / b for a, b in zip(numerator.samples, denominator.samples, strict=True)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(cases: dict[str, Timing], concurrency: int) -> dict[str, dict[str, float]]:
    """Speed-ups over the baseline (> 1: the engine is faster) and the session cost in baseline rounds."""
    base = cases["baseline_round"]
    result = {"round_speedup": paired(base, cases["engine_round"]),
              "cached_round_speedup": paired(base, cases["engine_round_cached"]),
              "session3_speedup": paired(cases["baseline_session3"], cases["engine_session3"]),
              "session3_in_baseline_rounds": paired(cases["engine_session3"], base),
              f"throughput{concurrency}_ratio": paired(cases[f"baseline_concurrent{concurrency}"],
                                                       cases[f"engine_concurrent{concurrency}"])}
    if "engine_fast_round" in cases:
        result["fast_round_speedup"] = paired(base, cases["engine_fast_round"])
        result["fast_over_plain_engine"] = paired(cases["engine_round"], cases["engine_fast_round"])
    return result
