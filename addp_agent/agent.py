"""Multi-round correctional segmentation.

A :class:`Session` encodes one (image, expression) pair once. Round 1 runs without corrections; a critic looks at
the mask; its correctional prompt D⁻ joins the corrections of the next round, which reuses the cached encodings —
and, with ``resume_step=k``, also the denoising state after step k instead of restarting from noise. The loop
stops on accept, after ``max_rounds``, on convergence (mask IoU with the previous round ≥ 0.98) or when the critic
fails or has nothing a negative prompt could fix; every round is kept. The answer is the round the critic prefers
(:func:`preferred_round`), never one chosen by ground truth.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

import numpy as np
import torch

from addp_agent.critic.base import Critic, CriticError, Critique, CritiqueRequest, PriorRound, ScoredCritique
from addp_agent.engine.decode import DEFAULT_THRESHOLD, MaskDecoding
from addp_agent.engine.guidance import CorrectionMode
from addp_agent.engine.outputs import SegmentationResult, TrajectoryPoint
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.engine.state import DenoiseSettings, DenoiseState, EncodedBatch
from addp_agent.errors import UserError
from addp_agent.images import as_rgb_array, resized
from addp_agent.masks import mask_iou
from addp_agent.text import clean_corrections, clean_text

StopReason = Literal["accepted", "max_rounds", "converged", "critic_failed", "no_correction", "empty_correction",
                     "repeated_correction", "no_critic"]


@dataclass
class LoopConfig:
    """How a session denoises and when the loop stops."""

    max_rounds: int = 3
    num_inference_steps: int | None = None  # None: the model's default
    seed: int | None = 0
    resume_step: int | None = None  # k: later rounds resume from the state after step k (None: restart)
    correction_steps: int | None = None  # steps of restarted rounds after the first (None: the model's default,
    #                                      else round 1's); a session that resumes from step k keeps round 1's steps
    convergence_iou: float = 0.98
    trajectory_every: int = 0  # record x̂₀ masks every k-th step (0: none)
    correction_scale: float | None = None
    correction_mode: CorrectionMode | None = None  # additive | replace | paper (None: the model's)
    critique_last_round: bool = True  # ask the critic about the final round too, to record its verdict
    guidance_scale: float | None = None  # text guidance (None: the model's default)
    image_guidance_scale: float | None = None  # image guidance (None: the model's default)
    decode_size: int | None = None  # decode masks at this size² (None: the input's size), see MaskDecoding
    threshold: float = DEFAULT_THRESHOLD  # RGB distance to pure red below which a pixel is mask

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise UserError(f"max_rounds must be ≥ 1, got {self.max_rounds}")
        if self.resume_step is not None and self.resume_step < 1:
            raise UserError(f"resume_step must be ≥ 1, got {self.resume_step}")
        if self.correction_steps is not None and self.correction_steps < 1:
            raise UserError(f"correction_steps must be ≥ 1, got {self.correction_steps}")
        if self.correction_steps is not None and self.resume_step is not None:
            raise UserError("correction_steps and resume_step exclude each other: a resumed round continues round 1's "
                            "schedule")
        MaskDecoding(self.decode_size, self.threshold)  # a bad size or threshold fails here, as a UserError

    @property
    def decoding(self) -> MaskDecoding:
        """The paint → mask rule of every round."""
        return MaskDecoding(self.decode_size, self.threshold)


@dataclass
class Round:
    """One round of a session: the engine's result, and what the critic said about it."""

    index: int  # 1-based
    result: SegmentationResult
    resumed_from_step: int | None = None
    intermediate_mask: np.ndarray | None = None  # the x̂₀ mask after the step a resumed round starts from
    iou_with_previous: float | None = None
    critique: Critique | None = None
    critic_error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # denoise_s (wall time, or a batch's share), critic_s

    @property
    def mask(self) -> np.ndarray:
        return self.result.mask

    @property
    def confidence(self) -> float:
        return self.result.confidence

    @property
    def found(self) -> bool:
        """Whether the round found a target (its mask is empty when not)."""
        return self.result.found

    @property
    def corrections(self) -> list[str]:
        return self.result.corrections

    @property
    def trajectory(self) -> list[TrajectoryPoint] | None:
        return self.result.trajectory

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.index, "corrections": list(self.corrections), "resumed_from_step": self.resumed_from_step,
            **self.result.mask_json(), "critique": self.critique.model_dump() if self.critique else None,
            "critic_error": self.critic_error,
            "iou_with_previous": None if self.iou_with_previous is None else round(self.iou_with_previous, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }


@dataclass
class SessionResult:
    """All rounds, why the loop stopped, and which round is the answer."""

    expression: str
    rounds: list[Round]
    stop_reason: StopReason
    stop_detail: str
    best_index: int  # 0-based index into ``rounds``

    @property
    def best(self) -> Round:
        return self.rounds[self.best_index]

    def to_json(self) -> dict[str, Any]:
        return {"expression": self.expression, "stop_reason": self.stop_reason, "stop_detail": self.stop_detail,
                "best_round": self.best.index, "rounds": [r.to_json() for r in self.rounds]}


