"""The diffusion engine: pipeline, guidance, decode, resumable state."""

from addp_agent.engine.decode import DecodedMask, decode_paint
from addp_agent.engine.pipeline import ADDPPipeline, ADDPPipelineOutput, TrajectoryPoint
from addp_agent.engine.state import DenoiseState, EncodedBatch

__all__ = ["ADDPPipeline", "ADDPPipelineOutput", "DecodedMask", "DenoiseState", "EncodedBatch", "TrajectoryPoint",
           "decode_paint"]
