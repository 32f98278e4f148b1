"""Run the benchmark: ``python -m benchmarks.run [--device cpu|cuda] [--model NAME] [--json out.json]``.

CPU suites: ``pixel`` (the bundled model against the straightforward loop) and ``latent`` (the tiny SD-shaped model
against diffusers' stock InstructPix2Pix pipeline). CUDA suites: ``sd15-256`` and ``sd15-512`` (SD-1.5-size
InstructPix2Pix, random weights, fp16, stock pipeline against the engine with the CUDA-graph fast path: by default
one graph per batch bucket captured by hand, no torch.compile). The JSON report is rewritten after every suite.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import PIL.Image
import torch

from benchmarks.baseline import straightforward_round
from benchmarks.measure import device_peak_flops
from benchmarks.models import bundled_pixel, sd15_instruct_pix2pix, stock_from, tiny_latent
from benchmarks.suite import PROMPT, SuiteConfig, run_suite

CPU_SUITES = ("pixel", "latent")
GPU_SUITES = ("sd15-256", "sd15-512")
# the GPU issue's targets, per SD-1.5-size suite (256 and 512 px), on medians over ≥ 3 repeats
GPU_TARGETS = {"fast_round_speedup": (">=", 8.0), "session3_in_baseline_rounds": ("<=", 0.35),
               "throughput16_ratio": (">=", 15.0)}


def build(suite: str, device: torch.device, dtype: torch.dtype,
          model: str | None = None) -> tuple[Any, str, str, Callable[..., Any]]:
    """The pipeline, where its weights come from, the baseline's name and the baseline round (``model``: the pixel
    suite's model instead of the bundled default)."""
    if suite == "pixel":
        pipe, source = bundled_pixel(device, dtype, model)

        def loop(image: np.ndarray, corrections: list[str], seed: int) -> np.ndarray:
            return straightforward_round(pipe, PROMPT, image, CONFIG.steps, seed, corrections)

        return pipe, source, "straightforward loop (re-encode per round, one UNet call per branch)", loop
    if suite == "latent":
        pipe, source = tiny_latent(device, dtype)
    elif suite.startswith("sd15-"):
        pipe, source = sd15_instruct_pix2pix(int(suite.removeprefix("sd15-")), device, dtype)
    else:
        raise SystemExit(f"unknown suite {suite!r}; choose from {', '.join(CPU_SUITES + GPU_SUITES)}")
    stock = stock_from(pipe)
    settings = pipe.resolve_settings()

    def stock_round(image: np.ndarray, corrections: list[str], seed: int) -> np.ndarray:
        # stock cannot add correction branches; the closest it has is one negative prompt (same 3-branch cost)
        return stock(prompt=PROMPT, image=PIL.Image.fromarray(image), negative_prompt=", ".join(corrections) or None,
                     num_inference_steps=CONFIG.steps, guidance_scale=settings["guidance_scale"],
                     image_guidance_scale=settings["image_guidance_scale"], output_type="np",
                     generator=torch.Generator().manual_seed(seed)).images

    return pipe, source, "diffusers StableDiffusionInstructPix2PixPipeline", stock_round


CONFIG = SuiteConfig()


