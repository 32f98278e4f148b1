"""The effects study's numbers on hand-made inputs: spread, paired differences, the choice on val, the summary."""

from __future__ import annotations

import math

import pytest

from addp_agent.effects.config import EffectsConfig, SamplerSetting, Variant
from addp_agent.effects.registry import get_task
from addp_agent.effects.results import RunResult, Selection, SelectionRow
from addp_agent.effects.stats import paired, spread, t_quantile, verdict
from addp_agent.effects.study import choose
from addp_agent.effects.summary import summarise
from addp_agent.effects.task import Curve, Scores


def test_spread_is_mean_sample_sd_min_max():
    s = spread([0.5, 0.7, 0.6])
    assert s.n == 3 and s.mean == pytest.approx(0.6) and s.sd == pytest.approx(0.1)
    assert (s.min, s.max) == (0.5, 0.7)
    one = spread([0.25])
    assert one.sd is None and one.mean == one.min == one.max == 0.25
    with pytest.raises(ValueError):
        spread([])


def test_paired_differences_use_common_seeds_and_a_t_interval():
    variant = {0: 0.6, 1: 0.8, 2: 0.7, 3: 0.9}  # seed 3 has no baseline: not paired
    baseline = {0: 0.5, 1: 0.6, 2: 0.7}
    d = paired(variant, baseline)
    assert d.seeds == [0, 1, 2]
    assert d.mean == pytest.approx(0.1) and d.sd == pytest.approx(0.1)
    assert (d.min, d.max) == (pytest.approx(0.0), pytest.approx(0.2))
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t(0.975, 2 df)
    assert d.ci_low == pytest.approx(0.1 - half) and d.ci_high == pytest.approx(0.1 + half)
    assert not d.same_sign  # seed 2 did not move
    assert verdict(d, higher_is_better=True).startswith("not distinguishable")
    assert t_quantile(2) == pytest.approx(4.302652729911275)

    clear = paired({0: 0.9, 1: 0.92, 2: 0.91}, {0: 0.5, 1: 0.51, 2: 0.49})
    assert clear.same_sign and clear.ci_low > 0
    assert verdict(clear, higher_is_better=True).startswith("better")
    assert verdict(clear, higher_is_better=False).startswith("worse")  # e.g. AbsRel went up
    single = paired({4: 0.3}, {4: 0.2})
    assert single.ci_low is None and verdict(single, True).startswith("one seed")
    assert paired({0: 0.1}, {1: 0.2}) is None


def _row(steps, guidance, value, passes):
    return SelectionRow(setting=SamplerSetting(steps=steps, guidance_scale=guidance), metrics={"mIoU": value},
                        unet_passes=passes)


def test_choice_takes_the_best_val_score_and_breaks_ties_by_cost():
    ris = get_task("ris").primary
    rows = [_row(1, 1.5, 0.40, 2), _row(4, 3.0, 0.55, 8), _row(2, 1.5, 0.55, 4), _row(4, 1.5, None, 8)]
    assert choose(rows, ris) == SamplerSetting(steps=2, guidance_scale=1.5)  # tie at 0.55 → fewer passes
    depth = get_task("depth").primary  # AbsRel: lower is better
    rows = [SelectionRow(setting=SamplerSetting(steps=s), metrics={"abs_rel": v}, unet_passes=s)
            for s, v in ((1, 0.20), (2, 0.12), (4, 0.15))]
    assert choose(rows, depth) == SamplerSetting(steps=2)


def _run(variant: str, seed: int, miou: float, complete: bool = True, curve=(0.2, 0.4)) -> RunResult:
    v = Variant(name=variant, timesteps="ris" if variant in ("timesteps", "both") else "uniform",
                augment=variant in ("augment", "both"))
    chosen = SamplerSetting(steps=1, guidance_scale=1.5)
    metrics = {"mIoU": miou, "oIoU": miou - 0.1, "conf_mIoU": miou - 0.2, "conf_oIoU": miou - 0.3, "n": 10}
    return RunResult(task="ris", variant=v, seed_index=seed, train_seed=seed, steps=100,
                     steps_done=100 if complete else 40, complete=complete, stopped_by=None if complete else "time",
                     final_loss=0.1, train_cpu_s=60.0, train_wall_s=120.0, eval_cpu_s=6.0, eval_wall_s=12.0,
                     selection=Selection(split="val", sample_ids=["a"], metric="mIoU",
                                         rows=[_row(1, 1.5, miou, 2)], chosen=chosen),
                     test=Scores(metrics=metrics, ids=["b"]),
                     curve=Curve(metric="mIoU", timesteps=[999, 499], values=list(curve), n=4),
                     log=f"{variant}/seed-{seed}/log.jsonl", device="cpu")


def test_summary_leaves_out_incomplete_runs_and_pairs_by_seed():
    config = EffectsConfig(steps=100, seeds=3, grid_steps=(1,), grid_guidance=(1.5,))
    runs = [_run("baseline", 0, 0.50, curve=(0.1, 0.3)), _run("baseline", 1, 0.60, curve=(0.3, 0.5)),
            _run("baseline", 2, 0.55),
            _run("both", 0, 0.70), _run("both", 1, 0.75), _run("both", 2, 0.10, complete=False)]
    summary = summarise(config, get_task("ris"), runs)
    base, both = summary.variants
    assert base.seeds == [0, 1, 2] and both.seeds == [0, 1] and both.incomplete == {2: 40}
    assert base.metrics["mIoU"].mean == pytest.approx(0.55) and base.metrics["mIoU"].sd == pytest.approx(0.05)
    assert both.metrics["mIoU"].mean == pytest.approx(0.725)  # the incomplete 0.10 is not averaged in
    assert base.curve.mean == pytest.approx([0.2, 0.4]) and base.curve.min == pytest.approx([0.1, 0.3])
    assert base.curve.max == pytest.approx([0.3, 0.5])
    diff = summary.paired["both"]["mIoU"]
    assert diff.seeds == [0, 1] and diff.mean == pytest.approx(0.175)  # (0.20 + 0.15) / 2
    assert (diff.min, diff.max) == (pytest.approx(0.15), pytest.approx(0.20)) and diff.same_sign
    assert base.grid[0].chosen == 3 and base.grid[0].val.mean == pytest.approx(0.55)
