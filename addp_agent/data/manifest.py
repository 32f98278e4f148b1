"""Export manifests: which generator settings and seeds a folder's exports were made with.

Layouts in one folder share image files named by sample id, so a new export must use the same settings, and the
same seed for a split another layout already holds; otherwise it would overwrite images with different ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from addp_agent.data.refer import read_json
from addp_agent.errors import UserError
from addp_agent.outputs_io import write_file


def check(path: Path, what: str, layout: str, split: str, seed: int, settings: dict[str, Any]) -> dict:
    """Refuse ``settings``/``seed`` that clash with the manifest at ``path``; return the updated manifest."""
    document = read_json(path) if path.exists() else {"config": None, "exports": {}}
    out = path.parent
    key = f"{layout}/{split}"
    others = {k: v for k, v in document["exports"].items() if k != key}
    if others and document["config"] != settings:
        changed = sorted(k for k in settings if (document["config"] or {}).get(k) != settings[k])
        raise UserError(f"{out} already holds {what} made with other settings ({', '.join(changed)}); "
                        "use the same options or another --out")
    for other_key, entry in others.items():
        if other_key.endswith(f"/{split}") and entry["seed"] != seed:
            raise UserError(f"{out}: {other_key} was made with --seed {entry['seed']}; use it for {split} "
                            "too (the layouts share images) or another --out")
    document["config"] = settings
    document["exports"][key] = {"seed": seed}
    return document


def write(path: Path, document: dict) -> None:
    """Save a manifest returned by :func:`check` after a successful export."""
    write_file(path, json.dumps(document, indent=1, sort_keys=True))
