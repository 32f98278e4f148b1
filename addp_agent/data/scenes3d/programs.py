"""Referring programs (CLEVR-Ref+ style node lists) and their evaluator over a scene's object facts.

A program is a list of nodes ``{"type", "inputs", "value_inputs"}``; ``inputs`` index earlier nodes. The selection
is the last node's output. Object facts (``meta["objects"]``) carry the attributes plus camera-frame coordinates of
the object's centre: ``right`` and ``forward`` (metres along the camera's right and forward axes projected onto the
ground, CLEVR's convention) and ``distance`` (metres to the camera centre).

Node types: ``scene``; ``filter_size|color|material|shape`` [value]; ``unique`` (the set if it has one member, else
nothing); ``relate`` [left|right|front|behind] of a one-object input (the anchor is excluded); ``filter_ordinal``
[k, left|right|front|back] (the k-th, 1-based); ``filter_extreme`` [nearest|farthest] (to the camera).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ATTRS = ("size", "color", "material", "shape")
RELATIONS = ("left", "right", "front", "behind")
DIRECTIONS = ("left", "right", "front", "back")
EXTREMES = ("nearest", "farthest")
# relation / ordinal direction -> (fact, sign): "j is left of a" means right_j < right_a
AXIS = {"left": ("right", -1), "right": ("right", 1), "front": ("forward", -1), "behind": ("forward", 1),
        "back": ("forward", 1)}

Program = list[dict[str, Any]]
Objects = Sequence[dict[str, Any]]


def node(kind: str, inputs: list[int], values: list[Any] | None = None) -> dict[str, Any]:
    return {"type": kind, "inputs": inputs, "value_inputs": list(values or [])}


def filters(description: dict[str, str], start: int) -> list[dict[str, Any]]:
    """Filter nodes for ``description`` (in ATTRS order) chained after node ``start``."""
    out = []
    for attr in ATTRS:
        if attr in description:
            out.append(node(f"filter_{attr}", [start + len(out)], [description[attr]]))
    return out


def ordered(selection: list[int], objects: Objects, direction: str) -> list[int]:
    fact, sign = AXIS[direction]
    return sorted(selection, key=lambda j: sign * objects[j][fact])


def _run(step: dict[str, Any], inputs: list[list[int]], objects: Objects) -> list[int]:
    kind, values = step["type"], step.get("value_inputs", [])
    if kind == "scene":
        return list(range(len(objects)))
    if kind.startswith("filter_") and kind[7:] in ATTRS:
        return [j for j in inputs[0] if objects[j][kind[7:]] == values[0]]
    if kind == "unique":
        return inputs[0] if len(inputs[0]) == 1 else []
    if kind == "relate":
        if len(inputs[0]) != 1:
            return []
        anchor = inputs[0][0]
        fact, sign = AXIS[values[0]]
        return [j for j in range(len(objects))
                if j != anchor and sign * (objects[j][fact] - objects[anchor][fact]) > 0]
    if kind == "intersect":
        return sorted(set(inputs[0]) & set(inputs[1]))
    if kind == "filter_ordinal":
        rank = int(values[0])
        order = ordered(inputs[0], objects, values[1])
        return [order[rank - 1]] if 1 <= rank <= len(order) else []
    if kind == "filter_extreme":
        if not inputs[0]:
            return []
        pick = min if values[0] == "nearest" else max
        return [pick(inputs[0], key=lambda j: objects[j]["distance"])]
    raise ValueError(f"unknown program node {kind!r}")


def evaluate(program: Program, objects: Objects) -> list[int]:
    """The sorted object indices the program selects in this scene."""
    outputs: list[list[int]] = []
    for step in program:
        outputs.append(_run(step, [outputs[i] for i in step.get("inputs", [])], objects))
    return sorted(outputs[-1]) if outputs else []


def matches(obj: dict[str, Any], description: dict[str, str]) -> int:
    """How many of ``description``'s attribute values ``obj`` has."""
    return sum(obj[a] == v for a, v in description.items())


def select(objects: Objects, description: dict[str, str]) -> list[int]:
    return [j for j, o in enumerate(objects) if matches(o, description) == len(description)]
