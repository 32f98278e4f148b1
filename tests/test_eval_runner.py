"""`addp eval` on a tiny model: shards merge exactly, records reproduce the metrics, resume, skips, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from addp_agent.cli import main
from addp_agent.data.sources import load_source
from addp_agent.errors import UserError
from addp_agent.eval.finish import finalize
from addp_agent.eval.records import EvalConfig, read_records
from addp_agent.eval.runner import critic_factory, evaluate
from addp_agent.eval.shard import part_files, run_shard
from addp_agent.generalized_metrics import GeneralizedMetrics
from addp_agent.masks import decode_rle
from addp_agent.metrics import RISMetrics, iou_counts

DATA = "shapes-gen:8:4:32"  # a stream where the random model's corrected rounds change some masks (gallery)


def _untimed(path: Path) -> list[dict]:
    """Records without their wall-clock timings."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        for r in record["rounds"]:
            del r["denoise_s"], r["critic_s"]
    return records


def _config(red_dir: Path, **overrides) -> EvalConfig:
    return EvalConfig(**({"data": DATA, "split": "val", "model": str(red_dir), "max_rounds": 3, "steps": 1,
                          "batch_size": 2} | overrides))


@pytest.fixture(scope="module")
def single(red_pipe, red_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    config = _config(red_dir)
    evaluate(config, out, red_pipe, critic_factory(config))
    return out


def test_two_simulated_shards_equal_one_process(single, red_pipe, red_dir, tmp_path) -> None:
    config = _config(red_dir)
    for rank in (1, 0):
        run_shard(red_pipe, config, tmp_path, critic_factory(config), rank=rank, world=2)
    document = finalize(config, tmp_path, world=2)
    assert sorted(p.name for p in part_files(tmp_path)) == ["part-2-0.jsonl", "part-2-1.jsonl"]
    assert document == json.loads((single / "metrics.json").read_text())
    assert _untimed(tmp_path / "samples.jsonl") == _untimed(single / "samples.jsonl")
    assert document["n"] == 8 and document["ran_round"]["1"] == 8
    assert document["ran_round"]["2"] >= 1  # the critic asked for corrections
    assert sum(document["transitions"][0][k] for k in ("improved", "worsened", "unchanged")) == 8


def test_samples_jsonl_reproduces_metrics(single) -> None:
    document = json.loads((single / "metrics.json").read_text())
    records = [json.loads(line) for line in (single / "samples.jsonl").read_text().splitlines()]
    samples = list(load_source(DATA, "val"))
    assert [r["sample_id"] for r in records] == [s.sample_id for s in samples]
    assert_records_reproduce_metrics(records, samples, document, 3)
    assert 0.0 < document["rounds"][0]["mIoU"] < 1.0
    for name in ("report.md", "metrics_per_round.png", "gallery.png"):
        assert (single / name).stat().st_size > 0
    assert "| 1 | 8 |" in (single / "report.md").read_text()


def assert_records_reproduce_metrics(records: list[dict], samples: list, document: dict, max_rounds: int) -> None:
    """Every round's stored counts, found flag and IoU match its mask; the metrics follow from the records."""
    per_round = [(RISMetrics(), GeneralizedMetrics()) for _ in range(max_rounds)]
    confusable = [(RISMetrics(), GeneralizedMetrics()) for _ in range(max_rounds)]
    for record, sample in zip(records, samples, strict=True):
        rounds = record["rounds"]
        assert record["targets"] == sample.n_targets
        for r in rounds:  # the stored counts are those of the stored mask against the ground truth
            mask = decode_rle(r["mask_rle"])
            assert iou_counts(mask, sample.mask) == (r["intersection"], r["union"])
            assert r["found"] == bool(mask.any())  # not found: an empty mask
            assert r["iou"] == (1.0 if not mask.any() and not sample.mask.any() else r["intersection"] / r["union"])
        for k in range(max_rounds):
            last = rounds[min(k, len(rounds) - 1)]
            for blocks in ([per_round] + ([confusable] if record["confusable"] else [])):
                blocks[k][0].add(last["intersection"], last["union"])
                blocks[k][1].add(last["intersection"], last["union"], record["targets"], last["found"])
    assert [{"round": k + 1, **m.to_dict(), **g.to_dict()} for k, (m, g) in enumerate(per_round)] == \
        document["rounds"]
    if any(r["confusable"] for r in records):
        assert [{"round": k + 1, **m.to_dict(), **g.to_dict()} for k, (m, g) in enumerate(confusable)] == \
            document["subsets"]["confusable"]["rounds"]


GENERALIZED = "scenes-gen:8:1:64:default:generalized:empty_rate=0.4:multi_rate=0.3"


def test_generalized_run_shards_merge_and_records_reproduce_gres_metrics(red_dir, tmp_path) -> None:
    """A calibrated model on generalized data: some rounds answer "not found"; 1 or 2 processes agree exactly."""
    import shutil

    from addp_agent.eval.calibrate import fit_found_section, run_rounds, write_sections
    from addp_agent.models.registry import load_pipeline

    model = tmp_path / "calibrated"
    shutil.copytree(red_dir, model)
    rounds = run_rounds(load_pipeline(str(model), device="cpu", progress=False), GENERALIZED, steps=1)
    write_sections(model, found=fit_found_section(rounds))
    pipe = load_pipeline(str(model), device="cpu", progress=False)
    config = _config(model, data=GENERALIZED, max_rounds=2, correction_mode="paper")
    one = evaluate(config, tmp_path / "one", pipe, critic_factory(config))
    for rank in (1, 0):
        run_shard(pipe, config, tmp_path / "two", critic_factory(config), rank=rank, world=2)
    assert finalize(config, tmp_path / "two", world=2, plots=False) == one
    assert _untimed(tmp_path / "two" / "samples.jsonl") == _untimed(tmp_path / "one" / "samples.jsonl")
    records = [json.loads(line) for line in (tmp_path / "one" / "samples.jsonl").read_text().splitlines()]
    assert_records_reproduce_metrics(records, list(load_source(GENERALIZED, "val")), one, 2)
    assert sorted({r["targets"] for r in records}) == [0, 1, 2, 3]
    assert {r["rounds"][0]["found"] for r in records} == {True, False}
    first, no_target = one["rounds"][0], sum(r["targets"] == 0 for r in records)
    assert first["n_no_target"] == no_target >= 1 and first["N-acc"] is not None and first["T-acc"] is not None
    assert one["subsets"]["one_target"]["rounds"][0]["n"] == sum(r["targets"] == 1 for r in records)
    report = (tmp_path / "one" / "report.md").read_text()
    assert f"{no_target} without a target" in report and "| gIoU | cIoU | N-acc | T-acc |" in report
    assert "## One target subset" in report


def test_resume_skips_finished_batches(single, red_pipe, red_dir, tmp_path, monkeypatch) -> None:
    config = _config(red_dir)
    evaluate(_config(red_dir, limit=4), tmp_path, red_pipe, critic_factory(config))
    part = tmp_path / "parts" / "part-1-0.jsonl"
    part.write_text(part.read_text() + '{"index": 7, "sample_id": "tor')  # an interrupted write
    calls = []
    original = type(red_pipe).__call__
    monkeypatch.setattr(type(red_pipe), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    document = evaluate(config, tmp_path, red_pipe, critic_factory(config))
    assert document == json.loads((single / "metrics.json").read_text())
    done = read_records([part])
    assert sorted(done) == list(range(8))
    new_calls = len(calls)
    assert new_calls >= 2  # two new round-1 batch calls (indices 4-7), plus later rounds
    evaluate(config, tmp_path, red_pipe, critic_factory(config))
    assert len(calls) == new_calls  # nothing left to compute
    with pytest.raises(UserError, match="other settings .*max_rounds"):
        evaluate(_config(red_dir, max_rounds=2), tmp_path, red_pipe, critic_factory(config))


def test_unreadable_samples_skipped_or_strict(red_pipe, red_dir, tmp_path) -> None:
    from addp_agent.data.export import export_refer
    from addp_agent.data.shapes import ShapesRef, ShapesRefConfig

    export = tmp_path / "shapes"
    assert export_refer(ShapesRef("val", 4, 0, ShapesRefConfig(size=32)), export, "val") == 4
    images = sorted((export / "images").rglob("*.png"))
    images[1].unlink()
    config = _config(red_dir, data=f"shapes:{export}", max_rounds=1)
    document = evaluate(config, tmp_path / "run", red_pipe, critic_factory(config))
    assert document["n"] == 3
    assert document["skipped"] == {"total": 1, "reasons": {"missing image": 1}}
    with pytest.raises(UserError, match="cannot read image"):
        strict = _config(red_dir, data=f"shapes:{export}", max_rounds=1, strict=True)
        evaluate(strict, tmp_path / "strict", red_pipe, critic_factory(strict))


def test_cli_writes_outputs(red_dir, tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", "shapes-gen:4:1:32", "--model", str(red_dir), "--critic", "none", "--max-rounds",
              "2", "--steps", "1", "--batch-size", "4", "--out", str(out), "--quiet"])
    assert exit_info.value.code == 0
    document = json.loads((out / "metrics.json").read_text())
    assert document["n"] == 4 and document["stop_reasons"] == {"no_critic": 4}
    first, second = document["rounds"]
    assert second == first | {"round": 2}  # no critic: round 2 carries round 1
    assert document["transitions"][0]["unchanged"] == 4
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "samples.jsonl", "report.md", "metrics_per_round.png"}


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "nope:1"], "unknown data source 'nope:1'"),
    (["--data", "shapes:/no/such/dir"], "/no/such/dir: no exported Shapes-Ref found"),
    (["--data", "shapes-gen:4", "--limit", "0"], "--limit must be ≥ 1, got 0"),
    (["--data", "shapes-gen:4", "--critic", "orakel"], "unknown critic 'orakel'; use one of oracle, noisy, self, vlm"),
    (["--data", "shapes-gen:4", "--critic", "noisy"], "the noisy critic needs --critic-accuracy"),
    (["--data", "shapes-gen:4", "--critic", "noisy", "--critic-accuracy", "1.5"],
     "--critic-accuracy: Input should be less than or equal to 1"),
    (["--data", "shapes-gen:4", "--critic", "paper"], "--critic paper needs image captions, and shapes-gen:4 has none"),
    (["--data", "shapes-gen:4:0:64:busy"], "expected shapes-gen:<n>[:<seed>[:<size>[:<preset>]]] with a preset"),
    (["--data", "shapes-gen:4", "--critic", "self", "--self-seeds", "1"],
     "--self-seeds: Input should be greater than or equal to 2"),
    (["--data", "shapes-gen:4", "--max-rounds", "0"], "--max-rounds: Input should be greater than or equal to 1"),
    (["--data", "shapes-gen:4", "--max-rounds", "999999"], "--max-rounds: Input should be less than or equal to 20"),
    (["--data", "shapes-gen:4", "--steps", "4", "--resume-step", "1", "--correction-steps", "2"],
     "correction_steps and resume_step exclude each other"),
    (["--data", "shapes-gen:4", "--correction-mode", "sideways"],
     "--correction-mode: Input should be 'additive', 'replace' or 'paper'"),
])
def test_bad_inputs_give_one_line(args, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *args, "--model", str(tmp_path / "unused"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


class _Broken:
    name = "broken"

    def critique(self, request):
        raise UserError("mask (1, 1) and ground truth (32, 32) differ in size")


def test_failing_sample_is_counted_or_strict(red_pipe, red_dir, tmp_path) -> None:
    def critic_for(sample):
        return _Broken() if sample.sample_id.endswith("01") else None

    config = _config(red_dir, limit=4, max_rounds=2)
    document = evaluate(config, tmp_path / "run", red_pipe, critic_for)
    assert document["n"] == 3 and document["skipped"] == {"total": 1, "reasons": {"failed sample": 1}}
    lines = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert json.loads(lines[1])["error"].startswith("failed sample: mask (1, 1)")
    with pytest.raises(UserError, match="sample shapes-val-000001: mask"):
        evaluate(_config(red_dir, limit=4, max_rounds=2, strict=True), tmp_path / "strict", red_pipe, critic_for)


def test_simulated_is_read_as_the_oracle_and_reports_say_it_reads_ground_truth(single, red_dir) -> None:
    config = _config(red_dir, critic="simulated")
    assert config.critic == "oracle" and config.identity() == _config(red_dir).identity()  # old runs resume
    document = json.loads((single / "metrics.json").read_text())
    assert document["critic"] == "oracle (reads ground truth)"
    assert "critic **oracle (reads ground truth)**" in (single / "report.md").read_text()


def test_metrics_count_answers_worse_than_round_1_and_unet_cost(single) -> None:
    document = json.loads((single / "metrics.json").read_text())
    records = [json.loads(line) for line in (single / "samples.jsonl").read_text().splitlines()]
    answers = [(r["rounds"][0]["iou"], r["rounds"][r["best_round"] - 1]["iou"]) for r in records]
    versus = document["answer_vs_round1"]
    assert versus["worse"]["count"] == sum(a < f - 0.1 for f, a in answers)
    assert versus["better"]["count"] == sum(a > f + 0.1 for f, a in answers)
    assert versus["worse"]["share"] == versus["worse"]["count"] / 8
    unet = document["unet"]  # the tiny model runs 3 branches (text, image-only, unconditional) per step
    assert unet["rows"] == sum(r["unet_rows"] for r in records) and all(r["unet_pass_rows"] == 3 for r in records)
    corrected = [len(x["corrections"]) for r in records for x in r["rounds"][1:]]  # a branch more per correction
    assert corrected and unet["rows"] == 8 * 3 + sum(3 + k for k in corrected)
    assert unet["passes_per_sample"] == unet["rows"] / (8 * 3)
    assert "samples (" in (single / "report.md").read_text() and "UNet passes per sample" in \
        (single / "report.md").read_text()


def test_worse_than_round_1_is_exact_and_merges(red_dir) -> None:
    from addp_agent.eval.records import RoundRecord, SampleRecord
    from addp_agent.eval.summary import EvalSummary

    def record(index, first, answer, best):
        rounds = [RoundRecord(round=k + 1, intersection=i, union=10, iou=i / 10, found=True, confidence=0.5,
                              corrections=[], mask_rle={}) for k, i in enumerate((first, answer))]
        return SampleRecord(index=index, sample_id=str(index), expression="x", targets=1, rounds=rounds,
                            best_round=best, unet_rows=5, unet_calls=2, unet_pass_rows=2)

    # IoU 0.9 → 0.8 is exactly 0.1 lower: not worse; 0.9 → 0.7 is; a loop answering with round 1 is never worse
    shard = EvalSummary.of([record(0, 9, 8, 2), record(1, 9, 7, 2)], 2)
    other = EvalSummary.of([record(2, 9, 0, 1), record(3, 2, 9, 2)], 2)
    metrics = EvalSummary.from_state(shard.state()).merge(other).to_metrics()
    assert metrics["answer_vs_round1"] == {"by": 0.1, "worse": {"count": 1, "share": 0.25},
                                           "better": {"count": 1, "share": 0.25}}
    assert metrics["unet"] == {"calls": 8, "rows": 20, "calls_per_sample": 2.0, "rows_per_sample": 5.0,
                               "passes_per_sample": 2.5}


def test_self_critic_evaluation_reads_the_model_not_the_ground_truth(red_pipe, red_dir, tmp_path) -> None:
    config = _config(red_dir, critic="self", limit=4, max_rounds=2)
    with pytest.raises(UserError, match="self critic reads the model"):
        critic_factory(config)
    document = evaluate(config, tmp_path, red_pipe, critic_factory(config, pipe=red_pipe))
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert document["critic"].startswith("self-consistency (reads no ground truth")
    assert all(r["rounds"][0]["critique"]["score"] is not None for r in records)
    assert all(r["unet_rows"] > 3 for r in records)  # round 1 plus the critic's other seeds


def test_paper_critic_reads_each_samples_caption_and_refuses_a_sample_without_one(tmp_path, monkeypatch) -> None:
    from addp_agent.data.sample import RISSample

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("ADDP_CRITIC_MODEL", "llm")
    factory = critic_factory(EvalConfig(data="scenes-gen:1", critic="paper"))
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)
    captioned = RISSample("s1", image, "the cube", mask, caption="three objects on a grey floor")
    assert factory(captioned).caption == "three objects on a grey floor"
    with pytest.raises(UserError, match="sample s2 has no caption, and the paper critic needs one"):
        factory(RISSample("s2", image, "the cube", mask))


def test_resumed_rounds_share_round_1_and_pay_only_the_steps_after_k(red_pipe, red_dir, tmp_path) -> None:
    restart = evaluate(_config(red_dir, steps=2), tmp_path / "restart", red_pipe, critic_factory(_config(red_dir)))
    config = _config(red_dir, steps=2, resume_step=1)
    resumed = evaluate(config, tmp_path / "resume", red_pipe, critic_factory(config))
    assert resumed["rounds"][0] == restart["rounds"][0]  # prefix to k, then the rest: round 1 is the same
    records = [json.loads(line) for line in (tmp_path / "resume" / "samples.jsonl").read_text().splitlines()]
    corrected = [len(x["corrections"]) for r in records for x in r["rounds"][1:]]
    assert corrected  # 3 rows a step (text, image-only, unconditional) plus one per correction
    assert resumed["unet"]["rows"] == 8 * 3 * 2 + sum(3 + k for k in corrected)  # corrected rounds: 1 step, not 2
    assert restart["unet"]["rows"] > resumed["unet"]["rows"]


def test_corrected_rounds_pay_their_own_steps(red_pipe, red_dir, tmp_path) -> None:
    config = _config(red_dir, steps=1, correction_steps=2)
    document = evaluate(config, tmp_path, red_pipe, critic_factory(config))
    records = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    corrected = [len(x["corrections"]) for r in records for x in r["rounds"][1:]]
    assert corrected and document["unet"]["rows"] == 8 * 3 + sum(2 * (3 + k) for k in corrected)


@pytest.mark.parametrize(("args", "message"), [
    (["--steps", "2", "--resume-step", "2"], "resume_step must be below steps (2), got 2"),
    (["--resume-step", "40"], "--resume-step must be below the steps (20, the model's default; give --steps), got 40"),
])
def test_resume_step_outside_the_steps_is_refused_before_any_output(args, message, red_dir, tmp_path,
                                                                      capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--data", DATA, "--model", str(red_dir), *args, "--out", str(tmp_path / "o"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_a_rule_across_fields_reads_as_its_own_message(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "--data", DATA, "--critic", "noisy", "--model", str(tmp_path / "m"),
              "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert err.startswith("error: the noisy critic needs --critic-accuracy") and "Value error" not in err
