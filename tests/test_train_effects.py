"""The effects study end to end at a toy budget: four models, estimated c_t from the baseline, report and plots."""

from __future__ import annotations

import json

from addp_agent.train.effects import EffectsConfig, run_effects
from addp_agent.train.effects_report import write_report


def test_effects_runs_reports_and_reuses_models(tmp_path):
    config = EffectsConfig(out=tmp_path / "effects", steps=2, n_train=4, n_test=3, batch_size=2, channels=(16, 32),
                           resolution=32, infer_steps=2, sampler="estimated")
    results = run_effects(config)
    assert [r.variant.name for r in results] == ["baseline", "timesteps", "augment", "both"]
    assert [(r.variant.timesteps, r.variant.augment) for r in results] == [
        ("uniform", False), ("estimated", False), ("uniform", True), ("estimated", True)]
    contribution = json.loads((config.out / "contribution.json").read_text())
    assert len(contribution["timesteps"]) == 2 and max(contribution["contribution"]) == 1.0
    for r in results:
        assert r.test["n"] == 3 and len(r.curve.miou) == 2 and r.confusable["n"] <= 3
        assert r.late_decline >= 0 and r.final_loss is not None and r.final_loss > 0
        assert json.loads((config.out / r.variant.name / "model" / "training.json").read_text())["step"] == 2
    saved = json.loads((config.out / "effects.json").read_text())
    assert [r["test"]["mIoU"] for r in saved["results"]] == [r.test["mIoU"] for r in results]

    doc = write_report(config, results, tmp_path / "docs" / "results.md", tmp_path / "docs" / "img")
    text = doc.read_text()
    assert "Small-budget run" in text and "(i) contribution-aware t" in text and "![IoU vs timestep](img/" in text
    assert sum(line.startswith(("| baseline", "| timesteps", "| augment", "| both")) for line in text.splitlines()) == 8
    assert (tmp_path / "docs" / "img" / "effects_curves.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "img" / "effects_bars.png").stat().st_size > 1000

    again = run_effects(config)  # finished models are reused, not retrained
    assert [r.test for r in again] == [r.test for r in results]
    assert [r.train_s for r in again] == [r.train_s for r in results]


def test_variants_run_separately_then_assemble(tmp_path, capsys):
    import pytest

    from addp_agent.cli import main
    from addp_agent.errors import UserError
    from addp_agent.train.effects import command_line

    config = EffectsConfig(out=tmp_path / "fx", steps=2, n_train=4, n_test=2, batch_size=2, channels=(16, 32),
                           resolution=32, infer_steps=2, text_layers=2, text_heads=4, lr_schedule="cosine",
                           max_minutes=5.0, paint_weight=4.0)
    with pytest.raises(UserError, match="unknown --variant"):
        run_effects(config, only=["nope"])
    first = run_effects(config, only=["both"])
    assert [r.variant.name for r in first] == ["both"] and not (config.out / "effects.json").exists()
    assert first[0].steps_done == 2 and first[0].device
    stored = json.loads((config.out / "both" / "result.json").read_text())
    assert stored["result"]["test"] == first[0].test
    info = json.loads((config.out / "both" / "model" / "training.json").read_text())
    assert info["config"]["paint_weight"] == 4.0 and info["config"]["model"]["text"]["layers"] == 2
    capsys.readouterr()
    everything = run_effects(config)  # trains the other three, reuses the scored one
    assert "both: reused" in capsys.readouterr().out
    assert [r.variant.name for r in everything] == ["baseline", "timesteps", "augment", "both"]
    assert everything[3].test == first[0].test and (config.out / "effects.json").exists()
    command = command_line(config, tmp_path / "r.md")
    assert "--text-layers 2" in command and "--channels 16,32" in command and "--max-minutes 5.0" in command
    assert "--seed" not in command  # defaults are left out
    doc = write_report(config, everything, tmp_path / "r.md", tmp_path / "img")
    text = doc.read_text()
    assert "steps reached: baseline 2, timesteps 2, augment 2, both 2" in text and "Hardware: CPU" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["effects", "--out", str(tmp_path / "fx"), "--variant", "both", "--doc", str(tmp_path / "x.md")])
    assert exit_info.value.code == 2
    for bad in (["--max-minutes", "-1"], ["--paint-weight", "0.5"], ["--lr-schedule", "linear"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["effects", "--out", str(tmp_path / "bad"), *bad])
        assert exit_info.value.code == 2 and not (tmp_path / "bad").exists()  # nothing half-written
