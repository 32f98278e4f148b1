"""The correction form on the command line: `addp agent` and `addp mcp` take --correction-mode, bad values are one
line (exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_support import run_cli as run
from PIL import Image


def test_agent_runs_the_papers_form(tmp_path, red_dir, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    code, _, err = run(["agent", str(image), "the cube", "--correction", "the sphere", "--correction-mode", "paper",
                        "--steps", "1", "--max-rounds", "1", "--model", str(red_dir), "--out", str(out)], capsys)
    assert code in (0, None), err
    trace = json.loads((out / "trace.json").read_text())
    assert trace["config"]["correction_mode"] == "paper" and trace["rounds"][0]["corrections"] == ["the sphere"]
    assert trace["rounds"][0]["found"] is True and trace["rounds"][0]["instances"]


@pytest.mark.parametrize("command", [["agent", "IMAGE", "the cube"], ["mcp"]])
def test_unknown_correction_mode_is_one_line(command, tmp_path, red_dir, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    argv = [str(image) if part == "IMAGE" else part for part in command]
    extra = ["--out", str(tmp_path / "o")] if command[0] == "agent" else []
    code, _, err = run([*argv, "--correction-mode", "sideways", "--model", str(red_dir), *extra], capsys)
    assert code == 2 and err.strip().endswith("must be one of additive, replace, paper, got 'sideways'"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_the_eval_config_offers_the_engines_correction_modes():
    from typing import get_args

    from addp_agent.engine.guidance import CORRECTION_MODES, CorrectionMode
    from addp_agent.eval.records import CorrectionModeName

    assert get_args(CorrectionModeName) == get_args(CorrectionMode) == CORRECTION_MODES
