"""Per-round metrics over records: carry-forward, transitions, subsets, exact shard merging (no model)."""

from __future__ import annotations

from addp_agent.eval.records import RoundRecord, SampleRecord
from addp_agent.eval.summary import EvalSummary


def _record(index: int, counts: list[tuple[int, int]], confusable: bool = False, stop: str = "max_rounds",
            failed_round: int | None = None, best: int = 1, targets: int = 1,
            found: list[bool] | None = None) -> SampleRecord:
    found = found or [True] * len(counts)
    rounds = [RoundRecord(round=k + 1, intersection=i, union=u, iou=1.0 if u == 0 else i / u, found=found[k],
                          confidence=0.5, corrections=[], mask_rle={},
                          critic_error="timeout: x" if failed_round == k + 1 else None)
              for k, (i, u) in enumerate(counts)]
    return SampleRecord(index=index, sample_id=f"s{index}", expression="x", targets=targets, confusable=confusable,
                        stop_reason=stop, best_round=best, rounds=rounds)


RECORDS = [
    _record(0, [(1, 4), (3, 4), (2, 4)], confusable=True, best=2),
    _record(1, [(2, 2)], stop="accepted"),  # stopped after round 1: carried to rounds 2 and 3
    _record(2, [(0, 5), (0, 5)], stop="critic_failed", failed_round=2),
    SampleRecord(index=3, sample_id="s3", expression="x", targets=1,
                 error="unreadable sample: mask (2, 2) and image (3, 3)"),
]
GENERALIZED = [
    _record(0, [(0, 6), (0, 0)], targets=0, found=[True, False], best=2),  # no target: painted 6 px, then nothing
    _record(1, [(3, 4), (3, 4)], targets=1),
    _record(2, [(0, 9)], targets=2, found=[False], stop="accepted"),  # two targets missed (empty mask)
    _record(3, [(4, 8), (6, 8)], targets=2, confusable=True),
]


def test_carry_forward_transitions_and_subsets() -> None:
    metrics = EvalSummary.of(RECORDS, max_rounds=3).to_metrics()
    assert metrics["n"] == 3
    miou = [r["mIoU"] for r in metrics["rounds"]]
    assert miou == [(0.25 + 1.0 + 0.0) / 3, (0.75 + 1.0 + 0.0) / 3, (0.5 + 1.0 + 0.0) / 3]
    assert [r["oIoU"] for r in metrics["rounds"]] == [3 / 11, 5 / 11, 4 / 11]
    assert [r["P@0.5"] for r in metrics["rounds"]] == [1 / 3, 2 / 3, 2 / 3]
    assert [r["P@0.8"] for r in metrics["rounds"]] == [1 / 3, 1 / 3, 1 / 3]
    assert metrics["answer"]["mIoU"] == (0.75 + 1.0 + 0.0) / 3
    assert metrics["transitions"] == [{"from": 1, "to": 2, "improved": 1, "worsened": 0, "unchanged": 2},
                                      {"from": 2, "to": 3, "improved": 0, "worsened": 1, "unchanged": 2}]
    assert metrics["ran_round"] == {"1": 3, "2": 2, "3": 1}
    assert metrics["critic_failures"] == {"total": 1, "by_round": {"1": 0, "2": 1, "3": 0}}
    assert metrics["stop_reasons"] == {"accepted": 1, "critic_failed": 1, "max_rounds": 1}
    assert metrics["skipped"] == {"total": 1, "reasons": {"unreadable sample": 1}}
    confusable = metrics["subsets"]["confusable"]
    assert [r["n"] for r in confusable["rounds"]] == [1, 1, 1]
    assert [r["mIoU"] for r in confusable["rounds"]] == [0.25, 0.75, 0.5]
    assert metrics["subsets"]["not_confusable"]["rounds"][1]["mIoU"] == 0.5


def test_merge_is_exact_in_any_split() -> None:
    whole = EvalSummary.of(RECORDS, 3)
    for cut in range(len(RECORDS) + 1):
        left, right = EvalSummary.of(RECORDS[:cut], 3), EvalSummary.of(RECORDS[cut:], 3)
        merged = EvalSummary.from_state(right.state()).merge(EvalSummary.from_state(left.state()))
        assert merged.state() == whole.state()
        assert merged.to_metrics() == whole.to_metrics()


def test_generalized_metrics_per_round_answer_and_one_target_subset() -> None:
    metrics = EvalSummary.of(GENERALIZED, max_rounds=2).to_metrics()
    first, second = metrics["rounds"]
    # round 1: IoUs 0 (no target, found), 3/4, 0 (missed), 4/8; ΣI = 3 + 4, ΣU = 6 + 4 + 9 + 8
    assert first["gIoU"] == (0 + 0.75 + 0 + 0.5) / 4 and first["cIoU"] == 7 / 27
    assert first["N-acc"] == 0.0 and first["T-acc"] == 2 / 3
    # round 2: the no-target sample is answered "not found" (IoU 1, adds nothing); sample 2 carried forward
    assert second["gIoU"] == (1 + 0.75 + 0 + 0.75) / 4 and second["cIoU"] == 9 / 21
    assert second["N-acc"] == 1.0 and second["T-acc"] == 2 / 3
    assert (second["n_no_target"], second["n_target"]) == (1, 3)
    assert second["mIoU"] == (1 + 0.75 + 0 + 0.75) / 4  # found ⇔ painted: the classic convention agrees here
    assert metrics["answer"]["N-acc"] == 1.0  # the answers: rounds 2, 1, 1, 1
    assert metrics["answer"]["gIoU"] == (1 + 0.75 + 0 + 0.5) / 4
    one = metrics["subsets"]["one_target"]
    assert [r["n"] for r in one["rounds"]] == [1, 1] and one["rounds"][0]["mIoU"] == 0.75
    assert one["rounds"][0]["N-acc"] is None and one["rounds"][0]["T-acc"] == 1.0
    whole = EvalSummary.of(GENERALIZED, 2)
    for cut in range(len(GENERALIZED) + 1):
        merged = EvalSummary.from_state(EvalSummary.of(GENERALIZED[cut:], 2).state()).merge(
            EvalSummary.of(GENERALIZED[:cut], 2))
        assert merged.state() == whole.state() and merged.to_metrics() == whole.to_metrics()
