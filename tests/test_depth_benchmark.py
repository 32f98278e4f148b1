"""The depth CPU benchmark at its minimum repeats: every case timed with a spread, the batching ratio sane."""

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.benchmark


def test_depth_benchmark_reports_cases_and_ratio(tmp_path, tiny_depth_dir):
    if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not part of the installed package
        sys.path.insert(0, str(ROOT))
    from benchmarks.depth import main

    result = main(["--model", str(tiny_depth_dir), "--repeats", "3", "--size", "48", "--json",
                   str(tmp_path / "bench.json")])
    assert set(result["cases"]) == {"unet_forward", "image_at_defaults", "members4_one_batch",
                                    "members4_sequential", "ensemble4_with_alignment"}
    for timing in result["cases"].values():
        assert 0 < timing["min"] <= timing["median"] <= timing["max"] and len(timing["samples"]) == 3
    ratio = result["ratios"]["members4_one_batch_speedup"]
    assert math.isfinite(ratio["median"]) and ratio["median"] > 0
    assert result["steps"] == 2 and (tmp_path / "bench.json").exists()
    with pytest.raises(SystemExit):
        main(["--repeats", "2"])
