"""`addp train --recipe`: the committed recipes, resolution against flags, the run plan (effective batch, epochs),
gradient accumulation, grouped training data, the EMA warm-up, and bad input."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from cli_support import exit_code

import addp_agent.cli as cli
from addp_agent.data.sample import RISSample
from addp_agent.errors import UserError
from addp_agent.models.tokenizer import build_tokenizer
from addp_agent.presets import as_flag, describe
from addp_agent.train import loop
from addp_agent.train.config import TrainConfig
from addp_agent.train.data import from_samples
from addp_agent.train.plan import accumulation_steps, plan_run
from addp_agent.train.recipe import find_recipe, recipe_config, recipes, resolve_recipe


@pytest.fixture()
def _train_only(monkeypatch) -> None:
    monkeypatch.setattr(cli, "_register", lambda: [importlib.import_module(f"addp_agent.cli.{name}")
                                                   for name in ("data", "train")])


def test_committed_recipes_are_valid_and_paper_refcoco_is_the_official_setting():
    assert "paper-refcoco" in recipes()
    for preset in recipes().values():
        find_recipe(preset.name)  # every setting is a TrainConfig field with a valid value
    config = recipe_config("paper-refcoco", data="cris:data:refcoco", out="runs/x")
    assert (config.lr, config.warmup_steps, config.lr_schedule, config.weight_decay) == (1e-4, 0, "constant", 0.01)
    assert (config.batch_size, config.effective_batch_size, config.epochs) == (32, 256, 20)
    assert (config.parameterization, config.timesteps, config.augment, config.augment_intensity) == \
        ("sample", "ris", True, 0.2)
    assert (config.cfg_dropout, config.resolution, config.train_text_encoder) == (0.05, 256, False)
    assert (config.ema_decay, config.ema_warmup, config.max_grad_norm) == (0.9999, "ldm", None)
    assert config.gradient_checkpointing and config.mixed_precision == "no"
    assert config.init_from == "timbrooks/instruct-pix2pix" and config.recipe == "paper-refcoco"


def test_given_flags_override_the_recipe_and_replace_alternatives():
    config = recipe_config("paper-refcoco", data="d", out="o", steps=4, batch_size=2)
    assert (config.steps, config.epochs, config.batch_size, config.effective_batch_size) == (4, None, 2, 256)
    config = recipe_config("paper-refcoco", data="d", out="o", gradient_accumulation_steps=3)
    assert (config.gradient_accumulation_steps, config.effective_batch_size) == (3, None)
    with pytest.raises(UserError, match="--steps and --epochs say the same thing in two ways"):
        resolve_recipe({"recipe": "paper-refcoco", "steps": 4, "epochs": 2, "data": "d"}, {"steps", "epochs", "data"},
                       name=as_flag)
    with pytest.raises(UserError, match="paper-refcoco needs --data"):
        resolve_recipe({"recipe": "paper-refcoco", "data": "shapes"}, {"recipe"}, name=as_flag)


def test_the_recipe_is_printed_in_full_with_changes_marked():
    preset = find_recipe("paper-refcoco")
    config = recipe_config("paper-refcoco", data="d", out="o", epochs=1)
    lines = describe(preset, config.model_dump(mode="json"), "recipe", as_flag)
    assert lines[0].startswith("recipe paper-refcoco: ") and lines[1].startswith("  source: official ADDP code")
    assert len(lines) == len(preset.settings) + 3
    assert any(line.split()[:2] == ["--epochs", "1.0"] and "the recipe says 20" in line for line in lines)
    assert any(line.split()[:2] == ["--effective-batch-size", "256"] for line in lines)
    assert lines[-1].strip() == "1 setting(s) changed from the recipe"


def test_effective_batch_sets_accumulation_and_epochs_set_steps():
    config = TrainConfig(out="o", batch_size=32, effective_batch_size=256, epochs=20)
    assert accumulation_steps(config, processes=2) == 4  # the official run: 32 × 4 × 2 GPUs
    assert accumulation_steps(config, processes=1) == 8
    plan = plan_run(config, processes=1, epoch_size=42_404)
    assert (plan.effective_batch, plan.accumulation, plan.steps) == (256, 8, 3313)  # ⌈20 · 42404 / 256⌉
    assert "3313 steps = ⌈20 epochs × 42404 referred objects / 256⌉" in plan.describe()
    with pytest.raises(UserError, match="--effective-batch-size 256 is not a multiple of --batch-size 48 × 1"):
        accumulation_steps(config.model_copy(update={"batch_size": 48}), processes=1)
    fixed = plan_run(TrainConfig(out="o", steps=7, gradient_accumulation_steps=3, batch_size=2), 2, 100)
    assert (fixed.steps, fixed.accumulation, fixed.effective_batch) == (7, 3, 12)


def _sample(image, mask, text, ref):
    return RISSample(sample_id=f"{ref}-{text}", image=image, expression=text, mask=mask, ref_id=ref)


def test_training_data_has_one_row_per_referred_object_and_one_copy_per_image():
    """CRIS/REFER yield one sample per expression; an epoch is one pass over the objects (refseg_dataset)."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    left, right = np.zeros((24, 24), bool), np.zeros((24, 24), bool)
    left[:, :12], right[:, 12:] = True, True
    samples = [_sample(photo, left, "left thing", "1"), _sample(photo, left, "leftmost", "1"),
               _sample(photo, right, "right thing", "2"), _sample(photo.copy(), left, "left again", "3")]
    data = from_samples(samples, build_tokenizer(), size=16)
    assert len(data) == 2 and data.images.shape[0] == 1 and data.input_ids.shape[0] == 4
    assert data.expression_count.tolist() == [3, 1] and data.first_expression.tolist() == [0, 3]
    tokenizer = build_tokenizer()
    ids = {tuple(tokenizer([t], padding="max_length", max_length=tokenizer.model_max_length,
                           return_tensors="pt").input_ids[0].tolist()): t
           for t in ("left thing", "leftmost", "right thing", "left again")}
    generator = torch.Generator().manual_seed(0)
    picked = [ids[tuple(row.tolist())] for _ in range(20) for row in data.batch(torch.tensor([0]), generator)[2]]
    assert set(picked) == {"left thing", "leftmost", "left again"}  # one of the object's own expressions
    images, masks, texts = data.batch(torch.tensor([1, 0]), generator)
    assert images.shape == (2, 3, 16, 16) and masks[0, :, 8:].all() and not masks[0, :, :8].any()
    assert ids[tuple(texts[0].tolist())] == "right thing"


