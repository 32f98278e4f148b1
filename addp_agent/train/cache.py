"""Training-set caches: a torch file holding the arrays and the ``meta`` they were made from, reused only when the
meta matches and written whole (a temporary file beside it, then a rename)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

TORCH_FILE_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


def may_replace(cache: Path) -> bool:
    """Whether ``cache`` may be (re)written: absent, or a torch file (a stale or damaged cache is rebuilt). Any
    other existing file is someone else's and is not overwritten."""
    if not cache.exists():
        return True
    try:
        with cache.open("rb") as handle:
            return handle.read(len(TORCH_FILE_MAGIC)) == TORCH_FILE_MAGIC
    except OSError:
        return False


def load_cached(cache: Path | None, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The stored entries of ``cache`` when it was made from ``meta``; None when absent, unreadable or stale."""
    if cache is None or not Path(cache).is_file():
        return None
    try:
        stored = torch.load(cache, weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt, never trusted
        return None
    return stored if isinstance(stored, dict) and stored.get("meta") == meta else None


def store_cached(cache: Path | None, meta: dict[str, Any], entries: dict[str, Any]) -> None:
    """Write ``entries`` with ``meta`` to ``cache`` (nothing when ``cache`` is None)."""
    if cache is None:
        return
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        torch.save({"meta": meta, **entries}, staging)
        staging.replace(cache)
    finally:
        staging.unlink(missing_ok=True)  # a failed write leaves no partial file behind
