"""Named presets of a run's settings (an evaluation protocol, a training recipe) and how explicit flags meet them.

A :class:`Preset` fixes some fields of a pydantic config. :func:`resolve` starts from the values a command received
(the config's defaults plus whatever the user typed), puts the preset's values over the defaults, and keeps every value
the user gave explicitly: **an explicit flag overrides the preset**. What a run changed from its preset is reported
(:func:`describe` prints it at the start of the run, :func:`record` keeps it in the run's outputs), so a result that
departs from a protocol says so. Some fields say one thing in two ways (``steps`` / ``epochs``): a field the user
gives drops the preset's values of its alternatives, and giving two alternatives at once is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from addp_agent.errors import UserError, validation_message

Name = Callable[[str], str]  # renders a field name for messages (``--max-rounds`` on the command line)


def as_flag(name: str) -> str:
    """A field as its command-line flag: ``max_rounds`` → ``--max-rounds``."""
    return "--" + name.replace(".", "-").replace("_", "-")


class Preset(BaseModel):
    """Settings that together reproduce something (the paper's evaluation, its training), with their source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(description="One line: what the preset reproduces.")
    source: str = Field(description="Where the values come from.")
    settings: dict[str, Any]
    required: tuple[str, ...] = Field((), description="Fields the user must give (e.g. the data).")
    notes: dict[str, str] = Field({}, description="Why a setting has its value, per field.")


def read_preset(path: Path, kind: str) -> Preset:
    """A preset from a JSON file; one :class:`UserError` line when it cannot be read."""
    try:
        return Preset.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read a {kind} ({error})") from None
    except ValidationError as error:
        raise UserError(f"{path}: not a {kind}: {validation_message(error)}") from None


def check_preset(preset: Preset, config: type[BaseModel], kind: str, name: Name = str) -> None:
    """Refuse a preset naming fields ``config`` lacks or values it rejects."""
    unknown = sorted(set(preset.settings) - set(config.model_fields))
    if unknown:
        raise UserError(f"{kind} {preset.name}: unknown settings {', '.join(map(name, unknown))}")
    probe = dict(preset.settings)
    for field_name, field in config.model_fields.items():  # a stand-in for what the user must give
        if field.is_required() and field_name not in probe:
            probe[field_name] = "x"
    try:
        config.model_validate(probe)
    except ValidationError as error:
        raise UserError(f"{kind} {preset.name}: {validation_message(error, name)}") from None


def find_preset(choice: str, presets: Mapping[str, Preset], kind: str, flag: str) -> Preset:
    """A preset by name, or read from a ``.json`` file; an unknown name is one line listing the known ones."""
    if choice in presets:
        return presets[choice]
    if choice.endswith(".json"):
        return read_preset(Path(choice), kind)
    raise UserError(f"unknown {flag} {choice!r}; use one of {', '.join(sorted(presets))} or a .json file")


def resolve(preset: Preset | None, values: Mapping[str, Any], given: Collection[str],
            alternatives: Sequence[Collection[str]] = (), name: Name = str) -> dict[str, Any]:
    """``values`` (a command's, defaults included) with ``preset`` over the defaults and ``given`` fields kept; a
    given field drops the preset's values of its ``alternatives``."""
    given = set(given)
    for group in alternatives:
        both = [field for field in group if field in given]
        if len(both) > 1:
            raise UserError(f"{' and '.join(map(name, both))} say the same thing in two ways; give one")
    out = dict(values)
    if preset is None:
        return out
    missing = [field for field in preset.required if field not in given]
    if missing:
        raise UserError(f"{preset.name} needs {', '.join(map(name, missing))}")
    for field, value in preset.settings.items():
        replaced = any(field in group and given & (set(group) - {field}) for group in alternatives)
        if field not in given and not replaced:
            out[field] = value
    return out


def changes(preset: Preset, values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The preset's settings a run does not keep: ``{field: {"preset": value, "used": value}}``."""
    return {field: {"preset": value, "used": values.get(field)} for field, value in preset.settings.items()
            if values.get(field) != value}


def record(preset: Preset, values: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's outputs keep about the preset it started from: the preset in full, and what the run changed."""
    return {"name": preset.name, "title": preset.title, "source": preset.source, "settings": dict(preset.settings),
            "changed": changes(preset, values)}


def describe(preset: Preset, values: Mapping[str, Any], kind: str, name: Name = str) -> list[str]:
    """The preset in full, one setting a line, each change marked (what a run prints before it starts)."""
    changed = changes(preset, values)
    lines = [f"{kind} {preset.name}: {preset.title}", f"  source: {preset.source}"]
    width = max(len(name(field)) for field in preset.settings)
    for field, value in preset.settings.items():
        text = f"  {name(field):<{width}}  {_show(value)}"
        if field in changed:
            text = f"  {name(field):<{width}}  {_show(changed[field]['used'])}   (changed; the {kind} says " \
                   f"{_show(value)})"
        lines.append(text)
    lines.append(f"  {len(changed)} setting(s) changed from the {kind}" if changed else f"  as the {kind} says")
    return lines


def _show(value: Any) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
