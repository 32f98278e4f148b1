"""Evaluation protocols: named presets of :class:`EvalConfig` settings (see :mod:`addp_agent.presets`).

``paper``: the ADDP paper's referring-segmentation evaluation as its official code runs it (``generate.py``,
``evaluate.py``; ``docs/reproduce-refcoco.md``): images at 256 px, k-diffusion's Euler-ancestral sampler with 100
steps (``linspace`` timesteps: t = 999 … 0), text guidance 3.0 and image guidance 1.5, seed 0, the painted image
and the ground truth resized to 512 × 512 (LANCZOS / NEAREST), mask = RGB distance to (255, 0, 0) < 50, one round
without a critic, mIoU and oIoU on ``val``. Flags given with ``--protocol`` override it, and the override is printed
and recorded in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from addp_agent.eval.records import EvalConfig
from addp_agent.presets import Preset, Resolved, check_preset, find_preset, resolve

PAPER = Preset(
    name="paper",
    title="the ADDP paper's RIS evaluation (mIoU, oIoU on val)",
    source="official ADDP code: referring_segmentation/generate.py and evaluate.py (research notes: paper.md §2.1, §5)",
    settings={"split": "val", "resolution": 256, "scheduler": "euler_ancestral", "timestep_spacing": "linspace",
              "steps": 100, "guidance_scale": 3.0, "image_guidance_scale": 1.5, "seed": 0, "decode_size": 512,
              "threshold": 50.0, "critic": "none", "max_rounds": 1},
    required=("data",),
    notes={"resolution": "images resized to 256 × 256 without keeping the aspect ratio",
           "scheduler": "k-diffusion sample_euler_ancestral", "decode_size": "painted image LANCZOS, GT NEAREST",
           "critic": "the paper's numbers are single-pass"},
)
PROTOCOLS: dict[str, Preset] = {p.name: p for p in (PAPER,)}


def resolve_protocol(values: Mapping[str, Any], given: set[str], name=str) -> Resolved:
    """``values`` (an ``addp eval`` command's) with the protocol they name applied; ``given``: flags typed."""
    choice = values.get("protocol")
    if choice is None:
        return resolve(None, values, given, name=name)
    preset = find_preset(choice, PROTOCOLS, "protocol", name("protocol"))
    check_preset(preset, EvalConfig, "protocol", name)
    resolved = resolve(preset, values, given, name=name)
    resolved.values["protocol"] = preset.name
    return resolved