def targets(suite: str, result: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The issue's targets for this suite: value, goal and pass/fail."""
    r, checks = result["ratios"], {}
    if suite == "pixel" and device.type == "cpu":
        best_round = min(result["cases"]["engine_round_cached"]["median"],
                         result["cases"].get("engine_fast_round", {"median": float("inf")})["median"])
        checks["round_s"] = {"value": best_round, "goal": "<= 0.3", "pass": best_round <= 0.3}
        for name in ("round_speedup", "session3_speedup", f"throughput{CONFIG.concurrency}_ratio"):
            value = r[name]["median"]
            checks[name] = {"value": value, "goal": ">= 1 (never slower)", "pass": value >= 1.0}
    if suite.startswith("sd15-"):
        for name, (op, goal) in GPU_TARGETS.items():
            if name in r:
                value = r[name]["median"]
                checks[name] = {"value": value, "goal": f"{op} {goal}",
                                "pass": value >= goal if op == ">=" else value <= goal}
    return checks


def print_table(name: str, result: dict[str, Any]) -> None:
    base = result["cases"]["baseline_round"]["median"]
    print(f"\n== {name}: {result['model']}\n   baseline: {result['baseline']}")
    print(f"   {'case':<24}{'median s':>10}{'min–max s':>18}{'× baseline round':>18}")
    for case, t in result["cases"].items():
        print(f"   {case:<24}{t['median']:>10.4f}{t['min']:>9.4f}–{t['max']:<8.4f}{t['median'] / base:>18.3f}")
    print("   paired ratios, median [min–max]:")
    for key, v in result["ratios"].items():
        print(f"     {key:<30}{v['median']:>7.2f}  [{v['min']:.2f}–{v['max']:.2f}]")
    flops, peak = result["flops"], result["peak"]
    print(f"   FLOPs/step: {', '.join(f'{k}={v / 1e9:.2f} G' for k, v in flops.items())}; engine round uses "
          f"{result['utilisation']['engine_round']:.2%} of {peak['peak_flops'] / 1e9:.1f} GFLOP/s ({peak['source']})")
    print("   memory peak MiB: " + ", ".join(f"{k}={v['peak_mib']:.0f} (+{v['increase_mib']:.0f})"
                                           for k, v in result["memory"].items()))
    print("   checks: " + ", ".join(f"{k}={v:.2e}" for k, v in result["checks"].items()))
    fast = result["fast_path"]
    if fast:
        line = f"   fast path: backend={fast['backend']}, channels_last={fast['channels_last']}"
        if fast["graphs"]:
            line += (f", CUDA graphs captured={fast['graphs_captured']} ({fast['capture_seconds']:.1f} s), "
                     f"replays={fast['graph_replays']}, eager fallbacks={fast['graph_fallbacks']}")
        print(line)
        for key, reason in fast["capture_failures"].items():
            print(f"   capture failed for {key}: {reason}")
    for key, target in result["targets"].items():
        verdict = "PASS" if target["pass"] else "MISS"
        print(f"   target {key}: {target['value']:.3f} (goal {target['goal']}) → {verdict}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--suites", default=None, help="comma-separated; default: pixel,latent on CPU, sd15-* on CUDA")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoising steps (default: the bundled model's own default for pixel, 20 otherwise)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 3)")
    parser.add_argument("--concurrency", type=int, default=None, help="concurrent requests B (default 4 CPU, 16 CUDA)")
    parser.add_argument("--resume-step", type=int, default=None, help="k for corrected rounds (default steps/2)")
    parser.add_argument("--fast", choices=["off", "auto", "compile"], default="auto")
    parser.add_argument("--compile-backend", default=None,
                        help="graphs (CUDA graphs captured by hand, no torch.compile; the CUDA default), inductor "
                             "(torch.compile, reduce-overhead on CUDA; the CPU default with --fast compile), "
                             "cudagraphs (Dynamo + CUDA graphs), eager (Dynamo only, tests)")
    parser.add_argument("--model", default=None, help="the pixel suite's model: a bundled name (e.g. "
                                                      "scenes3d-ris-small) or a folder (default: the bundled default)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    CONFIG.steps, CONFIG.resume_step, CONFIG.fast = args.steps, args.resume_step, args.fast
    CONFIG.repeats = args.repeats or 3
    CONFIG.concurrency = args.concurrency or (16 if cuda else 4)
    CONFIG.compile_backend = args.compile_backend or ("graphs" if cuda else "inductor")
    suites = args.suites.split(",") if args.suites else list(GPU_SUITES if cuda else CPU_SUITES)
    peak = device_peak_flops(device, dtype)
    report: dict[str, Any] = {"meta": {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": peak["device"],
        "dtype": str(dtype), "torch": torch.__version__, "diffusers": diffusers.__version__,
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()), "steps": CONFIG.steps, "repeats": CONFIG.repeats,
        "concurrency": CONFIG.concurrency, "fast": CONFIG.fast, "compile_backend": CONFIG.compile_backend,
        "argv": sys.argv[1:] if argv is None else argv, "suites_pending": list(suites)}, "suites": {}}
    for suite in suites:
        print(f"[{suite}] building ...", file=sys.stderr)
        pipe, source, baseline_name, baseline = build(suite, device, dtype, args.model)
        pipe.set_progress_bar_config(disable=True)
        CONFIG.steps = args.steps or (pipe.resolve_settings()["num_inference_steps"] if suite == "pixel" else 20)
        result = run_suite(pipe, baseline, CONFIG, lambda line: print(line, file=sys.stderr))
        result.update(model=source, baseline=baseline_name, peak=peak, steps=CONFIG.steps,
                      unet_parameters=sum(p.numel() for p in pipe.unet.parameters()))
        round_s = result["cases"]["engine_round_cached"]["median"]
        result["utilisation"] = {"engine_round": result["flops"]["round"] * CONFIG.steps / round_s / peak["peak_flops"]}
        result["targets"] = targets(suite, result, device)
        report["suites"][suite] = result
        report["meta"]["suites_pending"].remove(suite)
        write_report(report, args.json)  # after every suite: a run cut short keeps the suites it finished
        print_table(suite, result)
        print(f"   wrote {args.json}", flush=True)
        del pipe, baseline
        gc.collect()  # the fast path's UNet copy and its CUDA graphs sit in a reference cycle (unet ↔ its wrapper)
        if cuda:
            torch.cuda.empty_cache()
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the JSON report atomically (a kill mid-write leaves the previous complete version)."""
    report["meta"]["load_average_end"] = list(os.getloadavg())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=1))
    partial.replace(path)


if __name__ == "__main__":
    main()
