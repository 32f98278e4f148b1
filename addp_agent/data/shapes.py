"""Shapes-Ref: a deterministic 2-D CLEVR-Ref+-style RIS benchmark (see docs/shapes-ref.md).

``generate_sample(split, index, seed, config)`` draws a scene, picks an expression family by weight,
builds a program whose evaluation over the scene selects exactly the target, and returns a
:class:`RISSample`. Splits are disjoint seed streams: ``SeedSequence([seed, split_id, index])``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from addp_agent.data.sample import Instance, RISSample
from addp_agent.data.shapes_programs import (
    ATTRS,
    SceneObjects,
    attribute_program,
    evaluate,
    ordinal_program,
    position_program,
    relation_program,
    render,
    shortest_description,
)
from addp_agent.data.shapes_scene import (
    FAMILIES,
    PALETTE,
    SHAPES,
    ShapesRefConfig,
    sample_scene,
    shuffled,
)
from addp_agent.data.shapes_scene import render as render_image
from addp_agent.errors import SplitError, UserError
from addp_agent.limits import MAX_GENERATED

__all__ = ["FAMILIES", "PALETTE", "SHAPES", "SPLITS", "ShapesRef", "ShapesRefConfig", "generate_sample",
           "sample_number"]

SPLITS = {"train": 0, "val": 1, "test": 2}
ID_STRIDE = MAX_GENERATED  # image/ref id = split_id * ID_STRIDE + index
DATASET = "shapes"
_DEFAULT_CONFIG = ShapesRefConfig()


def sample_number(split: str, index: int) -> int:
    """Integer image/ref id of a sample (unique across splits)."""
    if split not in SPLITS:
        raise SplitError(f"unknown Shapes-Ref split {split!r}; use one of {sorted(SPLITS)}")
    if not 0 <= index < ID_STRIDE:
        raise UserError(f"sample index {index} out of range [0, {ID_STRIDE})")
    return SPLITS[split] * ID_STRIDE + index


def _pick_family(rng: random.Random, weights: dict[str, float]) -> str:
    names = [f for f in FAMILIES if weights.get(f, 0.0) > 0]
    total = sum(weights[f] for f in names)
    r = rng.random() * total
    for name in names:
        r -= weights[name]
        if r < 0:
            return name
    return names[-1]


def _build(family: str, target: int, objects: list[dict], side: int, rng: random.Random):
    if family == "attribute":
        return attribute_program(target, objects, rng)
    if family == "position":
        return position_program(target, objects, side, rng)
    if family == "relation":
        return relation_program(target, objects, side, rng)
    return ordinal_program(target, objects, side, rng)


def _distractors(target: dict, others: list[dict]) -> list[int]:
    """Others sharing >= 2 of (shape, colour, size) with the target: most shared, then nearest, first."""
    scored = []
    for k, obj in enumerate(others):
        shared = sum(obj[a] == target[a] for a in ATTRS)
        if shared >= 2:
            distance = (obj["cx"] - target["cx"]) ** 2 + (obj["cy"] - target["cy"]) ** 2
            scored.append((-shared, distance, k))
    return [k for _, _, k in sorted(scored)]


def generate_sample(split: str, index: int, seed: int = 0,
                    config: ShapesRefConfig | None = None) -> RISSample:
    """Deterministic Shapes-Ref sample ``index`` of ``split`` (``train`` / ``val`` / ``test``)."""
    cfg = config or _DEFAULT_CONFIG
    number = sample_number(split, index)
    state = np.random.SeedSequence([seed, SPLITS[split], index]).generate_state(3, dtype=np.uint64)
    rng = random.Random(int(state[0]) << 64 | int(state[1]))
    side = cfg.size
    family = _pick_family(rng, cfg.family_weights)
    for _ in range(500):
        scene = sample_scene(rng, cfg)
        if scene is None:
            continue
        objects = SceneObjects([o.attrs for o in scene])
        for target in shuffled(rng, range(len(objects))):
            program = _build(family, target, objects, side, rng)
            if program is not None:
                break
        else:
            continue
        if evaluate(program, objects, side) != [target]:
            continue  # the evaluator, not the construction, decides uniqueness
        names = [shortest_description(j, objects, side) for j in range(len(objects))]
        if any(name is None for name in names):
            continue
        break
    else:
        raise RuntimeError(f"could not build a {family} expression for {split}/{index} (seed {seed})")
    keep = [j for j in range(len(scene)) if j != target]
    others = [Instance(mask=scene[j].visible, name=names[j], instance_id=str(number * 10 + j)) for j in keep]
    distractors = _distractors(objects[target], [objects[j] for j in keep])
    return RISSample(
        sample_id=f"{DATASET}-{split}-{index:06d}",
        image=render_image(scene, cfg, int(state[2])),
        expression=render(program),
        mask=scene[target].visible,
        image_id=str(number),
        ref_id=str(number),
        others=others,
        distractors=distractors,
        family=family,
        program=program,
        confusable=bool(distractors),
        meta={"dataset": DATASET, "split": split, "index": index, "seed": seed, "size": side,
              "objects": list(objects), "target": target, "target_description": names[target]},
    )


class ShapesRef(Sequence[RISSample]):
    """``n`` samples of one split, generated on demand (optionally cached)."""

    def __init__(self, split: str, n: int, seed: int = 0, config: ShapesRefConfig | None = None,
                 cache: bool = False) -> None:
        sample_number(split, max(0, n - 1))  # validates split and range
        self.split, self.n, self.seed = split, n, seed
        self.config = config or ShapesRefConfig()
        self._cache: dict[int, RISSample] | None = {} if cache else None

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> RISSample: ...
    @overload
    def __getitem__(self, index: slice) -> list[RISSample]: ...

    def __getitem__(self, index: int | slice) -> RISSample | list[RISSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.n))]
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        sample = generate_sample(self.split, index, self.seed, self.config)
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def __iter__(self) -> Iterator[RISSample]:
        for i in range(self.n):
            yield self[i]
