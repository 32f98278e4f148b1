"""Metrics per round over sample records, as integer state that merges exactly across shards.

Round r covers every evaluated sample: a sample whose loop stopped before round r (accepted, converged, critic
failure, no correction) carries its last mask forward. ``answer`` scores the round the loop picked (the accepted
one, else the one the critic scores highest, else the most confident: never ground truth); ``answer_vs_round1``
counts samples whose answer's IoU is more than 0.1 below (``worse``) or above (``better``) their round 1.
Transitions compare each sample's IoU between consecutive rounds exactly (``I₁·U₀`` vs ``I₀·U₁``). Every round and
answer has the classic metrics (mIoU, oIoU, P@X: ``metrics.RISMetrics``) and the generalized ones (gIoU, cIoU, N-acc,
T-acc: ``generalized_metrics``). The same metrics are kept for the confusable and non-confusable subsets and for the
samples with exactly one target (``one_target``).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any

from addp_agent.eval.records import SampleRecord
from addp_agent.generalized_metrics import GeneralizedMetrics
from addp_agent.metrics import RISMetrics

SUBSETS = ("all", "confusable", "not_confusable", "one_target")
CHANGE_BY = Fraction(1, 10)  # a sample's answer is worse (better) than its round 1 when its IoU drops (rises) more


def _iou(intersection: int, union: int) -> Fraction:
    return Fraction(1) if union == 0 else Fraction(intersection, union)


def round_counts(record: SampleRecord, max_rounds: int) -> list[tuple[int, int, bool]]:
    """``(I, U, found)`` for rounds 1..max_rounds, the last round carried forward."""
    counts = [(r.intersection, r.union, r.found) for r in record.rounds[:max_rounds]]
    return counts + [counts[-1]] * (max_rounds - len(counts))


def subsets_of(record: SampleRecord) -> tuple[str, ...]:
    """The subsets a record counts in."""
    return ("all", "confusable" if record.confusable else "not_confusable",
            *(("one_target",) if record.targets == 1 else ()))


class EvalSummary:
    """Counts over a set of records; ``merge`` sums two disjoint sets exactly."""

    def __init__(self, max_rounds: int) -> None:
        self.max_rounds = max_rounds
        self.rounds = {s: [RISMetrics() for _ in range(max_rounds)] for s in SUBSETS}
        self.answer = {s: RISMetrics() for s in SUBSETS}
        self.generalized = {s: [GeneralizedMetrics() for _ in range(max_rounds)] for s in SUBSETS}
        self.answer_generalized = {s: GeneralizedMetrics() for s in SUBSETS}
        self.transitions = [Counter() for _ in range(max_rounds - 1)]  # improved / worsened / unchanged
        self.ran = [0] * max_rounds  # samples that actually ran round r
        self.critic_failures = [0] * max_rounds
        self.stop_reasons: Counter = Counter()
        self.skipped: Counter = Counter()  # reason -> samples not evaluated
        self.changed = {s: Counter() for s in SUBSETS}  # "worse" / "better": answer vs round 1 by > CHANGE_BY
        self.unet = Counter()  # "calls", "rows", "pass_rows": UNet cost of the evaluated samples (eval/cost.py)
        self.domain: Counter = Counter()  # in_domain / out_of_domain / unchecked (the model's domain check)

    def add(self, record: SampleRecord) -> None:
        """Account for one sample."""
        if record.error is not None or not record.rounds:
            self.skipped[(record.error or "no rounds").split(":")[0]] += 1
            return
        counts = round_counts(record, self.max_rounds)
        best = record.rounds[max(0, min(record.best_round, len(record.rounds)) - 1)]
        first, answer = _iou(*counts[0][:2]), _iou(best.intersection, best.union)
        for subset in subsets_of(record):
            for metrics, generalized, (i, u, found) in zip(self.rounds[subset], self.generalized[subset], counts,
                                                            strict=True):
                metrics.add(i, u)
                generalized.add(i, u, record.targets, found)
            self.answer[subset].add(best.intersection, best.union)
            self.answer_generalized[subset].add(best.intersection, best.union, record.targets, best.found)
            self.changed[subset]["worse"] += answer < first - CHANGE_BY
            self.changed[subset]["better"] += answer > first + CHANGE_BY
        self.unet.update({"calls": record.unet_calls, "rows": record.unet_rows, "pass_rows": record.unet_pass_rows})
        for k in range(1, self.max_rounds):
            before, after = _iou(*counts[k - 1][:2]), _iou(*counts[k][:2])
            self.transitions[k - 1]["improved" if after > before else "worsened" if after < before
                                    else "unchanged"] += 1
        for r in record.rounds[: self.max_rounds]:
            self.ran[r.round - 1] += 1
            self.critic_failures[r.round - 1] += r.critic_error is not None
        self.stop_reasons[record.stop_reason] += 1
        self.domain[{True: "in_domain", False: "out_of_domain", None: "unchecked"}[record.in_domain]] += 1

    def merge(self, other: EvalSummary) -> EvalSummary:
        """Add another shard's counts (in place); returns self."""
        if other.max_rounds != self.max_rounds:
            raise ValueError(f"cannot merge summaries of {self.max_rounds} and {other.max_rounds} rounds")
        for s in SUBSETS:
            for mine, theirs in zip(self.rounds[s], other.rounds[s], strict=True):
                mine.merge(theirs)
            for gmine, gtheirs in zip(self.generalized[s], other.generalized[s], strict=True):
                gmine.merge(gtheirs)
            self.answer[s].merge(other.answer[s])
            self.answer_generalized[s].merge(other.answer_generalized[s])
        for mine, theirs in zip(self.transitions, other.transitions, strict=True):
            mine.update(theirs)
        self.ran = [a + b for a, b in zip(self.ran, other.ran, strict=True)]
        self.critic_failures = [a + b for a, b in zip(self.critic_failures, other.critic_failures, strict=True)]
        self.stop_reasons.update(other.stop_reasons)
        self.skipped.update(other.skipped)
        for s in SUBSETS:
            self.changed[s].update(other.changed[s])
        self.unet.update(other.unet)
        self.domain.update(other.domain)
        return self

    def state(self) -> dict[str, Any]:
        """JSON state (integers only)."""
        return {"max_rounds": self.max_rounds,
                "rounds": {s: [m.state() for m in self.rounds[s]] for s in SUBSETS},
                "answer": {s: self.answer[s].state() for s in SUBSETS},
                "generalized": {s: [m.state() for m in self.generalized[s]] for s in SUBSETS},
                "answer_generalized": {s: self.answer_generalized[s].state() for s in SUBSETS},
                "transitions": [dict(t) for t in self.transitions], "ran": self.ran,
                "critic_failures": self.critic_failures, "stop_reasons": dict(self.stop_reasons),
                "skipped": dict(self.skipped), "changed": {s: dict(self.changed[s]) for s in SUBSETS},
                "unet": dict(self.unet), "domain": dict(self.domain)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EvalSummary:
        summary = cls(int(state["max_rounds"]))
        summary.rounds = {s: [RISMetrics.from_state(m) for m in state["rounds"][s]] for s in SUBSETS}
        summary.answer = {s: RISMetrics.from_state(state["answer"][s]) for s in SUBSETS}
        summary.generalized = {s: [GeneralizedMetrics.from_state(m) for m in state["generalized"][s]]
                               for s in SUBSETS}
        summary.answer_generalized = {s: GeneralizedMetrics.from_state(state["answer_generalized"][s])
                                      for s in SUBSETS}
        summary.transitions = [Counter(t) for t in state["transitions"]]
        summary.ran, summary.critic_failures = list(state["ran"]), list(state["critic_failures"])
        summary.stop_reasons, summary.skipped = Counter(state["stop_reasons"]), Counter(state["skipped"])
        summary.changed = {s: Counter(state.get("changed", {}).get(s, {})) for s in SUBSETS}
        summary.unet = Counter(state.get("unet", {}))
        summary.domain = Counter(state.get("domain", {}))
        return summary

    @classmethod
    def of(cls, records: list[SampleRecord], max_rounds: int) -> EvalSummary:
        summary = cls(max_rounds)
        for record in records:
            summary.add(record)
        return summary

    def to_metrics(self) -> dict[str, Any]:
        """The ``metrics.json`` body (fractions in [0, 1])."""
        def block(subset: str) -> dict[str, Any]:
            n = self.rounds[subset][0].n
            changed = {key: {"count": self.changed[subset][key], "share": self.changed[subset][key] / n if n else None}
                       for key in ("worse", "better")}
            rounds = zip(self.rounds[subset], self.generalized[subset], strict=True)
            return {"rounds": [{"round": k + 1, **m.to_dict(), **g.to_dict()} for k, (m, g) in enumerate(rounds)],
                    "answer": {**self.answer[subset].to_dict(), **self.answer_generalized[subset].to_dict()},
                    "answer_vs_round1": {"by": float(CHANGE_BY), **changed}}

        out: dict[str, Any] = {"n": self.rounds["all"][0].n, **block("all")}
        out["transitions"] = [{"from": k + 1, "to": k + 2, **{key: t.get(key, 0) for key in
                               ("improved", "worsened", "unchanged")}} for k, t in enumerate(self.transitions)]
        out["ran_round"] = {str(k + 1): n for k, n in enumerate(self.ran)}
        out["critic_failures"] = {"total": sum(self.critic_failures),
                                  "by_round": {str(k + 1): n for k, n in enumerate(self.critic_failures)}}
        out["stop_reasons"] = dict(sorted(self.stop_reasons.items()))
        out["domain"] = {key: self.domain.get(key, 0) for key in ("in_domain", "out_of_domain", "unchecked")}
        out["skipped"] = {"total": sum(self.skipped.values()), "reasons": dict(sorted(self.skipped.items()))}
        n = out["n"]
        pass_rows = self.unet["pass_rows"]
        out["unet"] = {"calls": self.unet["calls"], "rows": self.unet["rows"],
                       "calls_per_sample": self.unet["calls"] / n if n else None,
                       "rows_per_sample": self.unet["rows"] / n if n else None,
                       "passes_per_sample": self.unet["rows"] / pass_rows if pass_rows else None}
        out["subsets"] = {s: block(s) for s in SUBSETS[1:] if self.rounds[s][0].n}
        out["carry_forward"] = "samples that stopped early carry their last mask to later rounds"
        return out
