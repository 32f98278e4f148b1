"""What the package ships: one record per bundled model (:data:`~addp_agent.models.registry.BUNDLED_MODELS`), read
from its files without loading weights."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from addp_agent.models.calibration import Calibration
from addp_agent.models.registry import BUNDLED_MODELS, DEFAULT_DEPTH_MODEL_DIR, DEFAULT_MODEL_DIR, read_index

TASKS = {"ADDPPipeline": "ris", "DepthPipeline": "depth"}


class BundledModel(BaseModel):
    """A bundled model as `addp models` lists it."""

    name: str
    task: Literal["ris", "depth"] | None = None
    installed: bool
    default: bool = False
    size_mib: float | None = None
    steps: int | None = None
    domain: str = "open"
    found_rule: bool = False
    about: str
    folder: str


def _size_mib(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def describe(name: str) -> BundledModel:
    """The record of bundled model ``name``; ``installed=False`` when this install lacks its folder."""
    folder, about = BUNDLED_MODELS[name]
    record = BundledModel(name=name, installed=(folder / "model_index.json").is_file(), about=about,
                          folder=str(folder), default=folder in (DEFAULT_MODEL_DIR, DEFAULT_DEPTH_MODEL_DIR))
    if not record.installed:
        return record
    index = read_index(folder)
    calibration = Calibration.load(folder)
    return record.model_copy(update={
        "task": TASKS.get(index.get("_class_name")), "size_mib": _size_mib(folder),
        "steps": index.get("default_num_inference_steps", index.get("default_denoising_steps")),
        "domain": calibration.domain.name if calibration is not None and calibration.domain is not None else "open",
        "found_rule": calibration is not None and calibration.found is not None})


def bundled_models() -> list[BundledModel]:
    return [describe(name) for name in BUNDLED_MODELS]
