"""The diffusion engine: pipeline, guidance, decode, resumable state, output types."""

import addp_agent.engine.quiet  # noqa: F401  (first: before anything imports diffusers)
from addp_agent.engine.decode import DecodedMask, MaskDecoding, decode_paint
from addp_agent.engine.outputs import ADDPPipelineOutput, SegmentationResult, TrajectoryPoint
from addp_agent.engine.pipeline import ADDPPipeline, seeded_generators
from addp_agent.engine.state import DenoiseSettings, DenoiseState, EncodedBatch

__all__ = ["ADDPPipeline", "ADDPPipelineOutput", "DecodedMask", "DenoiseSettings", "DenoiseState", "EncodedBatch",
           "MaskDecoding", "SegmentationResult", "TrajectoryPoint", "decode_paint", "seeded_generators"]
