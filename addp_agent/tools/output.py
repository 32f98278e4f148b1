"""What every tool returns (:class:`ToolOutput`) and how a tool is described (:class:`ToolSpec`).

Kept apart from the tool functions so that each family of tools (segmentation in :mod:`.functions`, depth in
:mod:`.depth_functions`) builds its outputs the same way and registers into the one dispatcher.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from addp_agent.tools.schemas import SegmentResult, ToolError, TrajectoryResult


@dataclass(frozen=True)
class ToolSpec:
    name: str
    args: type[BaseModel]
    result: type[BaseModel]

    @property
    def description(self) -> str:
        return " ".join(inspect.cleandoc(self.args.__doc__ or "").split("\n"))


@dataclass
class ToolOutput:
    """A tool's result (or :class:`ToolError`), an optional image for the model to look at (a mask overlay or a
    colour-mapped depth map, PNG) with its caption, and an artifact for code (not the LLM)."""

    name: str
    result: BaseModel
    overlay_png: bytes | None = None
    artifact: dict[str, Any] | None = None
    caption: str | None = None  # what the image shows; None: a mask overlay

    @property
    def is_error(self) -> bool:
        return isinstance(self.result, ToolError)

    def data(self) -> dict[str, Any]:
        return self.result.model_dump(mode="json")

    def json(self) -> str:
        return self.result.model_dump_json()

    def text(self) -> str:
        """A short summary for the model (results with a ``summary()`` method word their own)."""
        r = self.result
        if isinstance(r, ToolError):
            return f"error ({r.error}): {r.message}"
        if isinstance(r, SegmentResult):
            warning = f"WARNING: {r.warning}. " if r.warning else ""
            return warning + _segment_text(r)
        if isinstance(r, TrajectoryResult):
            steps = ", ".join(f"step {p.step + 1}: {p.area_percent:.1f}%" for p in r.points)
            return f"mask_id {r.mask_id}: intermediate mask areas ({r.num_inference_steps} steps): {steps}"
        summary = getattr(r, "summary", None)
        return summary() if callable(summary) else self.json()


def _segment_text(r: SegmentResult) -> str:
    """The summary of a segment or refine result."""
    fixes = ", ".join(f"'{c}'" for c in r.corrections) or "none"
    rounds = f"round {r.rounds} (corrections: {fixes}; stop: {r.stop_reason})"
    if not r.found:
        return (f"mask_id {r.mask_id}: '{r.expression}' was not found in the {r.width}x{r.height} image: "
                f"nothing was painted and the mask is empty; {rounds}. If it should be there, call segment "
                "with another wording.")
    regions = "" if r.instance_count == 1 else f" in {r.instance_count} separate regions (" + "; ".join(
        f"bbox {i.bbox}, {i.area_percent:.2f}%" for i in r.instances) + ")"
    return (f"mask_id {r.mask_id}: '{r.expression}' found: covers {r.area_percent:.2f}% of the "
            f"{r.width}x{r.height} image{regions}, bbox [x, y, w, h] = {r.bbox}, confidence "
            f"{r.confidence:.2f}; {rounds}. If the overlay shows a wrongly covered object, call refine with "
            "mask_id and a correction naming it.")
