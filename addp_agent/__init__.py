"""addp-agent: referring image segmentation by diffusion (ADDP), callable by agents."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ADDPPipeline", "SegmentationResult", "load_pipeline", "__version__"]


def __getattr__(name: str) -> Any:
    """Import the heavy pieces (torch, diffusers) only when they are used."""
    if name == "ADDPPipeline":
        from addp_agent.engine.pipeline import ADDPPipeline

        return ADDPPipeline
    if name == "SegmentationResult":
        from addp_agent.engine.outputs import SegmentationResult

        return SegmentationResult
    if name == "load_pipeline":
        from addp_agent.models.registry import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'addp_agent' has no attribute {name!r}")
