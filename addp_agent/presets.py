"""Named presets of a run's settings (an evaluation protocol, a training recipe) and how explicit flags meet them.

A :class:`Preset` fixes some fields of a pydantic config. :func:`resolve` starts from the values a command received
(the config's defaults plus whatever the user typed), puts the preset's values over the defaults, and keeps every value
the user gave explicitly: **an explicit flag overrides the preset**, and the override is reported (printed at the start
of the run and recorded in its outputs), so a result that departs from a protocol says so. Some fields say one thing
in two ways (``steps`` / ``epochs``): a field the user gives drops the preset's values of its alternatives, and giving
two alternatives at once is an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from addp_agent.errors import UserError, validation_message

Name = Callable[[str], str]  # renders a field name for messages (``--max-rounds`` on the command line)


class Preset(BaseModel):
    """Settings that together reproduce something (the paper's evaluation, its training), with their source."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(description="One line: what the preset reproduces.")
    source: str = Field(description="Where the values come from.")
    settings: dict[str, Any]
    required: tuple[str, ...] = Field((), description="Fields the user must give (e.g. the data).")
    notes: dict[str, str] = Field({}, description="Why a setting has its value, per field.")


class Resolved(BaseModel):
    """A preset applied to a command's values: the values to build the config from, and what the user changed."""

    preset: Preset | None
    values: dict[str, Any]
    overridden: dict[str, dict[str, Any]] = {}  # field -> {"preset": value, "given": value}
    dropped: dict[str, str] = {}  # preset field -> the given field that replaced it

    def record(self) -> dict[str, Any] | None:
        """What a run's outputs keep about its preset (None without one)."""
        if self.preset is None:
            return None
        return {"name": self.preset.name, "title": self.preset.title, "source": self.preset.source,
                "settings": dict(self.preset.settings), "overridden": self.overridden, "replaced": self.dropped}


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
            alternatives: Sequence[Collection[str]] = (), name: Name = str) -> Resolved:
    """``values`` (a command's, defaults included) with ``preset`` over the defaults and ``given`` fields kept."""
    given = set(given)
    for group in alternatives:
        both = sorted(given & set(group))
        if len(both) > 1:
            raise UserError(f"{' and '.join(map(name, both))} say the same thing in two ways; give one")
    if preset is None:
        return Resolved(preset=None, values=dict(values))
    missing = [field for field in preset.required if field not in given]
    if missing:
        raise UserError(f"{preset.name} needs {', '.join(map(name, missing))}")
    out, overridden, dropped = dict(values), {}, {}
    for field, value in preset.settings.items():
        replaced_by = next((other for group in alternatives if field in group for other in group
                            if other != field and other in given), None)
        if replaced_by is not None:
            dropped[field] = replaced_by
        elif field in given:
            if values[field] != value:
                overridden[field] = {"preset": value, "given": values[field]}
        else:
            out[field] = value
    return Resolved(preset=preset, values=out, overridden=overridden, dropped=dropped)


def describe(resolved: Resolved, kind: str, name: Name = str) -> list[str]:
    """The preset in full, one setting a line, each override marked (what a run prints before it starts)."""
    preset = resolved.preset
    if preset is None:
        return []
    lines = [f"{kind} {preset.name}: {preset.title}", f"  source: {preset.source}"]
    width = max(len(name(field)) for field in preset.settings)
    for field, value in preset.settings.items():
        text = f"  {name(field):<{width}}  {_show(value)}"
        if field in resolved.overridden:
            text = f"  {name(field):<{width}}  {_show(resolved.overridden[field]['given'])}   (given; the {kind} " \
                   f"says {_show(value)})"
        elif field in resolved.dropped:
            text += f"   (replaced by the given {name(resolved.dropped[field])})"
        lines.append(text)
    changed = len(resolved.overridden) + len(resolved.dropped)
    lines.append(f"  {changed} setting(s) changed from the {kind}" if changed else f"  as the {kind} says")
    return lines


def _show(value: Any) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
