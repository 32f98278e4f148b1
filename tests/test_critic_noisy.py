"""The noisy oracle (seeded error rates) and the critic-accuracy study built on it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from addp_agent.cli import main
from addp_agent.critic import CritiqueRequest, ErrorRates, NoisyOracleCritic, OracleCritic
from addp_agent.critic.noisy import ERROR_MARK
from addp_agent.data.sample import Instance
from addp_agent.eval.critic_study import CriticStudyConfig, break_even, run_study
from addp_agent.eval.records import EvalConfig
from addp_agent.eval.runner import critic_factory, evaluate

pytestmark = pytest.mark.usefixtures("one_thread")


def _scene():
    gt = np.zeros((20, 20), bool)
    gt[2:8, 2:8] = True
    circle, cross = np.zeros_like(gt), np.zeros_like(gt)
    circle[10:18, 10:18] = True
    cross[10:12, 0:4] = True
    return gt, [Instance(circle, "the circle"), Instance(cross, "the cross")]


def _request(mask, round=1, corrections=()):
    return CritiqueRequest(image=np.zeros((20, 20, 3), np.uint8), expression="the square", mask=mask, round=round,
                           corrections=list(corrections))


def _noisy(rates, seed=0, key="s"):
    gt, instances = _scene()
    return NoisyOracleCritic(OracleCritic(gt, instances), rates, seed, key)


def test_without_errors_it_is_the_oracle():
    gt, instances = _scene()
    oracle, noisy = OracleCritic(gt, instances), _noisy(ErrorRates())
    for mask in (gt, gt | instances[0].mask, instances[1].mask, np.zeros_like(gt)):
        assert noisy.critique(_request(mask)) == oracle.critique(_request(mask))
    assert noisy.tally == {"critiques": 4} and noisy.errors == 0


def test_each_error_kind_at_rate_one():
    gt, instances = _scene()
    wrong = gt | instances[0].mask  # the oracle names the circle
    accepted = _noisy(ErrorRates(false_accept=1.0)).critique(_request(wrong))
    assert accepted.verdict == "accept" and accepted.problem.startswith(f"{ERROR_MARK} (false accept)")
    rejected = _noisy(ErrorRates(false_reject=1.0)).critique(_request(gt))
    assert rejected.verdict == "revise" and rejected.correction in ("the circle", "the cross")
    assert rejected.problem.startswith(f"{ERROR_MARK} (false reject)")
    renamed = _noisy(ErrorRates(wrong_name=1.0)).critique(_request(wrong))
    assert renamed.correction == "the cross" and renamed.problem.startswith(f"{ERROR_MARK} (wrong name)")
    only_one_left = _noisy(ErrorRates(wrong_name=1.0)).critique(_request(wrong | instances[1].mask, 2, ["the cross"]))
    assert only_one_left.correction == "the circle"  # nothing else to name wrongly: the truth stands


def test_errors_are_seeded_by_sample_and_round_and_hit_their_rate():
    gt, instances = _scene()
    wrong = gt | instances[0].mask
    rates = ErrorRates(false_accept=0.3)

    def verdicts(seed):
        return [_noisy(rates, seed, f"sample-{k}").critique(_request(wrong, round=1 + k % 3)).verdict
                for k in range(600)]

    first = verdicts(0)
    assert first == verdicts(0)
    assert first != verdicts(1)
    assert abs(first.count("accept") / 600 - 0.3) < 0.06


def test_rates_from_an_accuracy_and_explicit_overrides_in_the_eval_config():
    assert ErrorRates.from_accuracy(0.8) == ErrorRates(false_accept=0.2, false_reject=0.2, wrong_name=0.2)
    config = EvalConfig(data="shapes-gen:4", critic="noisy", critic_accuracy=0.75, false_reject=0.0)
    assert config.error_rates() == ErrorRates(false_accept=0.25, false_reject=0.0, wrong_name=0.25)
    assert EvalConfig(data="shapes-gen:4", critic="noisy", wrong_name=0.5).error_rates() == ErrorRates(wrong_name=0.5)
    with pytest.raises(ValueError, match="noisy critic needs --critic-accuracy"):
        EvalConfig(data="shapes-gen:4", critic="noisy")


# ------------------------------------------------------------------------------------------------- study
def _rows(*points):
    return [{"accuracy": a, "net_gain": g} for a, g in points]


@pytest.mark.parametrize(("points", "accuracy", "note"), [
    ([(0.5, -0.02), (0.7, -0.01), (0.9, 0.01), (1.0, 0.02)], 0.8, "interpolated between 0.7"),
    ([(0.5, -0.02), (0.7, 0.01), (0.8, -0.005), (1.0, 0.02)], 0.8 + 0.2 * 0.005 / 0.025, "between 0.8"),
    ([(0.5, 0.0), (1.0, 0.02)], None, "≥ 0 at every accuracy tried"),
    ([(0.5, -0.03), (1.0, -0.01)], None, "negative even at accuracy 1"),
])
def test_break_even_is_where_the_net_gain_crosses_zero(points, accuracy, note):
    found = break_even(_rows(*points))
    assert note in found["note"]
    assert found["accuracy"] == (None if accuracy is None else pytest.approx(accuracy))


def test_study_on_a_tiny_model_writes_rows_plot_and_matches_plain_evaluations(red_pipe, red_dir, tmp_path):
    config = CriticStudyConfig(data="shapes-gen:6:4:32", split="val", model=str(red_dir), accuracies=[1.0, 0.0],
                               limit=6, batch_size=3, steps=1)
    study = run_study(config, tmp_path / "study", red_pipe)
    assert [r["accuracy"] for r in study["rows"]] == [0.0, 1.0]
    never, always = study["rows"]
    assert (never["measured_accuracy"], always["measured_accuracy"]) == (0.0, 1.0) and never["critiques"] > 0
    assert never["round1_mIoU"] == always["round1_mIoU"]  # round 1 does not depend on the critic
    oracle = EvalConfig(data=config.data, split="val", model=str(red_dir), critic="oracle", max_rounds=3, steps=1,
                        limit=6, batch_size=3)
    document = evaluate(oracle, tmp_path / "oracle", red_pipe, critic_factory(oracle))
    assert always["answer_mIoU"] == document["answer"]["mIoU"]  # accuracy 1 is the oracle
    saved = json.loads((tmp_path / "study" / "critic_study.json").read_text())
    assert saved["rows"] == study["rows"] and saved["critic"].startswith("noisy oracle (reads ground truth")
    assert (tmp_path / "study" / "critic_study.png").stat().st_size > 0
    again = run_study(config, tmp_path / "study", red_pipe)  # finished runs are reused, not recomputed
    assert again["rows"] == study["rows"]


@pytest.mark.parametrize(("args", "message"), [
    (["--accuracies", "0.9"], "--accuracies: List should have at least 2 items"),
    (["--accuracies", "0.5,high"], "--accuracies takes comma-separated numbers"),
    (["--accuracies", "0.5,1.5"], "accuracies must lie in [0, 1]"),
    (["--data", "nope:3"], "unknown data source 'nope:3'"),
    (["--max-rounds", "1"], "--max-rounds: Input should be greater than or equal to 2"),
    (["--max-rounds", "999999"], "--max-rounds: Input should be less than or equal to 20"),  # was: ran for hours
])
def test_study_cli_bad_inputs_are_one_line(args, message, tmp_path, capsys):
    argv = ["critic-study", "--data", "shapes-gen:4", "--model", str(tmp_path / "unused"), "--out",
            str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()
