"""Cleaning of user and model text (expressions, corrections, captions) before it reaches a prompt."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from addp_agent.errors import UserError
from addp_agent.limits import MAX_CORRECTION_CHARS


def clean_text(text: str, what: str = "expression", max_chars: int | None = None) -> str:
    """Strip control characters and surrounding space; refuse empty text; cap the length if asked."""
    if not isinstance(text, str):
        raise UserError(f"{what} must be text, got {type(text).__name__}")
    cleaned = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        stripped = "" if not text.strip() else " (it held only control or unencodable characters)"
        raise UserError(f"{what} is empty{stripped}; give a non-empty text")
    if max_chars is not None and len(cleaned) > max_chars:
        cleaned = cleaned[:max_chars].rstrip()
    return cleaned


def clean_corrections(corrections: Iterable[str]) -> list[str]:
    """Each correctional prompt cleaned and capped at :data:`MAX_CORRECTION_CHARS`."""
    return [clean_text(c, "correction", MAX_CORRECTION_CHARS) for c in corrections]
