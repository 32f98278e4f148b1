"""The effects study's tasks by name (the task modules import the protocol, this module imports them)."""

from __future__ import annotations

from addp_agent.effects.task import EffectsTask


def get_task(name: str) -> EffectsTask:
    """``ris`` or ``depth``."""
    if name == "depth":
        from addp_agent.effects.depth import DepthEffects

        return DepthEffects()
    if name == "ris":
        from addp_agent.effects.ris import RISEffects

        return RISEffects()
    raise ValueError(f"unknown effects task {name!r}: use ris or depth")
