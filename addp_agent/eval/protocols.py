"""Evaluation protocols: named presets of :class:`EvalConfig` settings (see :mod:`addp_agent.presets`).

``paper``: the ADDP paper's referring-segmentation evaluation as its official code runs it (``generate.py``,
``evaluate.py``; ``docs/reproduce-refcoco.md``): images at 256 px, k-diffusion's Euler-ancestral sampler with 100
steps (``linspace`` timesteps: t = 999 … 0), text guidance 3.0 and image guidance 1.5, seed 0, the painted image
and the ground truth resized to 512 × 512 (LANCZOS / NEAREST), mask = RGB distance to (255, 0, 0) < 50, one round
without a critic, mIoU and oIoU on ``val``. Flags given with ``--protocol`` override it, and the override is printed
and recorded in ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from addp_agent.eval.records import EvalConfig
from addp_agent.presets import Name, Preset, check_preset, find_preset, record, resolve

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


def find_protocol(choice: str, name: Name = str) -> Preset:
    """A protocol by name (``paper``) or from a ``.json`` file, checked against :class:`EvalConfig`."""
    preset = find_preset(choice, PROTOCOLS, "protocol", name("protocol"))
    check_preset(preset, EvalConfig, "protocol", name)
    return preset


def resolve_protocol(values: Mapping[str, Any], given: Collection[str], name: Name = str) -> dict[str, Any]:
    """``values`` (an ``addp eval`` command's) with the protocol they name applied; ``given``: the flags typed."""
    choice = values.get("protocol")
    return resolve(None if choice is None else find_protocol(choice, name), values, given, name=name)


def protocol_record(config: EvalConfig) -> dict[str, Any] | None:
    """The protocol a run started from, in full, and what the run changed in it (None without one)."""
    return None if config.protocol is None else record(find_protocol(config.protocol), config.model_dump())
