"""``scenes-gen:`` data specs and ``KNOB=VALUE`` overrides -> a validated :class:`ScenesConfig`.

Spec: ``scenes-gen:N[:SEED[:SIZE[:PRESET[:MODE]]]][:KNOB=VALUE]...``, e.g. ``scenes-gen:5000:0:128:hard:generalized``
or ``scenes-gen:1000:7:128:default:classic:max_objects=8:lookalike=0.5``. Values: numbers as written, lists comma-
separated (``sizes=small,medium,large``), ranges as two numbers (``distance=12,15``), family weights as
``family_weights=attribute=1,relation=2``.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import ValidationError

from addp_agent.data.scenes3d.config import MODES, PRESETS, ScenesConfig, preset_config
from addp_agent.errors import UserError
from addp_agent.limits import MAX_SEED

SPEC = "scenes-gen:N[:SEED[:SIZE[:PRESET[:MODE]]]][:KNOB=VALUE...]"
KNOBS = tuple(name for name in ScenesConfig.model_fields if name not in ("size", "mode"))


def _value(name: str, text: str) -> Any:
    annotation = ScenesConfig.model_fields[name].annotation
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if origin is dict:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise UserError(f"bad Scenes-3D option {name}={text!r}; write {name}=attribute=1,relation=2")
        return {key.strip(): value.strip() for key, value in pairs}
    return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["max_objects=8", "sizes=small,large"]`` -> field values for :class:`ScenesConfig` (validated later)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in KNOBS:
            raise UserError(f"bad Scenes-3D option {item!r}; use KNOB=VALUE with KNOB one of {', '.join(KNOBS)}")
        out[name] = _value(name, text.strip())
    return out


def scenes_config(size: int = 128, preset: str = "default", mode: str = "classic",
                  overrides: dict[str, Any] | None = None) -> ScenesConfig:
    """The preset with size, mode and overrides; every problem is one :class:`UserError` line."""
    if preset not in PRESETS:
        raise UserError(f"unknown Scenes-3D preset {preset!r}; use one of {', '.join(PRESETS)}")
    if mode not in MODES:
        raise UserError(f"unknown Scenes-3D mode {mode!r}; use one of {', '.join(MODES)}")
    try:
        return preset_config(preset, size=size, mode=mode, **(overrides or {}))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        raise UserError(f"bad Scenes-3D settings: {problems}") from None


def parse_spec(rest: str) -> tuple[int, int, ScenesConfig]:
    """The part after ``scenes-gen:`` -> (n, seed, config)."""
    parts = rest.split(":") if rest else []
    positional = [p for p in parts if "=" not in p]
    knobs = [p for p in parts if "=" in p]
    if not 1 <= len(positional) <= 5 or parts[: len(positional)] != positional:
        raise UserError(f"bad source 'scenes-gen:{rest}'; expected {SPEC}")
    try:
        n = int(positional[0])
        seed = int(positional[1]) if len(positional) > 1 else 0
        size = int(positional[2]) if len(positional) > 2 else 128
    except ValueError:
        raise UserError(f"bad source 'scenes-gen:{rest}'; N, SEED and SIZE are integers ({SPEC})") from None
    if n < 1 or not 0 <= seed <= MAX_SEED:
        raise UserError(f"bad source 'scenes-gen:{rest}'; N must be ≥ 1 and SEED in 0..{MAX_SEED}")
    preset = positional[3] if len(positional) > 3 else "default"
    mode = positional[4] if len(positional) > 4 else "classic"
    return n, seed, scenes_config(size, preset, mode, parse_overrides(knobs))
