"""Scenes-3D: a procedurally ray-cast 3D world with exact masks and depth for referring segmentation and depth.

See docs/scenes-3d.md. Modules: ``config`` (knobs, presets), ``camera``, ``sampling`` (scenes), ``culling`` +
``raycast`` + ``shading`` + ``render`` (pixels), ``programs`` + ``expressions`` + ``language`` (referring
expressions), ``dataset`` (samples), ``bulk`` (training arrays), ``spec`` (data specs), ``export`` (file layouts).
"""

from addp_agent.data.scenes3d.config import FAMILIES, MODES, PRESETS, ScenesConfig, preset_config
from addp_agent.data.scenes3d.dataset import (
    DATASET,
    SPLITS,
    ScenesDepth,
    ScenesRef,
    generate_records,
    generate_sample,
)
from addp_agent.data.scenes3d.spec import parse_spec, scenes_config


def depth_samples(split: str, n: int, seed: int = 0, size: int = 128, preset: str = "default",
                  **overrides) -> ScenesDepth:
    """``n`` DepthSamples (metric z-depth, valid mask, intrinsics) of ``split``: the same scenes as the RIS samples
    of ``scenes-gen:n:seed:size:preset`` (classic mode)."""
    return ScenesDepth(split, n, seed, scenes_config(size, preset, overrides.pop("mode", "classic"), overrides))


__all__ = ["DATASET", "FAMILIES", "MODES", "PRESETS", "SPLITS", "ScenesConfig", "ScenesDepth", "ScenesRef",
           "depth_samples", "generate_records", "generate_sample", "parse_spec", "preset_config", "scenes_config"]
