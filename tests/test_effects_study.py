"""The effects studies end to end at toy sizes (2 seeds × 2 steps in a tmp dir), for both tasks: equal steps,
selection on val only, reuse of finished runs, the safety stop, the page and its artifacts, and bad options."""

from __future__ import annotations

import json
import os

import pytest
import torch

from addp_agent.cli import main
from addp_agent.effects.config import EffectsConfig, SamplerSetting, sampler_grid, variants
from addp_agent.effects.registry import get_task
from addp_agent.effects.study import run_dir, run_lock, run_study
from addp_agent.errors import UserError

TOY = dict(data="scenes-gen:6:0:64", seeds=2, steps=2, batch_size=2, channels=(16, 32), n_val=3, n_test=3,
           grid_steps=(1, 2), curve_steps=2, curve_n=2, eval_batch=2)


def _cli(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(next((model_dir / "unet").glob("*.safetensors"))))


def test_ris_study_equal_steps_val_selection_reuse_and_page(tmp_path):
    from addp_agent.effects.report import write_report

    config = EffectsConfig(task="ris", out=tmp_path / "ris", **TOY)
    messages: list[str] = []
    results = run_study(config, echo=messages.append)
    assert [(r.variant.name, r.seed_index) for r in results] == [
        (v, k) for k in (0, 1) for v in ("baseline", "timesteps", "augment", "both")]
    assert [(v.timesteps, v.augment) for v in variants(config)] == [
        ("uniform", False), ("ris", False), ("uniform", True), ("ris", True)]
    for r in results:  # equal steps: every run trained exactly --steps, on the same data, its own seed
        folder = run_dir(config, r.variant.name, r.seed_index)
        trained = json.loads((folder / "model" / "training.json").read_text())
        assert r.complete and r.steps_done == trained["step"] == trained["config"]["steps"] == 2
        assert trained["config"]["seed"] == r.seed_index and trained["config"]["data"] == "scenes-gen:6:0:64"
        assert (trained["config"]["timesteps"], trained["config"]["augment"]) == (r.variant.timesteps,
                                                                                 r.variant.augment)
        # selection scored the val split only, every grid point; test and curve the test split
        assert r.selection.split == "val" and len(r.selection.sample_ids) == 3
        assert all(i.startswith("scenes3d-val-") for i in r.selection.sample_ids)
        assert [row.setting for row in r.selection.rows] == sampler_grid(config)
        assert r.selection.chosen in sampler_grid(config)
        assert all(i.startswith("scenes3d-test-") for i in r.test.ids) and r.test.metrics["n"] == 3
        assert len(r.curve.timesteps) == 2 and r.curve.timesteps[0] == 999  # trailing spacing starts at T − 1
    a, b = (_weights(run_dir(config, "baseline", k) / "model") for k in (0, 1))
    assert any(not torch.equal(a[key], b[key]) for key in a)  # another seed, other initial weights
    saved = json.loads((config.folder / "effects.json").read_text())
    assert len(saved["runs"]) == 8 and saved["summary"]["variants"][0]["seeds"] == [0, 1]

    again: list[str] = []
    reused = run_study(config, echo=again.append)  # finished runs are reused, not retrained or rescored
    assert sum("reused" in m for m in again) == 8 and [r.test for r in reused] == [r.test for r in results]

    doc = write_report(config, results, tmp_path / "docs" / "results.md", tmp_path / "docs" / "img")
    text = doc.read_text()
    assert "every run trained for all its steps" in text and "Test never takes part in the choice" in text
    assert sum(line.startswith(("| baseline | 2 |", "| both | 2 |")) for line in text.splitlines()) == 2
    assert "| both | test mIoU |" in text and "95 % CI" in text and "What they do not show" in text
    assert "(12.71 for n = 2)" in text  # the t value of this study's seed count (was: n = 3's, always)
    assert (tmp_path / "docs" / "img" / "effects_ris_curves.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "img" / "effects_ris_bars.png").stat().st_size > 1000
    logs = sorted(p.name for p in (tmp_path / "docs" / "effects" / "ris" / "logs").iterdir())
    assert len(logs) == 8 and "both-seed1.jsonl" in logs
    assert json.loads((tmp_path / "docs" / "effects" / "ris" / "effects.json").read_text())["task"] == "ris"


def test_depth_study_via_the_cli_chooses_on_val_and_scores_test(tmp_path, capsys):
    out, docs = tmp_path / "depth", tmp_path / "docs"
    args = ["effects", "--task", "depth", "--out", str(out), "--data", "scenes-gen:6:0:64", "--seeds", "2",
            "--steps", "2", "--batch-size", "2", "--channels", "16,32", "--n-val", "3", "--n-test", "3",
            "--grid-steps", "1,2", "--curve-steps", "2", "--curve-n", "2", "--eval-batch", "2"]
    _cli([*args, "--variant", "both", "--seed-index", "1"])  # one run as its own process would
    assert (out / "both" / "seed-1" / "result.json").exists() and not (out / "both" / "seed-0").exists()
    assert not (out / "effects.json").exists()
    _cli([*args, "--doc", str(docs / "depth-effects.md"), "--img-dir", str(docs / "img"),
          "--note", "Toy scale: checks the pipeline only."])  # the rest + assembly
    assert "both seed 1: reused" in capsys.readouterr().out
    saved = json.loads((docs / "effects" / "depth" / "effects.json").read_text())
    assert len(saved["runs"]) == 8 and saved["config"]["task"] == "depth"

    config = EffectsConfig.model_validate(saved["config"])
    task = get_task("depth")
    val, test = task.samples(config, "val", 3), task.samples(config, "test", 3)
    run = next(r for r in saved["runs"] if r["variant"]["name"] == "timesteps" and r["seed_index"] == 0)
    pipe = task.load(run_dir(config, "timesteps", 0) / "model")
    for row in run["selection"]["rows"]:  # the stored selection is the val score; test scores differ
        setting = SamplerSetting.model_validate(row["setting"])
        on_val = task.score(config, pipe, val, setting).metrics
        on_test = task.score(config, pipe, test, setting).metrics
        assert on_val["abs_rel"] == pytest.approx(row["metrics"]["abs_rel"])
        assert on_val["abs_rel"] != pytest.approx(on_test["abs_rel"])
    chosen = SamplerSetting.model_validate(run["selection"]["chosen"])
    best = min(run["selection"]["rows"], key=lambda row: (row["metrics"]["abs_rel"], row["unet_passes"]))
    assert best["setting"] == run["selection"]["chosen"]
    assert task.score(config, pipe, test, chosen).metrics["abs_rel"] == pytest.approx(run["test"]["metrics"]["abs_rel"])
    text = (docs / "depth-effects.md").read_text()
    assert "ADDP effects on Scenes-3D: depth" in text and "| timesteps | AbsRel |" in text
    assert text.splitlines()[2] == "> **Toy scale: checks the pipeline only.**"
    assert "(31 px, σ = 10·(t+1)/T·U(0,1))" in text and (docs / "img" / "effects_depth_curves.png").exists()


def test_the_safety_stop_marks_a_run_incomplete_and_leaves_it_out(tmp_path):
    from addp_agent.effects.report import write_report
    from addp_agent.effects.summary import summarise

    config = EffectsConfig(task="depth", out=tmp_path / "d", **{**TOY, "steps": 3, "seeds": 1},
                           max_minutes=1e-6)  # stops after the first step
    results = run_study(config)
    assert all(not r.complete and r.steps_done == 1 and r.stopped_by == "time" for r in results)
    summary = summarise(config, get_task("depth"), results)
    assert all(s.seeds == [] and s.incomplete == {0: 1} and not s.metrics for s in summary.variants)
    text = write_report(config, results, tmp_path / "p.md", tmp_path / "img").read_text()
    assert "Left out as incomplete: baseline seed 0 (1 of 3 steps)" in text


def test_a_run_in_progress_elsewhere_is_refused_and_a_stale_lock_is_taken(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(str(os.getppid()))  # a live process that is not this one
    with pytest.raises(UserError, match="is working on this run"), run_lock(folder):
        pass
    (folder / ".lock").write_text("4194303")  # above the usual pid range: no such process
    with run_lock(folder):
        assert (folder / ".lock").read_text() == str(os.getpid())
    assert not (folder / ".lock").exists()


@pytest.mark.parametrize("bad", [
    ["--task", "segmentation", "--steps", "2"],  # unknown task
    ["--steps", "2", "--variant", "uniform"],  # unknown variant
    ["--steps", "2", "--seeds", "0"],  # seeds < 1
    ["--steps", "2", "--seeds", "-3"],
    ["--max-minutes", "30"],  # a time budget as the only basis of the comparison
    ["--steps", "0", "--max-minutes", "30"],
    ["--steps", "2", "--seed-index", "3"],  # seed index outside --seeds 3
    ["--steps", "2", "--data", "refer:/x:refcoco:unc"],  # not a generated source
    ["--task", "depth", "--steps", "2", "--data", "shapes-gen:10:0:64"],  # a RIS source for depth
    ["--steps", "2", "--lr-schedule", "exponential"],  # depth-only schedule for RIS
    ["--steps", "2", "--grid-steps", "0,2"],
    ["--steps", "2", "--variant", "both", "--doc", "{tmp}/x.md"],  # the page needs every run
    ["--steps", "2", "--note", "a page note without a page"],
    ["--steps", "2", "--threads", "0"],
    ["--steps", "2", "--lr", "1e300"],  # AdamW overflows
    ["--steps", "2", "--data", "shapes-gen:99999999999:0:32"],  # was: refused only after effects_config.json
    ["--task", "depth", "--steps", "2", "--data", "synthetic:99999999999"],  # was: generated until memory ran out
    ["--steps", "2", "--grid-guidance", "nan"],  # the grid failed after training, in scoring
    ["--steps", "2", "--grid-guidance", "1e5"],
    ["--steps", "2", "--grid-steps", "5000"],
    ["--steps", "2", "--curve-steps", "5000"],
    ["--steps", "2", "--image-guidance", "1e5"],
    ["--steps", "2", "--eval-seed", "99999999999999999999"],  # torch's 'Overflow when unpacking long long'
    ["--steps", "2", "--channels", "7"],  # GroupNorm's traceback when the model was built
    ["--steps", "2", "--text-hidden", "3", "--text-heads", "2"],
    ["--steps", "2", "--doc", "/sys/addp/x.md"],  # written after the study: checked before it
    ["--steps", "2", "--doc", "{tmp}/x.md", "--img-dir", "/sys/addp/img"],
    ["--steps", "2", "--doc", "{tmp}/x.md", "--artifacts", "/sys/addp/artifacts"],
])
def test_bad_options_give_one_line_exit_2_and_write_nothing(tmp_path, capsys, bad):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exit_info:
        main(["effects", "--out", str(out), *(arg.format(tmp=tmp_path) for arg in bad)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err
    assert not out.exists() and not (tmp_path / "x.md").exists()


def test_channels_error_says_what_a_width_must_be(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["effects", "--out", str(tmp_path / "study"), "--steps", "2", "--channels", "16,7"])
    err = capsys.readouterr().err  # was: "block_out_channels [7] must be … norm_num_groups 8", no such option
    assert "channels must be positive multiples of 8" in err and "got 16,7" in err


@pytest.mark.parametrize(("seeds", "says"), [(1, "Certainty with 1 seed: none"), (3, "(4.30 for n = 3)"),
                                             (5, "(2.78 for n = 5)")])
def test_the_page_states_the_t_value_of_its_own_seed_count(seeds, says):
    from addp_agent.effects.report import _certainty

    assert says in _certainty(seeds)


def test_no_channels_at_all_says_none(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["effects", "--out", str(tmp_path / "study"), "--steps", "2", "--channels", ","])
    assert "got none" in capsys.readouterr().err  # was: "… group norm); got " with nothing after it
