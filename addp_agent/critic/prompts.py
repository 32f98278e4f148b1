"""Critic prompt templates: files in the top-level ``prompts/`` folder, shipped in the wheel as ``addp_agent/prompts``.

Each file starts with a header that names the template variables, then ``---`` and the text::

    variables: expression, round
    ---
    Referring expression: ${expression} (round ${round})

Templates use :class:`string.Template` syntax (``${name}``), so JSON braces need no escaping.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from addp_agent.errors import UserError

_REPO_PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    variables: tuple[str, ...]
    text: str

    def render(self, **values: object) -> str:
        """Substitute every declared variable; unknown or missing names are errors."""
        given, declared = set(values), set(self.variables)
        if given != declared:
            raise KeyError(f"prompt {self.name!r} takes {sorted(declared)}, got {sorted(given)}")
        return string.Template(self.text).substitute({k: str(v) for k, v in values.items()})


def _folder() -> Path:
    packaged = Path(__file__).parent.parent / "prompts"  # addp_agent/prompts in a wheel (a symlink in the repo)
    return packaged if packaged.is_dir() else _REPO_PROMPTS


def prompt_names() -> list[str]:
    """Names of the available prompts (file names without extension)."""
    return sorted(entry.name.rsplit(".", 1)[0] for entry in _folder().iterdir()
                  if entry.name.endswith((".md", ".txt")))


def parse_prompt(name: str, raw: str) -> PromptTemplate:
    """Split header and body and check that the body uses exactly the declared variables."""
    header, sep, body = raw.partition("\n---\n")
    if not sep or not header.startswith("variables:"):
        raise ValueError(f"prompt {name!r}: expected a 'variables: a, b' header line and a '---' separator")
    declared = tuple(v.strip() for v in header.removeprefix("variables:").split(",") if v.strip())
    template = string.Template(body.strip("\n"))
    if not template.is_valid():
        raise ValueError(f"prompt {name!r}: malformed $-placeholder")
    used = set(template.get_identifiers())
    if used != set(declared):
        raise ValueError(f"prompt {name!r}: header declares {sorted(declared)} but the text uses {sorted(used)}")
    return PromptTemplate(name=name, variables=declared, text=template.template)


@cache
def load_prompt(name: str) -> PromptTemplate:
    """Load a packaged prompt by name (``vlm_system``, ``vlm_user``, ``paper_question``, …)."""
    folder = _folder()
    for suffix in (".md", ".txt"):
        entry = folder / (name + suffix)
        if entry.is_file():
            return parse_prompt(name, entry.read_text(encoding="utf-8"))
    raise UserError(f"no prompt named {name!r}; available: {', '.join(prompt_names())}")
