"""What a run spends on the model: UNet calls and image rows, counted by a forward hook on the UNet.

A *row* is one image through the UNet (one guidance branch of one sample); a *pass* is what one uncorrected step
of one sample costs, i.e. the model's guidance branches (2 rows for the bundled model: text and image-only).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import torch

from addp_agent.engine.guidance import guidance_branches
from addp_agent.engine.pipeline import ADDPPipeline


def rows_per_pass(pipe: ADDPPipeline, settings: dict[str, Any] | None = None) -> int:
    """UNet rows of one uncorrected denoising step of one sample under ``settings`` (default: the model's)."""
    resolved = settings or pipe.resolve_settings()
    return guidance_branches(resolved["guidance_scale"], resolved["image_guidance_scale"])


class UNetMeter:
    """``with UNetMeter(pipe.unet) as meter: …`` counts UNet forward calls and their batch rows."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.calls = 0
        self.rows = 0
        self._handle: Any = None

    def _count(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs["sample"]
        self.calls += 1
        self.rows += int(sample.shape[0])

    def __enter__(self) -> UNetMeter:
        self._handle = self.unet.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._handle.remove()
