"""The CPU benchmark at tiny repetition counts: the JSON has every field, outputs agree, ratios are sane."""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.benchmark
CASES = {"baseline_round", "engine_round", "engine_round_cached", "baseline_session3", "engine_session3",
         "baseline_concurrent2", "engine_concurrent2", "engine_fast_round"}


def run(tmp_path, *args):
    if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not part of the installed package
        sys.path.insert(0, str(ROOT))
    from benchmarks.run import main

    out = tmp_path / "bench.json"
    main(["--device", "cpu", "--steps", "2", "--repeats", "1", "--concurrency", "2", "--json", str(out), *args])
    return json.loads(out.read_text())


def check_suite(result, fast_compiled):
    assert set(result["cases"]) == CASES
    for timing in result["cases"].values():
        assert 0 < timing["min"] <= timing["median"] <= timing["max"] and len(timing["samples"]) == 1
    for ratio in result["ratios"].values():
        assert math.isfinite(ratio["median"]) and 0 < ratio["min"] <= ratio["median"] <= ratio["max"]
    assert {"round_speedup", "session3_speedup", "session3_in_baseline_rounds", "throughput2_ratio",
            "fast_round_speedup"} <= set(result["ratios"])
    # FLOPs are linear in the UNet batch: a round is 3 rows (2 at image guidance 1, the bundled default, which drops
    # ε_u), two corrections add 2 rows, two requests double a round
    rows = 2 if result["model"].startswith("bundled") else 3
    flops = result["flops"]
    assert flops["corrected_2"] == pytest.approx(flops["round"] * (rows + 2) / rows, rel=0.01)
    assert flops["concurrent2"] == pytest.approx(flops["round"] * 2, rel=0.01)
    assert 0 < result["utilisation"]["engine_round"] < 1.5
    assert result["checks"]["engine_vs_baseline_max_abs"] <= 1e-4  # same weights, settings, seed → same picture
    assert result["checks"]["fast_vs_plain_max_abs"] <= 1e-4
    assert result["fast_path"]["compiled"] is fast_compiled
    assert sum(result["concurrent_batch_sizes"]) == 2
    assert all(m["peak_mib"] > 0 for m in result["memory"].values())
    assert result["resume_step"] == 1


def test_cpu_benchmark_pixel_against_the_straightforward_loop(tmp_path):
    report = run(tmp_path, "--suites", "pixel")
    assert report["meta"]["device"] == "cpu" and report["meta"]["steps"] == 2
    pixel = report["suites"]["pixel"]
    check_suite(pixel, fast_compiled=False)
    assert "straightforward loop" in pixel["baseline"]
    assert {"round_s", "round_speedup", "session3_speedup", "throughput2_ratio"} == set(pixel["targets"])


def test_cpu_benchmark_stock_with_the_gpu_fast_path_configuration(tmp_path):
    """The latent suite with the CUDA settings (compile + buckets + channels_last), traced without codegen."""
    report = run(tmp_path, "--suites", "latent", "--fast", "compile", "--compile-backend", "eager")
    latent = report["suites"]["latent"]
    check_suite(latent, fast_compiled=True)
    assert latent["baseline"] == "diffusers StableDiffusionInstructPix2PixPipeline"
    assert latent["fast_path"]["buckets"] and latent["fast_path"]["channels_last"]


def test_scenes3d_benchmark_reports_every_case(tmp_path):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks.scenes3d import main

    report = main(["--device", "cpu", "--n", "4", "--size", "64", "--repeats", "1", "--json", str(tmp_path / "s.json")])
    assert set(report["cases"]) == {"render_one_by_one", "render_batched", "samples", "bulk_2_workers"}
    assert all(row["per_s_median"] > 0 and len(row["seconds"]) == 1 for row in report["cases"].values())
    assert report["cases"]["render_one_by_one"]["speedup_vs_one_by_one"] == 1.0
    assert json.loads((tmp_path / "s.json").read_text())["n"] == 4
