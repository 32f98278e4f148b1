"""The training loop: logs, checkpoints, export, resume, and its faults (empty data, bad resume, NaN, SIGINT)."""

from __future__ import annotations

import json

import pytest
import torch

from addp_agent.errors import DataError, UserError
from addp_agent.train import loop
from addp_agent.train.loop import TrainingDiverged, train


def log_rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def steps_saved(out) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-[0-9]*"))


def test_trains_exports_and_resumes(tiny_train_config, capsys):
    from addp_agent.engine import ADDPPipeline

    config = tiny_train_config(steps=4, val_every=4, val_n=2)
    model_dir = train(config, progress=False)
    rows = log_rows(config.out)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["steps_per_s"] > 0 for r in rows if "loss" in r)
    assert 0 <= rows[-1]["val_mIoU"] <= 1 and "val_oIoU" in rows[-1]
    assert steps_saved(config.out) == [2, 4]
    info = json.loads((model_dir / "training.json").read_text())
    assert info["step"] == 4 and info["metrics"]["val_mIoU"] == rows[-1]["val_mIoU"]
    pipe = ADDPPipeline.from_pretrained(model_dir)
    assert pipe.scheduler.config.prediction_type == "sample"

    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    train(config.model_copy(update={"steps": 6}), progress=False)
    assert "resumed from" in capsys.readouterr().out
    assert [r["step"] for r in log_rows(config.out) if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert steps_saved(config.out) == [4, 6]  # the two newest are kept
    after = ADDPPipeline.from_pretrained(model_dir).unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_epsilon_parameterisation_sets_the_exported_scheduler(tiny_train_config):
    from addp_agent.engine import ADDPPipeline

    config = tiny_train_config(steps=2, parameterization="epsilon", timesteps="uniform", augment=False,
                               train_text_encoder=False)
    pipe = ADDPPipeline.from_pretrained(train(config, progress=False))
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_fine_tunes_a_latent_model(tiny_train_config, tiny_latent_dir):
    from addp_agent.engine import ADDPPipeline

    config = tiny_train_config(steps=2, init_from=str(tiny_latent_dir), n_train=4)
    pipe = ADDPPipeline.from_pretrained(train(config, progress=False))
    assert pipe.vae is not None and pipe.scheduler.config.prediction_type == "sample"
    original = ADDPPipeline.from_pretrained(tiny_latent_dir)
    assert any(not torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), original.unet.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(pipe.vae.parameters(), original.vae.parameters(), strict=True))


def test_empty_and_missing_data_are_data_errors(tiny_train_config, tmp_path):
    with pytest.raises(DataError, match="empty"):
        train(tiny_train_config(n_train=0), progress=False)
    with pytest.raises(UserError):
        train(tiny_train_config(data=f"cris:{tmp_path / 'nowhere'}:refcoco"), progress=False)


def test_incompatible_checkpoint_is_a_user_error(tiny_train_config):
    config = tiny_train_config(steps=2)
    train(config, progress=False)
    wider = config.model.model_copy(update={"block_out_channels": (16, 48)})
    with pytest.raises(UserError, match="does not fit"):
        train(config.model_copy(update={"model": wider, "steps": 4}), progress=False)


@pytest.mark.parametrize(("files", "message"), [
    ({"checkpoints/step-5/step.json": '{"step": 5}'}, "not a complete checkpoint"),  # a marker without the state
    ({"checkpoints/step-5/step.json": "garbage"}, "not a checkpoint marker"),
    ({"checkpoints/step-5/step.json": "[5]"}, "not a checkpoint marker"),
    ({"checkpoints": "a file"}, "not a run folder"),
    ({"model": "a file"}, "not a run folder"),
    ({"train_config.json/x": ""}, "not a run folder"),
    ({"log.jsonl/x": ""}, "not a run folder"),
])
def test_a_folder_that_is_not_a_run_is_a_user_error(tiny_train_config, files, message):
    config = tiny_train_config(steps=1)
    for name, text in files.items():
        (config.out / name).parent.mkdir(parents=True, exist_ok=True)
        (config.out / name).write_text(text)
    with pytest.raises(UserError, match=message):
        train(config, progress=False)


