"""Critics: look at a mask and say accept or revise, with a correctional prompt D⁻.

The LLM-backed critics (``VLMCritic``, ``PaperCritic``, ``ChatSettings``) import the ``openai`` client lazily.
"""

from typing import Any

from addp_agent.critic.base import Critic, CriticError, Critique, CritiqueRequest, PriorRound
from addp_agent.critic.simulated import SimulatedCritic

_LAZY = {"VLMCritic": "vlm", "PaperCritic": "paper", "ChatSettings": "chat", "ChatTransport": "chat"}

__all__ = ["ChatSettings", "ChatTransport", "Critic", "CriticError", "Critique", "CritiqueRequest", "PaperCritic",
           "PriorRound", "SimulatedCritic", "VLMCritic"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"addp_agent.critic.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'addp_agent.critic' has no attribute {name!r}")