def test_ldm_ema_warmup_is_the_official_decay():
    model = torch.nn.Linear(2, 2)
    ldm = loop._ema(model, TrainConfig(out="o", ema_decay=0.9999, ema_warmup="ldm"))
    assert ldm.get_decay(11) == pytest.approx(11 / 20)  # (1 + n)/(10 + n) after n = 10 updates
    assert ldm.get_decay(1_000_000) == pytest.approx(0.9999)
    power = loop._ema(model, TrainConfig(out="o", ema_decay=0.9999))
    assert power.get_decay(11) == pytest.approx(1 - 11 ** -0.75)


def test_accumulated_gradients_are_the_mean_of_the_micro_batch_gradients(tiny_train_config):
    """Two accumulated micro-batches give the gradient of their mean loss: the mean of each one's gradient."""
    config = tiny_train_config(batch_size=2, gradient_accumulation_steps=2, augment=True)
    accelerator = loop.make_accelerator(config)
    run = loop.prepare_run(config, accelerator)
    assert run.plan.accumulation == 2 and accelerator.gradient_accumulation_steps == 2
    generator = torch.Generator().manual_seed(5)
    start = generator.get_state()
    accumulated_loss = loop.accumulate_gradients(run, generator)
    accumulated = [p.grad.clone() for p in run.params]
    run.optimizer.zero_grad(set_to_none=True)
    generator.set_state(start)
    run.plan = run.plan.model_copy(update={"accumulation": 1})
    accelerator.gradient_accumulation_steps = 1
    singles, losses = [], []
    for _ in range(2):  # the same micro-batches one at a time: the generator draws them in the same order
        losses.append(loop.accumulate_gradients(run, generator))
        singles.append([p.grad.clone() for p in run.params])
        run.optimizer.zero_grad(set_to_none=True)
    assert accumulated_loss == pytest.approx(sum(losses) / 2)
    for total, first, second in zip(accumulated, singles[0], singles[1], strict=True):
        torch.testing.assert_close(total, (first + second) / 2, rtol=1e-4, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(singles[0], singles[1], strict=True))


