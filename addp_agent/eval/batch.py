"""One batch of samples through the multi-round loop: round 1 in one pipeline call, later rounds per session."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from addp_agent.agent import LoopConfig, Round, Session
from addp_agent.critic.base import Critic
from addp_agent.data.sample import RISSample
from addp_agent.engine.state import EncodedBatch
from addp_agent.errors import UserError
from addp_agent.eval.records import EvalConfig, RoundRecord, SampleRecord
from addp_agent.masks import encode_rle
from addp_agent.metrics import iou_counts

CriticFactory = Callable[[RISSample], Critic | None]


class BatchedSession(Session):
    """A :class:`Session` whose uncorrected first round was computed in a batch (``first``)."""

    first: Round | None = None

    def run_round(self, corrections: list[str] | None = None) -> Round:
        if not self.rounds and self.first is not None and not corrections:
            self.rounds.append(self.first)
            return self.first
        return super().run_round(corrections)


def initial_noise(pipe: Any, n: int, seed: int) -> torch.Tensor:
    """Each sample's starting noise, the same a one-sample session with ``seed`` draws (batch-independent)."""
    side = pipe.resolution // pipe.vae_scale_factor
    shape = (1, pipe.num_channels_out, side, side)
    noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=pipe.unet.dtype)
             for _ in range(n)]
    return torch.cat(noise).to(pipe.device)


def _stack(encodings: list[EncodedBatch]) -> EncodedBatch:
    return EncodedBatch(prompts=[p for e in encodings for p in e.prompts],
                        images=[i for e in encodings for i in e.images],
                        image_latents=torch.cat([e.image_latents for e in encodings]),
                        prompt_embeds=torch.cat([e.prompt_embeds for e in encodings]),
                        null_embeds=encodings[0].null_embeds)


def _first_rounds(pipe: Any, sessions: list[BatchedSession], config: LoopConfig) -> None:
    start = time.perf_counter()
    seed = config.seed if config.seed is not None else 0
    output = pipe(encoded=_stack([s.encoded for s in sessions]), num_inference_steps=sessions[0].num_steps,
                  generator=torch.Generator("cpu").manual_seed(seed), latents=initial_noise(pipe, len(sessions), seed),
                  output_type="np", show_progress=False, correction_scale=config.correction_scale,
                  correction_mode=config.correction_mode)
    share = (time.perf_counter() - start) / len(sessions)
    for session, mask, confidence in zip(sessions, output.masks, output.confidences, strict=True):
        session.first = Round(index=1, mask=mask, confidence=float(confidence), corrections=[],
                              timings={"denoise_s": share})


def _record(index: int, sample: RISSample, **fields: Any) -> SampleRecord:
    return SampleRecord(index=index, sample_id=sample.sample_id, image_id=sample.image_id, ref_id=sample.ref_id,
                        expression=sample.expression, family=sample.family, confusable=sample.confusable, **fields)


def _round_record(round_: Round, gt: Any) -> RoundRecord:
    intersection, union = iou_counts(round_.mask, gt)
    return RoundRecord(round=round_.index, intersection=intersection, union=union,
                       iou=1.0 if union == 0 else intersection / union, confidence=round(round_.confidence, 6),
                       corrections=list(round_.corrections),
                       critique=round_.critique.model_dump() if round_.critique else None,
                       critic_error=round_.critic_error, mask_rle=encode_rle(round_.mask),
                       denoise_s=round(round_.timings.get("denoise_s", 0.0), 4),
                       critic_s=round(round_.timings.get("critic_s", 0.0), 4))


def run_batch(pipe: Any, batch: list[tuple[int, RISSample]], config: EvalConfig,
              critic_for: CriticFactory) -> list[SampleRecord]:
    """Evaluate one batch; a sample that cannot be run gets a record with ``error`` (raises with ``strict``)."""
    loop = LoopConfig(max_rounds=config.max_rounds, num_inference_steps=config.steps, seed=config.seed)
    records: dict[int, SampleRecord] = {}
    sessions: list[tuple[int, RISSample, BatchedSession]] = []
    for index, sample in batch:
        try:
            if sample.mask.shape != sample.image.shape[:2]:
                raise UserError(f"mask {sample.mask.shape} and image {sample.image.shape[:2]} differ in size")
            sessions.append((index, sample, BatchedSession(pipe, sample.image, sample.expression, loop)))
        except UserError as error:
            if config.strict:
                raise UserError(f"sample {sample.sample_id}: {error}") from None
            records[index] = _record(index, sample, error=f"unreadable sample: {error}")
    if sessions:
        _first_rounds(pipe, [s for _, _, s in sessions], loop)
    for index, sample, session in sessions:
        try:
            result = session.run(critic_for(sample))
        except UserError as error:  # e.g. a critic that cannot read this sample
            if config.strict:
                raise UserError(f"sample {sample.sample_id}: {error}") from None
            records[index] = _record(index, sample, error=f"failed sample: {error}")
            continue
        records[index] = _record(index, sample, stop_reason=result.stop_reason, stop_detail=result.stop_detail[:300],
                                 best_round=result.best.index,
                                 rounds=[_round_record(r, sample.mask) for r in result.rounds])
    return [records[index] for index, _ in batch]
