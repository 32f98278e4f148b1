"""The oracle degraded by explicit, seeded error rates: how good must a critic be before correction pays?"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.critic.base import Critique, CritiqueRequest
from addp_agent.critic.oracle import OracleCritic
from addp_agent.data.sample import RISSample

ERROR_MARK = "noisy error"  # how a deliberate error's ``problem`` starts (so records show every error made)


class ErrorRates(BaseModel):
    """How often the noisy critic errs, each independently per critique."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    false_accept: float = Field(0.0, ge=0.0, le=1.0, description="P(accept | the oracle asks for a revision)")
    false_reject: float = Field(0.0, ge=0.0, le=1.0, description="P(revise, naming a random other object | the "
                                                                  "oracle accepts)")
    wrong_name: float = Field(0.0, ge=0.0, le=1.0, description="P(another object is named | the oracle names one)")

    @classmethod
    def from_accuracy(cls, accuracy: float) -> ErrorRates:
        """Every rate 1 − ``accuracy``: a critic right ``accuracy`` of the time in each decision."""
        error = round(1.0 - float(accuracy), 12)
        return cls(false_accept=error, false_reject=error, wrong_name=error)

    @property
    def label(self) -> str:
        return f"false accept {self.false_accept:g}, false reject {self.false_reject:g}, wrong name {self.wrong_name:g}"


class NoisyOracleCritic:
    """Asks an :class:`OracleCritic`, then errs at ``rates``, drawing from a generator seeded by (``seed``, the
    sample's key, the round), so a run is reproducible whatever the batch, shard or order.

    A false reject names a random other object (as an over-eager critic would); a wrong name replaces the oracle's
    object by another random one. Every error's ``problem`` starts with :data:`ERROR_MARK`; ``tally`` counts the
    critiques given and the errors made.
    """

    name = "noisy"

    def __init__(self, oracle: OracleCritic, rates: ErrorRates, seed: int = 0, key: str = "") -> None:
        self.oracle, self.rates, self.seed = oracle, rates, int(seed)
        self.key = zlib.crc32(key.encode("utf-8"))
        self.tally: Counter = Counter()

    @classmethod
    def from_sample(cls, sample: RISSample, rates: ErrorRates, seed: int = 0,
                    accept_iou: float = 0.9) -> NoisyOracleCritic:
        return cls(OracleCritic.from_sample(sample, accept_iou), rates, seed, key=sample.sample_id)

    def critique(self, request: CritiqueRequest) -> Critique:
        truth = self.oracle.critique(request)
        rng = np.random.default_rng([self.seed, self.key, request.round])
        draw = rng.random()
        tried = {c.lower() for c in request.corrections}
        names = [i.name for i in self.oracle.instances if i.name.lower() not in tried]
        self.tally["critiques"] += 1
        if truth.verdict == "accept":
            if draw >= self.rates.false_reject:
                return truth
            self.tally["false_reject"] += 1
            name = str(rng.choice(names)) if names else None
            return Critique(verdict="revise", confidence=truth.confidence, correction=name,
                            problem=f"{ERROR_MARK} (false reject): the mask is right, yet the critic names {name}")
        if draw < self.rates.false_accept:
            self.tally["false_accept"] += 1
            return Critique(verdict="accept", correction=None, confidence=truth.confidence,
                            problem=f"{ERROR_MARK} (false accept): the oracle said: {truth.problem}")
        others = [n for n in names if truth.correction is None or n.lower() != truth.correction.lower()]
        if truth.correction is not None and others and rng.random() < self.rates.wrong_name:
            self.tally["wrong_name"] += 1
            name = str(rng.choice(others))
            return Critique(verdict="revise", confidence=truth.confidence, correction=name,
                            problem=f"{ERROR_MARK} (wrong name): {name} named instead of {truth.correction}")
        return truth

    @property
    def errors(self) -> int:
        return sum(v for k, v in self.tally.items() if k != "critiques")