def test_recipe_run_prints_and_records_the_recipe_and_its_plan(_train_only, tiny_latent_dir, tmp_path, capsys):
    from addp_agent.engine import ADDPPipeline

    data = tmp_path / "data"
    for split, n in (("train", 6), ("val", 2)):
        assert exit_code(["data", "shapes", "--out", str(data), "--split", split, "--n", str(n), "--format", "cris",
                           "--dataset-name", "refcoco", "--size", "48"]) == 0
    out = tmp_path / "run"
    assert exit_code(["train", "--recipe", "paper-refcoco", "--data", f"cris:{data}:refcoco", "--init-from",
                       str(tiny_latent_dir), "--out", str(out), "--resolution", "64", "--batch-size", "2",
                       "--effective-batch-size", "4", "--epochs", "1", "--val-every", "0", "--checkpoint-every", "2",
                       "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "\nrecipe paper-refcoco: " in printed
    assert "plan: 2 steps = ⌈1 epochs × 6 referred objects / 4⌉; 4 samples per step = 2 per micro-batch × 2 " \
           "accumulated × 1 process(es)" in printed
    saved = json.loads((out / "recipe.json").read_text())
    assert saved["recipe"]["name"] == "paper-refcoco" and saved["recipe"]["settings"]["epochs"] == 20
    assert saved["recipe"]["changed"]["resolution"] == {"preset": 256, "used": 64}
    assert saved["plan"] | {} == {"processes": 1, "batch_size": 2, "accumulation": 2, "effective_batch": 4, "steps": 2,
                                  "epoch_size": 6, "epochs": 1.0}
    assert json.loads((out / "train_config.json").read_text())["recipe"] == "paper-refcoco"
    pipe = ADDPPipeline.from_pretrained(out / "model")
    assert pipe.resolution == 64 and pipe.scheduler.config.prediction_type == "sample"
    assert not pipe.unet.is_gradient_checkpointing  # a training switch, not part of the exported model


@pytest.mark.parametrize("extra, message", [
    (["--recipe", "paper-refcocoo", "--data", "shapes"], "unknown --recipe 'paper-refcocoo'; use one of "
                                                        "paper-refcoco or a .json file"),
    (["--recipe", "paper-refcoco"], "paper-refcoco needs --data"),
    (["--recipe", "/no/such/recipe.json", "--data", "shapes"], "/no/such/recipe.json: cannot read a recipe"),
    (["--steps", "4", "--epochs", "2"], "--steps and --epochs say the same thing in two ways; give one"),
    (["--recipe", "paper-refcoco", "--data", "shapes", "--batch-size", "48"],
     "--effective-batch-size 256 is not a multiple of --batch-size 48"),
    (["--recipe", "paper-refcoco", "--data", "cris:/no/such/root:refcoco"], "/no/such/root: data root not found"),
    (["--recipe", "paper-refcoco", "--data", "shapes", "--init-from", "/no/such/model"],
     "/no/such/model: model path does not exist"),
    (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps"),
    (["--epochs", "-1"], "--epochs"),
])
def test_bad_recipe_input_is_one_line_exit_2(_train_only, tmp_path, capsys, extra, message):
    assert exit_code(["train", "--out", str(tmp_path / "run"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
