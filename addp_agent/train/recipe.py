"""Training recipes: named presets of :class:`TrainConfig` settings, one committed JSON file each in ``recipes/``.

``paper-refcoco``: the ADDP paper's RefCOCO training as its official code runs it — InstructPix2Pix fine-tuned at
256 px with AdamW 1e-4 (constant, no warm-up), 256 samples per step, 20 epochs, EMA, CFG dropout 5/5/5 %, the x₀
objective, the RIS timestep weights and the diffusion-tailored augmentation (intensity 0.2). Flags given with
``--recipe`` override it; the run prints the recipe and its changes and keeps them in ``recipe.json``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from addp_agent.presets import Name, Preset, check_preset, find_preset, read_preset, resolve
from addp_agent.train.config import TrainConfig

RECIPE_DIR = Path(__file__).parent / "recipes"


@cache
def recipes() -> dict[str, Preset]:
    """The committed recipes by name (each file is named after its recipe)."""
    found = {}
    for path in sorted(RECIPE_DIR.glob("*.json")):
        preset = read_preset(path, "recipe")
        if preset.name != path.stem:
            raise ValueError(f"{path}: the recipe is named {preset.name!r}; name the file after it")
        found[preset.name] = preset
    return found


def find_recipe(choice: str, name: Name = str) -> Preset:
    """A recipe by name (``paper-refcoco``) or from a ``.json`` file, checked against :class:`TrainConfig`."""
    preset = find_preset(choice, recipes(), "recipe", name("recipe"))
    check_preset(preset, TrainConfig, "recipe", name)
    return preset


def resolve_recipe(values: Mapping[str, Any], given: Collection[str], name: Name = str) -> dict[str, Any]:
    """``values`` (an ``addp train`` command's) with the recipe they name applied; ``given``: the flags typed."""
    choice = values.get("recipe")
    preset = None if choice is None else find_recipe(choice, name)
    return resolve(preset, values, given, TrainConfig.ALTERNATIVES, name)


def recipe_config(recipe: str, **given: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a recipe and the settings ``given`` over it (the Python form of
    ``addp train --recipe NAME --flag value …``)."""
    defaults = {name: field.get_default(call_default_factory=True) for name, field in TrainConfig.model_fields.items()
                if not field.is_required()}
    values = resolve_recipe(defaults | given | {"recipe": recipe}, set(given) | {"recipe"})
    return TrainConfig(**values)