def test_a_data_cache_that_is_a_folder_is_refused_before_any_work(tiny_train_config, tmp_path):
    (tmp_path / "cache").mkdir()
    config = tiny_train_config(steps=1, data_cache=tmp_path / "cache")
    with pytest.raises(UserError, match="--data-cache"):
        train(config, progress=False)
    assert not config.out.exists()


def test_a_data_cache_that_is_someone_elses_file_is_not_overwritten(tiny_train_config, tmp_path):
    notes = tmp_path / "notes.txt"  # was: silently replaced by the generated training set
    notes.write_text("my notes")
    config = tiny_train_config(steps=1, data_cache=notes)
    with pytest.raises(UserError, match="--data-cache .*not a training-set cache"):
        train(config, progress=False)
    assert notes.read_text() == "my notes" and not config.out.exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"val_every": 1, "val_split": "bogus"}, "unknown Shapes-Ref split 'bogus'"),  # was: after the first step
    ({"val_every": 1, "val_split": "bogus", "data": "scenes-gen:4:0:64"}, "unknown Scenes-3D split 'bogus'"),
    ({"resolution": 4096}, "working resolution, 4096 px"),  # was: a pydantic traceback
    ({"resolution": 16}, "working resolution, 16 px"),
    ({"n_train": 10**11}, "--n-train 100000000000: a generated split has at most"),  # was: generating until OOM
    ({"val_every": 1, "val_n": 10**11}, "--val-n"),
])
def test_generated_data_settings_fail_before_any_work(tiny_train_config, overrides, message):
    config = tiny_train_config(steps=1, **overrides)
    with pytest.raises(UserError, match=message):
        train(config, progress=False)
    assert not config.out.exists()


def test_a_step_folder_with_another_name_is_not_a_checkpoint(tiny_train_config):
    config = tiny_train_config(steps=2)
    (config.out / "checkpoints" / "step-old").mkdir(parents=True)
    (config.out / "checkpoints" / "step-old" / "step.json").write_text('{"step": 1}')
    train(config, progress=False)
    assert steps_saved(config.out) == [2] and (config.out / "checkpoints" / "step-old").is_dir()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_train_config, monkeypatch):
    config = tiny_train_config(steps=6)
    real = loop._train_step
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(loop, "_train_step", flaky)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3; the last good checkpoint is .*step-2"):
        train(config, progress=False)
    assert steps_saved(config.out) == [2]
    assert json.loads((config.out / "model" / "training.json").read_text())["step"] == 2


