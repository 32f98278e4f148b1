"""Errors a user can act on. Entry points turn them into one clear line (CLI: exit code 2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class UserError(ValueError):
    """Bad input from the user: the message says what was wrong and what to do."""


class ModelLoadError(UserError):
    """A model path or hub id that cannot be loaded as an ADDP/InstructPix2Pix checkpoint."""


class DataError(UserError):
    """A data set, annotation file, image or mask that cannot be read."""


class SplitError(DataError):
    """A ``--split`` the data source does not have; the message names the splits it has."""


def validation_message(error: ValidationError, name: Callable[[str], str] = str, limit: int = 5) -> str:
    """A pydantic validation error as one line, ``field: problem; …``.

    ``name`` renders a field's dotted path (``"--" + …`` for command-line flags); ``limit`` bounds the problems told.
    """
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        # a rule across fields (a model validator) has no location: its own message says which fields
        parts.append(f"{name(where)}: {message}" if where else message)
    return "; ".join(parts)
