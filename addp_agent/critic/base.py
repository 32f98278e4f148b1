"""The critic protocol: what a critic sees (:class:`CritiqueRequest`) and what it says (:class:`Critique`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from addp_agent.masks import overlay

Verdict = Literal["accept", "revise"]


class Critique(BaseModel):
    """A critic's judgement of one mask.

    ``correction`` is the correctional prompt D⁻: a short noun phrase naming what was wrongly segmented or may
    confuse the segmentation. ``None`` when the mask is accepted or when no negative prompt can fix the error
    (e.g. a miss: the mask does not cover enough of the target).
    """

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict = Field(description="'accept' if the mask covers exactly the referred object, else 'revise'")
    problem: str = Field(description="what is wrong with the mask, in one sentence ('' when accepted)")
    correction: str | None = Field(
        description="short noun phrase naming what was wrongly segmented or may confuse the segmentation "
                    "(the negative prompt); null when accepted or when a negative prompt cannot help")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure the critic is, 0 to 1")


class ScoredCritique(Critique):
    """A critique that also scores the mask on the critic's own scale (higher is better, comparable between the
    rounds of one session): the loop's answer, when no round is accepted, is the round the critic scores highest."""

    score: float = Field(description="the critic's own quality score of the mask (not a ground-truth metric)")


class CriticError(RuntimeError):
    """A critic could not produce a critique (timeout, HTTP error, refusal, unparsable answer)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


@dataclass
class PriorRound:
    """What a critic may want to know about an earlier round."""

    round: int
    corrections: list[str]
    area_fraction: float
    critique: Critique | None
    mask: np.ndarray | None = None


@dataclass
class CritiqueRequest:
    """Everything a critic may look at for one round.

    ``mask`` is the round's final mask; ``intermediate_mask`` (optional) is the x̂₀ mask after step
    ``intermediate_step``, the point the next round resumes from. ``seed`` and ``settings`` are what the round was
    denoised with and ``confidence`` its decoder confidence (for critics that consult the model itself).
    """

    image: np.ndarray  # RGB uint8 (H, W, 3)
    expression: str
    mask: np.ndarray  # bool (H, W)
    round: int = 1
    corrections: list[str] = field(default_factory=list)  # already applied in this round
    history: list[PriorRound] = field(default_factory=list)
    intermediate_mask: np.ndarray | None = None
    intermediate_step: int | None = None
    seed: int | None = None
    settings: dict[str, Any] | None = None
    confidence: float | None = None

    def overlay(self) -> np.ndarray:
        """The current mask drawn over the image (red fill, white outline)."""
        return overlay(self.image, self.mask)

    def intermediate_overlay(self) -> np.ndarray | None:
        return None if self.intermediate_mask is None else overlay(self.image, self.intermediate_mask)


@runtime_checkable
class Critic(Protocol):
    """Anything with a ``name`` and a ``critique`` method; raise :class:`CriticError` on failure."""

    name: str

    def critique(self, request: CritiqueRequest) -> Critique: ...
