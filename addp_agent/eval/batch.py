"""One batch of samples through the multi-round loop: round 1 in one pipeline call, later rounds per session."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from addp_agent.agent import LoopConfig, Round, Session
from addp_agent.critic.base import Critic
from addp_agent.data.sample import Instance, RISSample
from addp_agent.engine.decode import MaskDecoding
from addp_agent.engine.outputs import SegmentationResult
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.engine.state import EncodedBatch
from addp_agent.errors import UserError
from addp_agent.eval.cost import UNetMeter, rows_per_pass
from addp_agent.eval.records import EvalConfig, RoundRecord, SampleRecord
from addp_agent.images import resized
from addp_agent.masks import encode_rle
from addp_agent.metrics import iou_counts

CriticFactory = Callable[[RISSample], Critic | None]


def first_rounds(pipe: ADDPPipeline, sessions: list[Session]) -> list[SegmentationResult]:
    """The uncorrected first round of sessions with equal settings and seed, in one pipeline call; each sample
    draws what its own session would (every session's encodings are its own, computed once)."""
    seed = sessions[0].config.seed
    output = pipe(encoded=EncodedBatch.concat([s.encoded for s in sessions]),
                  generator=seeded_generators([seed] * len(sessions)), output_type="np", show_progress=False,
                  **sessions[0].settings, **sessions[0].decoding)
    return output.results(seed)


def scored_view(sample: RISSample, decoding: MaskDecoding) -> RISSample:
    """The sample as masks are scored: at the decode size when the rule decodes at a fixed size (ground truths
    NEAREST, the image LANCZOS for critics and figures, as the official ``evaluate.py``), else the sample itself."""
    if decoding.size is None:
        return sample
    size = decoding.output_size(sample.mask.shape)
    return dataclasses.replace(
        sample, image=resized(sample.image, size), mask=decoding.reference(sample.mask),
        others=[Instance(decoding.reference(o.mask), o.name, o.instance_id) for o in sample.others],
        target_masks=[decoding.reference(m) for m in sample.target_masks])


def _record(index: int, sample: RISSample, **fields: Any) -> SampleRecord:
    return SampleRecord(index=index, sample_id=sample.sample_id, image_id=sample.image_id, ref_id=sample.ref_id,
                        expression=sample.expression, targets=sample.n_targets, family=sample.family,
                        confusable=sample.confusable, **fields)


def _round_record(round_: Round, gt: Any) -> RoundRecord:
    intersection, union = iou_counts(round_.mask, gt)
    return RoundRecord(round=round_.index, intersection=intersection, union=union,
                       iou=1.0 if union == 0 else intersection / union, found=round_.result.found,
                       confidence=round(round_.confidence, 6),
                       corrections=list(round_.corrections),
                       critique=round_.critique.model_dump() if round_.critique else None,
                       critic_error=round_.critic_error, mask_rle=encode_rle(round_.mask),
                       denoise_s=round(round_.timings.get("denoise_s", 0.0), 4),
                       critic_s=round(round_.timings.get("critic_s", 0.0), 4))


def run_batch(pipe: ADDPPipeline, batch: list[tuple[int, RISSample]], config: EvalConfig,
              critic_for: CriticFactory) -> list[SampleRecord]:
    """Evaluate one batch; a sample that cannot be run gets a record with ``error`` (raises with ``strict``)."""
    loop = LoopConfig(max_rounds=config.max_rounds, num_inference_steps=config.steps, seed=config.seed,
                      guidance_scale=config.guidance_scale, image_guidance_scale=config.image_guidance_scale,
                      decode_size=config.decode_size, threshold=config.threshold,
                      correction_mode=config.correction_mode, resume_step=config.resume_step,
                      correction_steps=config.correction_steps)
    records: dict[int, SampleRecord] = {}
    sessions: list[tuple[int, RISSample, Session]] = []
    for index, sample in batch:
        try:
            if sample.mask.shape != sample.image.shape[:2]:
                raise UserError(f"mask {sample.mask.shape} and image {sample.image.shape[:2]} differ in size")
            sessions.append((index, sample, Session(pipe, sample.image, sample.expression, loop)))
        except UserError as error:
            if config.strict:
                raise UserError(f"sample {sample.sample_id}: {error}") from None
            records[index] = _record(index, sample, error=f"unreadable sample: {error}")
    batched = bool(sessions) and not sessions[0][2].resumable  # a resuming session runs round 1 from its own prefix
    with UNetMeter(pipe.unet) as shared:
        firsts = first_rounds(pipe, [s for _, _, s in sessions]) if batched else [None] * len(sessions)
    pass_rows = rows_per_pass(pipe, sessions[0][2].settings) if sessions else 0
    for (index, sample, session), first in zip(sessions, firsts, strict=True):
        scored = scored_view(sample, loop.decoding)
        try:
            with UNetMeter(pipe.unet) as own:
                result = session.run(critic_for(scored), first=first)
        except UserError as error:  # e.g. a critic that cannot read this sample
            if config.strict:
                raise UserError(f"sample {sample.sample_id}: {error}") from None
            records[index] = _record(index, sample, error=f"failed sample: {error}")
            continue
        records[index] = _record(index, sample, stop_reason=result.stop_reason, stop_detail=result.stop_detail[:300],
                                 best_round=result.best.index, in_domain=result.rounds[0].result.domain.in_domain,
                                 domain_score=result.rounds[0].result.domain.to_json()["domain_score"],
                                 rounds=[_round_record(r, scored.mask) for r in result.rounds],
                                 unet_calls=shared.calls + own.calls,
                                 unet_rows=shared.rows // len(sessions) + own.rows, unet_pass_rows=pass_rows)
    return [records[index] for index, _ in batch]