def held_bytes(value: Any, seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays and torch tensors reachable from ``value`` through dataclasses, lists, tuples and
    dicts, each counted once."""
    seen = set() if seen is None else seen
    if value is None or isinstance(value, (str, bytes, int, float, bool)) or id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.element_size() * value.nelement())
    if isinstance(value, dict):
        return sum(held_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(held_bytes(v, seen) for v in value)
    if is_dataclass(value):
        return sum(held_bytes(getattr(value, f.name), seen) for f in fields(value))
    return 0


class Session:
    """Cached encodings (and the state after step k) for one image and expression; rounds accumulate.

    Thread-safe: rounds run one at a time under ``lock``.
    """

    def __init__(self, pipe: ADDPPipeline, image: Any, expression: str, config: LoopConfig | None = None) -> None:
        self.pipe = pipe
        self.config = config or LoopConfig()
        self.image = as_rgb_array(image)
        self.input_size = (int(self.image.shape[0]), int(self.image.shape[1]))  # what callers get masks at
        self.expression = clean_text(expression, "expression")
        self.settings = pipe.resolve_settings(self.config.num_inference_steps, self.config.guidance_scale,
                                              self.config.image_guidance_scale,
                                              correction_scale=self.config.correction_scale,
                                              correction_mode=self.config.correction_mode)
        correction_steps = self.config.correction_steps or pipe.config.default_correction_steps
        self.correction_settings = self.settings if self.resumable or not correction_steps else DenoiseSettings(
            **{**self.settings, "num_inference_steps": correction_steps})  # rounds after the first
        self._encoded: EncodedBatch | None = None  # encoded on first use (a precomputed first round needs none)
        self.rounds: list[Round] = []
        self.state: DenoiseState | None = None
        self._prefix: tuple[np.ndarray, list[TrajectoryPoint]] | None = None
        self.lock = threading.RLock()

    @property
    def decoding(self) -> dict[str, Any]:
        """The pipeline arguments of this session's paint → mask rule."""
        return {"decode_size": self.config.decode_size, "threshold": self.config.threshold}

    @property
    def num_steps(self) -> int:
        return self.settings["num_inference_steps"]

    @property
    def encoded(self) -> EncodedBatch:
        """The cached prompt and image encodings (computed on first use)."""
        with self.lock:
            if self._encoded is None:
                self._encoded = self.pipe.encode(self.expression, self.image)
            return self._encoded

    @property
    def resumable(self) -> bool:
        """Whether later rounds resume from the state after step ``config.resume_step``."""
        k = self.config.resume_step
        return k is not None and k < self.num_steps

    def nbytes(self) -> int:
        """Bytes of the arrays and tensors the session holds: image, encodings, rounds, the state to resume."""
        with self.lock:
            return held_bytes([self.image, self._encoded, self.state, self._prefix, self.rounds])

    # ------------------------------------------------------------------------------------------------ rounds
    def run_round(self, corrections: list[str] | None = None, precomputed: SegmentationResult | None = None) -> Round:
        """Denoise once with ``corrections`` (cleaned: control characters stripped, length capped).

        ``precomputed``: the session's first round computed elsewhere, from this session's image, expression,
        seed, settings and ``corrections`` (a batch of sessions' first rounds, the tool server's batcher).
        """
        with self.lock:
            cleaned = clean_corrections(corrections or [])
            if precomputed is not None:
                self._check_precomputed(precomputed, cleaned)
                return self._add(precomputed, timings={"denoise_s": precomputed.timings.get("total_s", 0.0)})
            start = time.perf_counter()
            every = self.config.trajectory_every
            settings = self.correction_settings if self.rounds else self.settings
            common = {"corrections": cleaned or None, "trajectory_every": every, "output_type": "np",
                      "show_progress": False, **settings, **self.decoding}
            intermediate, prefix_points = None, []
            if self.resumable:
                intermediate, prefix_points = self._ensure_prefix(self.config.resume_step)
                output = self.pipe(state=self.state, **common)
            else:
                output = self.pipe(encoded=self.encoded, generator=seeded_generators(self.config.seed), **common)
            result = output.results(self.config.seed)[0]
            if every:
                result.trajectory = prefix_points + (result.trajectory or [])
            return self._add(result, resumed_from_step=self.config.resume_step if self.resumable else None,
                             intermediate_mask=intermediate, timings={"denoise_s": time.perf_counter() - start})

    def _add(self, result: SegmentationResult, **fields: Any) -> Round:
        previous = self.rounds[-1].mask if self.rounds else None
        round_ = Round(index=len(self.rounds) + 1, result=result,
                       iou_with_previous=None if previous is None else mask_iou(result.mask, previous), **fields)
        self.rounds.append(round_)
        return round_

    def _check_precomputed(self, result: SegmentationResult, corrections: list[str]) -> None:
        if self.rounds or self.resumable:
            raise UserError("only the first round of a session that does not resume from step k can be precomputed")
        expected = (self.expression, corrections, self.config.seed, dict(self.settings),
                    self.config.decoding.output_size(self.image.shape[:2]))
        got = (result.expression, result.corrections, result.seed, dict(result.settings), result.mask.shape)
        if got != expected:
            raise UserError(f"the precomputed round is not this session's: expected (expression, corrections, seed, "
                            f"settings, size) {expected}, got {got}")

    def _ensure_prefix(self, k: int) -> tuple[np.ndarray, list[TrajectoryPoint]]:
        """Denoise the shared first k steps once (no corrections); keep the state and the x̂₀ mask at step k."""
        if self._prefix is None:
            every = self.config.trajectory_every
            record = math.gcd(k, every) if every else k
            output = self.pipe(encoded=self.encoded, generator=seeded_generators(self.config.seed), stop_after_step=k,
                               trajectory_every=record, output_type="latent", show_progress=False, **self.settings,
                               **self.decoding)
            points = output.trajectories[0]
            at_k = next(p for p in points if p.step == k - 1)
            kept = [p for p in points if every and (p.step + 1) % every == 0]
            self.state = output.state
            self._prefix = (at_k.mask, kept)
        return self._prefix

    # -------------------------------------------------------------------------------------------------- loop
    def critique(self, critic: Critic, round_: Round) -> Critique:
        """Ask ``critic`` about ``round_`` (records the critique or raises :class:`CriticError`)."""
        history = [PriorRound(r.index, r.corrections, r.result.area_fraction, r.critique, r.mask)
                   for r in self.rounds if r.index < round_.index]
        request = CritiqueRequest(
            image=resized(self.image, round_.mask.shape), expression=self.expression, mask=round_.mask,
            round=round_.index,
            corrections=list(round_.corrections), history=history, intermediate_mask=round_.intermediate_mask,
            intermediate_step=self.config.resume_step if round_.intermediate_mask is not None else None,
            seed=round_.result.seed, settings=dict(round_.result.settings), confidence=round_.confidence)
        start = time.perf_counter()
        try:
            critique = critic.critique(request)
        finally:
            round_.timings["critic_s"] = time.perf_counter() - start
        round_.critique = critique
        return critique

    def run(self, critic: Critic | None = None, corrections: list[str] | None = None,
            first: SegmentationResult | None = None) -> SessionResult:
        """Rounds until accept, ``max_rounds``, convergence, or a critic failure; returns every round.

        ``first``: round 1 computed elsewhere (see :meth:`run_round`); the loop goes on from it.
        """
        with self.lock:
            corrections = list(corrections or [])
            reason: StopReason = "max_rounds"
            detail = ""
            for number in range(1, self.config.max_rounds + 1):
                round_ = self.run_round(corrections, precomputed=first if number == 1 else None)
                corrections = round_.corrections
                if round_.iou_with_previous is not None and round_.iou_with_previous >= self.config.convergence_iou:
                    reason, detail = "converged", f"mask IoU with the previous round {round_.iou_with_previous:.3f}"
                    break
                if critic is None:
                    reason, detail = "no_critic", "one round without a critic"
                    break
                last = number == self.config.max_rounds
                if last and not self.config.critique_last_round:
                    break
                try:
                    critique = self.critique(critic, round_)
                except CriticError as error:
                    round_.critic_error = str(error)
                    reason, detail = "critic_failed", str(error)
                    break
                if critique.verdict == "accept":
                    reason, detail = "accepted", f"{critic.name} critic accepted round {round_.index}"
                    break
                if last:
                    detail = critique.problem
                    break
                stop = self._next_corrections(critique, corrections)
                if isinstance(stop, tuple):
                    reason, detail = stop
                    break
                corrections = stop
            return SessionResult(expression=self.expression, rounds=list(self.rounds), stop_reason=reason,
                                 stop_detail=detail, best_index=self.best_index())

    @staticmethod
    def _next_corrections(critique: Critique, corrections: list[str]) -> list[str] | tuple[StopReason, str]:
        if critique.correction is None:
            return "no_correction", critique.problem or "the critic asked for a revision but gave no correction"
        try:
            text = clean_corrections([critique.correction])[0]
        except UserError:
            return "empty_correction", f"the critic's correction is empty: {critique.correction!r}"[:300]
        if text.lower() in (c.lower() for c in corrections):
            return "repeated_correction", f"'{text}' is already applied"
        return [*corrections, text]

    def best_index(self) -> int:
        """The round the critic prefers, never one chosen by ground truth: the first round it accepted; else, if
        it scores masks (:class:`ScoredCritique`), the round it scores highest; else the round with the highest
        decoder confidence. Ties go to the earlier round, so an uncorrected round 1 wins over a tie."""
        return preferred_round(self.rounds)


def preferred_round(rounds: list[Round]) -> int:
    """0-based index of the round a session answers with (see :meth:`Session.best_index`)."""
    for k, r in enumerate(rounds):
        if r.critique is not None and r.critique.verdict == "accept":
            return k
    scored = [k for k, r in enumerate(rounds) if isinstance(r.critique, ScoredCritique)]
    if scored:
        return max(scored, key=lambda k: (rounds[k].critique.score, -k))  # type: ignore[union-attr]
    return max(range(len(rounds)), key=lambda k: (rounds[k].confidence, -k))

