"""The critics' names, what each one reads, and the old names still accepted."""

from __future__ import annotations

from addp_agent.errors import UserError

CRITIC_NAMES: tuple[str, ...] = ("oracle", "noisy", "self", "vlm", "paper", "none")
ALIASES: dict[str, str] = {"simulated": "oracle"}  # the oracle's old name
LABELS: dict[str, str] = {
    "oracle": "oracle (reads ground truth)",
    "noisy": "noisy oracle (reads ground truth, errs at set rates)",
    "self": "self-consistency (reads no ground truth: the model's own readings)",
    "vlm": "vlm (a vision-language model sees the image and the mask)",
    "paper": "paper (a text-only LLM asked about the caption)",
    "none": "none (one round)",
}
READS_GROUND_TRUTH = frozenset({"oracle", "noisy"})
CHOICES_HELP = ("oracle (reads ground truth; 'simulated' is accepted as an alias) | noisy (the oracle with error "
                "rates) | self (reads no ground truth) | vlm | paper | none")


def canonical_critic(name: str) -> str:
    """The critic's current name (``simulated`` → ``oracle``); a clear error for an unknown one."""
    key = ALIASES.get(name, name)
    if key not in CRITIC_NAMES:
        raise UserError(f"unknown critic {name!r}; use one of {', '.join(CRITIC_NAMES)} ('simulated' is an alias "
                        "of 'oracle')")
    return key


def critic_label(name: str) -> str:
    """How results tables name a critic: ``oracle (reads ground truth)``, …"""
    return LABELS.get(ALIASES.get(name, name), name)
