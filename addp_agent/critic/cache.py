"""On-disk cache of LLM answers keyed by the request, so evaluations re-run at no cost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def request_key(request: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request (endpoint, model, messages, output mode, schema)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """One JSON file per request under ``folder/<key[:2]>/<key>.json``; writes are atomic."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder).expanduser()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, request: dict[str, Any]) -> str | None:
        path = self._path(request_key(request))
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, request: dict[str, Any], answer: str) -> None:
        """Store ``answer``; a cache that cannot be written (full disk, a file in the way) is only a miss next
        time, never a failed critique."""
        key = request_key(request)
        path = self._path(key)
        record = {"key": key, "model": request.get("model"), "mode": request.get("mode"), "answer": answer}
        staged = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                             suffix=".tmp") as f:
                staged = f.name
                json.dump(record, f, ensure_ascii=False)
            os.replace(staged, path)
        except OSError:
            if staged is not None:
                with contextlib.suppress(OSError):
                    os.unlink(staged)

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json")) if self.folder.exists() else 0
