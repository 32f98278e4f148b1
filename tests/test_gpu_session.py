"""The GPU session's parts at CPU sizes (marked benchmark) and its verdict table on hand-made JSON (default suite)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not part of the installed package
    sys.path.insert(0, str(ROOT))


def _ratio(median, low=None, high=None):
    return {"median": median, "min": low if low is not None else median, "max": high if high is not None else median}


def test_summary_says_met_missed_and_not_measured(tmp_path):
    from benchmarks.gpu_summary import main

    suite = {"ratios": {"fast_round_speedup": _ratio(8.5, 8.1, 9.0), "session3_in_baseline_rounds": _ratio(0.36),
                        "throughput16_ratio": _ratio(15.0)}}
    (tmp_path / "bench-256.json").write_text(json.dumps({"meta": {"device": "NVIDIA H200"},
                                                         "suites": {"sd15-256": suite}}))
    (tmp_path / "tool-server.json").write_text(json.dumps({"p95_concurrent_over_p50_single": {"segment": 2.5,
                                                                                              "refine": 3.5}}))
    # bench-512.json and marigold.json are missing: the part did not finish
    rows = {(r["target"], r["file"]): r for r in main([str(tmp_path)])}
    assert rows[("one round vs stock (fast path), sd15-256", "bench-256.json")]["status"] == "met"
    assert rows[("one round vs stock (fast path), sd15-256", "bench-256.json")]["min"] == 8.1
    assert rows[("3-round corrected session in stock rounds, sd15-256", "bench-256.json")]["status"] == "missed"
    assert rows[("16 concurrent requests, throughput vs stock, sd15-256", "bench-256.json")]["status"] == "met"
    assert rows[("one round vs stock (fast path)", "bench-512.json")]["status"] == "not measured"
    tool = [r for (label, _), r in rows.items() if label.startswith("tool server")]
    assert [r["status"] for r in tool] == ["met", "missed"]
    assert all(r["status"] == "not measured" for (_, file), r in rows.items() if file == "marigold.json")
    saved = json.loads((tmp_path / "summary.json").read_text())["targets"]
    assert len(saved) == 9 and "| tool server: refine" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "summary.md").read_text().startswith("Device: NVIDIA H200.")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])


@pytest.mark.benchmark
def test_marigold_benchmark_matches_stock_and_times_every_case(tmp_path):
    from benchmarks.marigold import main

    report = main(["--device", "cpu", "--size", "tiny", "--ensemble", "3", "--repeats", "1", "--json",
                   str(tmp_path / "m.json")])
    assert set(report["cases"]) == {"stock_ensemble1", "engine_ensemble1", "stock_ensemble3",
                                    "stock_ensemble3_one_batch", "engine_ensemble3"}
    checks = report["checks"]
    assert checks["ensemble1_latent_max_abs"] == 0 and checks["ensemble3_vs_stock_one_batch_latent_max_abs"] == 0
    assert checks["ensemble3_vs_stock_default_latent_max_abs"] < 1e-4
    assert report["ratios"]["ensemble3_speedup"]["median"] > 0


@pytest.mark.benchmark
def test_concurrency_sweep_reports_latency_and_throughput_per_batch(tmp_path):
    from benchmarks.concurrency import main

    report = main(["--device", "cpu", "--suite", "latent", "--batches", "1,3", "--steps", "2", "--repeats", "1",
                   "--profile", "--json", str(tmp_path / "c.json")])
    assert list(report["rows"]) == ["1", "3"]
    for b, row in report["rows"].items():
        assert row["engine_latency_s"]["n"] == int(b)  # the timed burst only, not the warm-up
        assert row["engine_latency_s"]["p50"] <= row["engine_latency_s"]["p95"] <= row["engine_burst_s"]["max"]
        assert row["throughput_vs_stock_sequential"]["median"] > 0
    assert report["batcher_batch_sizes"] == [1, 3, 1, 3]  # each burst ran as one batch
    assert report["profile"]["fast_round"]["top_ops"] and report["profile"]["plain_round"]["wall_s"] > 0


@pytest.mark.benchmark
def test_tool_server_benchmark_runs_the_real_server_and_sdk_client(tmp_path, tiny_pixel_dir):
    from benchmarks.tool_server import main

    report = main(["--model", str(tiny_pixel_dir), "--clients", "3", "--repeats", "1", "--steps", "1", "--json",
                   str(tmp_path / "t.json")])
    assert report["single"]["segment"]["n"] == 1 and report["concurrent"]["refine"]["n"] == 3
    assert report["p95_concurrent_over_p50_single"]["segment"] > 0 and len(report["burst_s"]) == 1
