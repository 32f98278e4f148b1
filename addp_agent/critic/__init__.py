"""Critics: look at a mask and say accept or revise, with a correctional prompt D⁻.

Reads ground truth: ``OracleCritic`` (``SimulatedCritic`` is its old name) and ``NoisyOracleCritic``. Reads no
ground truth: ``SelfConsistencyCritic`` (the model's own readings), ``VLMCritic`` and ``PaperCritic`` (LLMs; they
import the ``openai`` client lazily, as does ``ChatSettings``).
"""

from typing import Any

from addp_agent.critic.base import Critic, CriticError, Critique, CritiqueRequest, PriorRound, ScoredCritique
from addp_agent.critic.noisy import ErrorRates, NoisyOracleCritic
from addp_agent.critic.oracle import OracleCritic, SimulatedCritic

_LAZY = {"VLMCritic": "vlm", "PaperCritic": "paper", "ChatSettings": "chat", "ChatTransport": "chat",
         "SelfConsistencyCritic": "consistency", "PipelineReader": "readings"}

__all__ = ["ChatSettings", "ChatTransport", "Critic", "CriticError", "Critique", "CritiqueRequest", "ErrorRates",
           "NoisyOracleCritic", "OracleCritic", "PaperCritic", "PipelineReader", "PriorRound", "ScoredCritique",
           "SelfConsistencyCritic", "SimulatedCritic", "VLMCritic"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"addp_agent.critic.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'addp_agent.critic' has no attribute {name!r}")