def test_sigint_leaves_a_resumable_checkpoint(tiny_train_config, monkeypatch, capsys):
    config = tiny_train_config(steps=6, checkpoint_every=100)
    real = loop._train_step
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    assert steps_saved(config.out) == [3]
    assert "checkpoint at step 3" in capsys.readouterr().out
    monkeypatch.setattr(loop, "_train_step", real)
    train(config, progress=False)
    assert "step-3 at step 3" in capsys.readouterr().out
    assert [r["step"] for r in log_rows(config.out) if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_bad_config_values_are_user_errors(tiny_train_config):
    with pytest.raises(UserError, match="unknown --timesteps"):
        train(tiny_train_config(timesteps="cosine"), progress=False)
    with pytest.raises(UserError, match="contribution file"):
        train(tiny_train_config(timesteps="estimated"), progress=False)


def test_cosine_schedule_warms_up_then_decays_to_the_floor(tiny_train_config):
    config = tiny_train_config(lr_schedule="cosine", warmup_steps=10, min_lr_ratio=0.1, steps=100)
    assert loop.lr_factor(config, 0, 0.0) == pytest.approx(0.1)  # warm-up: (0 + 1) / 10
    assert loop.lr_factor(config, 50, 0.5) == pytest.approx(0.55)  # half-way down the cosine: 0.1 + 0.9 / 2
    assert loop.lr_factor(config, 99, 1.0) == pytest.approx(0.1)
    assert loop.lr_factor(config, 99, 7.0) == pytest.approx(0.1)  # progress past the end stays at the floor
    constant = tiny_train_config(warmup_steps=10)
    assert loop.lr_factor(constant, 50, 0.9) == 1.0


def test_a_time_budget_shorter_than_one_step_still_exports_a_model(tiny_train_config):
    config = tiny_train_config(steps=3, max_minutes=1e-9)  # was: no model at all, and 'model saved to' it
    info = json.loads((train(config, progress=False) / "training.json").read_text())
    assert info["step"] == 1 and info["stopped_by"] == "time"


def test_progress_follows_whichever_budget_ends_first(tiny_train_config):
    by_steps = tiny_train_config(steps=100)
    assert loop.training_progress(by_steps, 25, 1e6) == 0.25  # no time budget: time does not count
    timed = tiny_train_config(steps=100, max_minutes=2.0)
    assert loop.training_progress(timed, 25, 60.0) == 0.5
    assert loop.training_progress(timed, 90, 60.0) == 0.9


def test_time_budget_stops_with_a_finished_export_and_resumable_checkpoint(tiny_train_config):
    config = tiny_train_config(steps=1000, max_minutes=0.05, val_every=1000, val_n=2, checkpoint_every=1000,
                               lr_schedule="cosine")
    model_dir = train(config, progress=False)
    info = json.loads((model_dir / "training.json").read_text())
    rows = log_rows(config.out)
    done = info["step"]
    assert 0 < done < 1000 and info["finished"] and info["stopped_by"] == "time"
    assert rows[-1]["stopped_by"] == "time" and rows[-1]["step"] == done and "val_mIoU" in rows[-1]
    assert rows[-1]["elapsed_s"] >= 3.0
    assert steps_saved(config.out) == [done]
    marker = json.loads((config.out / "checkpoints" / f"step-{done}" / "step.json").read_text())
    assert marker["step"] == done and marker["elapsed_s"] >= 3.0
    train(config, progress=False)  # the budget is spent: a rerun resumes and stops at once
    assert steps_saved(config.out) == [done]


def test_generated_data_is_cached_and_independent_of_workers(tmp_path, monkeypatch):
    from addp_agent.train import data

    serial = data.generate_shapes("train", 6, seed=3, size=32, workers=1)
    parallel = data.generate_shapes("train", 6, seed=3, size=32, workers=2)
    assert (serial[0] == parallel[0]).all() and (serial[1] == parallel[1]).all() and serial[2] == parallel[2]
    cache = tmp_path / "cache" / "shapes.pt"
    first = data.cached_shapes("train", 6, 3, 32, cache, workers=1)
    assert cache.is_file() and (first[0] == serial[0]).all()

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(data, "generate_shapes", no_generation)
    again = data.cached_shapes("train", 6, 3, 32, cache)
    assert (again[0] == serial[0]).all() and again[2] == serial[2]
    with pytest.raises(AssertionError):  # another seed does not match the cache: it is regenerated
        data.cached_shapes("train", 6, 4, 32, cache)
    cache.write_bytes(b"not a torch file")
    with pytest.raises(AssertionError):  # an unreadable cache is regenerated, not trusted
        data.cached_shapes("train", 6, 3, 32, cache)


def test_bf16_mixed_precision_trains_on_cpu(tiny_train_config, capsys):
    config = tiny_train_config(steps=2, mixed_precision="bf16", checkpoint_every=2)
    train(config, progress=False)
    assert "train:" not in capsys.readouterr().err  # progress=False: no bar
    assert all(r["loss"] > 0 for r in log_rows(config.out) if "loss" in r)
