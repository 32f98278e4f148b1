"""`addp analyze-timesteps`: the IoU-vs-timestep curve, its band, and c_t in the `--timesteps estimated` format."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from addp_agent.cli import main
from addp_agent.eval.timesteps import curve
from addp_agent.train.contribution import estimate_contribution
from addp_agent.train.timesteps import load_estimated


def test_curve_statistics_by_hand() -> None:
    # two samples, three steps; (I, U) per step; the empty union counts as IoU 1
    counts = np.array([[(1, 4), (2, 4), (0, 0)], [(0, 4), (2, 4), (3, 4)]])
    result = curve([0, 1, 2], [900, 500, 100], counts, 1000)
    assert result.miou == [0.125, 0.5, 0.875]
    assert result.oiou == [1 / 8, 4 / 8, 3 / 4]
    sd = math.sqrt(2 * 0.125**2)  # sample standard deviation of (0.25, 0)
    assert result.std[0] == pytest.approx(sd)
    assert result.ci_low[0] == pytest.approx(0.125 - 1.96 * sd / math.sqrt(2))
    assert result.ci_high[1] == result.miou[1] == 0.5  # no spread at step 1
    assert result.contribution == estimate_contribution([900, 500, 100], [0.125, 0.5, 0.875], 1000).tolist()


def test_cli_writes_curve_and_contribution(tiny_pixel_dir, tmp_path) -> None:
    from conftest import redden

    model = redden(tiny_pixel_dir, tmp_path / "model")
    out = tmp_path / "curve"
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze-timesteps", "--data", "shapes-gen:6:2:32", "--model", str(model), "--steps", "4",
              "--limit", "5", "--batch-size", "2", "--out", str(out)])
    assert exit_info.value.code == 0
    rows = list(csv.DictReader((out / "iou_vs_timestep.csv").open()))
    document = json.loads((out / "iou_vs_timestep.json").read_text())
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3] and document["n"] == 5
    timesteps = document["timesteps"]
    assert timesteps == sorted(timesteps, reverse=True) and len(set(timesteps)) == 4
    assert [float(r["mIoU"]) for r in rows] == pytest.approx(document["miou"], abs=1e-6)
    assert all(lo <= m <= hi for lo, m, hi in zip(document["ci_low"], document["miou"], document["ci_high"],
                                                  strict=True))
    assert 0.0 < max(document["miou"]) < 1.0
    contribution = json.loads((out / "contribution.json").read_text())
    assert contribution["timesteps"] == timesteps and max(contribution["contribution"]) == 1.0
    c2 = load_estimated(out / "contribution.json")
    assert c2.shape == (1000,) and c2.max() == pytest.approx(1.0)
    assert (out / "iou_vs_timestep.png").stat().st_size > 0
