"""Shapes-Ref functional programs: the evaluator, English rendering, and per-family expression search.

A program is a list of steps (CLEVR-Ref+ style), e.g. the relation expression
"the triangle left of the blue square" is::

    [{"op": "scene"}, {"op": "filter_color", "value": "blue"}, {"op": "filter_shape", "value": "square"},
     {"op": "unique"}, {"op": "relate", "value": "left"}, {"op": "filter_shape", "value": "triangle"},
     {"op": "unique"}]

``evaluate`` runs it over the scene's objects (dicts with shape, color, size, cx, cy) and returns the
selected object indices; an expression is valid only if that is exactly its referent.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

from addp_agent.data.shapes_scene import pick, shuffled

ATTRS = ("size", "color", "shape")  # adjective order in English
SUBSETS: list[tuple[str, ...]] = [s for k in range(4) for s in combinations(ATTRS, k)]
NAMING_ORDER: list[tuple[str, ...]] = sorted(
    SUBSETS[1:], key=lambda s: (len(s), "shape" not in s, "color" not in s)
)  # shortest first; prefer the shape noun, then colour
REGIONS = ("left", "right", "top", "bottom", "top-left", "top-right", "bottom-left", "bottom-right")
RELATIONS = ("left", "right", "above", "below")
DIRECTIONS = ("left", "right", "top", "bottom")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
MARGIN = 3 / 64  # clearance (fraction of the image side) keeping positional words unambiguous

Program = list[dict[str, Any]]


def _in_region(obj: Mapping[str, Any], region: str, side: int) -> bool:
    half = side / 2
    ok = True
    if "left" in region:
        ok &= obj["cx"] < half
    if "right" in region:
        ok &= obj["cx"] >= half
    if "top" in region:
        ok &= obj["cy"] < half
    if "bottom" in region:
        ok &= obj["cy"] >= half
    return ok


def _related(obj: Mapping[str, Any], anchor: Mapping[str, Any], relation: str) -> bool:
    if relation == "left":
        return obj["cx"] < anchor["cx"]
    if relation == "right":
        return obj["cx"] > anchor["cx"]
    if relation == "above":
        return obj["cy"] < anchor["cy"]
    if relation == "below":
        return obj["cy"] > anchor["cy"]
    raise ValueError(f"unknown relation {relation!r}")


def _sort_key(direction: str) -> tuple[str, int]:
    return {"left": ("cx", 1), "right": ("cx", -1), "top": ("cy", 1), "bottom": ("cy", -1)}[direction]


def evaluate(program: Sequence[Mapping[str, Any]], objects: Sequence[Mapping[str, Any]],
             side: int) -> list[int]:
    """Indices the program selects. A failed ``unique`` before ``relate`` selects nothing; ordinal ties
    return every tied object, so any ambiguity shows as a result that is not a single index."""
    current: list[int] = []
    for step in program:
        op, value = step["op"], step.get("value")
        if op == "scene":
            current = list(range(len(objects)))
        elif op.startswith("filter_") and op[7:] in ATTRS:
            current = [i for i in current if objects[i][op[7:]] == value]
        elif op == "filter_region":
            current = [i for i in current if _in_region(objects[i], value, side)]
        elif op == "unique":
            pass  # checked where a single object is required (relate) and by the caller
        elif op == "relate":
            if len(current) != 1:
                return []
            anchor = objects[current[0]]
            others = (i for i in range(len(objects)) if i != current[0])
            current = [i for i in others if _related(objects[i], anchor, value)]
        elif op == "ordinal":
            key, sign = _sort_key(step["from"])
            coords = sorted({sign * objects[i][key] for i in current})
            if not 1 <= value <= len(current) or len(coords) < value:
                return []
            current = [i for i in current if sign * objects[i][key] == coords[value - 1]]
        else:
            raise ValueError(f"unknown program step {step!r}")
    return current


def _noun_phrase(filters: Sequence[Mapping[str, Any]]) -> str:
    values = {step["op"][7:]: step["value"] for step in filters}
    words = [values[a] for a in ("size", "color") if a in values]
    return " ".join([*words, values.get("shape", "shape")])


def render(program: Sequence[Mapping[str, Any]]) -> str:
    """The English expression for a program built by this module (lower-case, starts with "the ")."""
    ops = [s["op"] for s in program]
    if "relate" in ops:
        cut = ops.index("relate")
        anchor = _noun_phrase([s for s in program[:cut] if s["op"].startswith("filter_")])
        target = _noun_phrase([s for s in program[cut:] if s["op"].startswith("filter_")])
        word = {"left": "left of", "right": "right of"}.get(program[cut]["value"], program[cut]["value"])
        return f"the {target} {word} the {anchor}"
    attrs = [s for s in program if s["op"].startswith("filter_") and s["op"] != "filter_region"]
    phrase = _noun_phrase(attrs)
    for step in program:
        if step["op"] == "filter_region":
            region = step["value"]
            if "-" in region:
                return f"the {region} {phrase}"
            return f"the {phrase} {'on the' if region in ('left', 'right') else 'at the'} {region}"
        if step["op"] == "ordinal":
            return f"the {ORDINALS[step['value'] - 1]} {phrase} from the {step['from']}"
    return f"the {phrase}"


def _filters(subset: Sequence[str], obj: Mapping[str, Any]) -> Program:
    return [{"op": f"filter_{a}", "value": obj[a]} for a in subset]


class SceneObjects(list):
    """The scene's object dicts, with attribute groups cached for the expression search."""

    def __init__(self, objects: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(objects)
        self.groups: dict[tuple[str, ...], dict[tuple, list[int]]] = {}

    def matching(self, subset: tuple[str, ...], target: int) -> list[int]:
        """Indices of objects sharing the target's values of ``subset`` (in scene order)."""
        groups = self.groups.get(subset)
        if groups is None:
            groups = self.groups[subset] = {}
            for i, obj in enumerate(self):
                groups.setdefault(tuple(obj[a] for a in subset), []).append(i)
        return groups[tuple(self[target][a] for a in subset)]


def _matching(subset: tuple[str, ...], target: int, objects: Sequence[Mapping[str, Any]]) -> list[int]:
    if isinstance(objects, SceneObjects):
        return objects.matching(subset, target)
    t = objects[target]
    return [i for i, o in enumerate(objects) if all(o[a] == t[a] for a in subset)]


def attribute_program(target: int, objects, rng: random.Random | None = None) -> Program | None:
    """Identifying attribute subset: the shortest (``rng`` None) or a random one favouring short ones."""
    ok = [s for s in NAMING_ORDER if _matching(s, target, objects) == [target]]
    if not ok:
        return None
    subset = ok[0] if rng is None or len(ok) == 1 or rng.random() < 0.6 else pick(rng, ok[1:])
    return [{"op": "scene"}, *_filters(subset, objects[target]), {"op": "unique"}]


def _clear(values: Sequence[float], boundary: float, margin: float) -> bool:
    return all(abs(v - boundary) >= margin for v in values)


def position_program(target: int, objects, side: int, rng: random.Random) -> Program | None:
    """``the [attrs] noun on the left`` / ``the top-left [attrs] noun``: attributes alone are ambiguous."""
    margin, half = MARGIN * side, side / 2
    for subset in shuffled(rng, SUBSETS):
        group = _matching(subset, target, objects)
        if len(group) < 2:
            continue
        for region in shuffled(rng, REGIONS):
            inside = [i for i in group if _in_region(objects[i], region, side)]
            if inside != [target]:
                continue
            xs, ys = [objects[i]["cx"] for i in group], [objects[i]["cy"] for i in group]
            horizontal = "left" in region or "right" in region
            vertical = "top" in region or "bottom" in region
            if (horizontal and not _clear(xs, half, margin)) or (vertical and not _clear(ys, half, margin)):
                continue
            filters = _filters(subset, objects[target])
            return [{"op": "scene"}, *filters, {"op": "filter_region", "value": region}, {"op": "unique"}]
    return None


def relation_program(target: int, objects, side: int, rng: random.Random) -> Program | None:
    """``the [attrs] noun <relation> the <unique anchor>``: target attributes alone are ambiguous."""
    margin = MARGIN * side
    anchors = shuffled(rng, [i for i in range(len(objects)) if i != target])
    for anchor in anchors:
        anchor_program = attribute_program(anchor, objects)
        if anchor_program is None:
            continue
        a = objects[anchor]
        for relation in shuffled(rng, RELATIONS):
            key = "cx" if relation in ("left", "right") else "cy"
            for subset in shuffled(rng, SUBSETS):
                full = _matching(subset, target, objects)
                if len(full) < 2:
                    continue
                group = [i for i in full if i != anchor]
                if [i for i in group if _related(objects[i], a, relation)] != [target]:
                    continue
                if not _clear([objects[i][key] for i in group], a[key], margin):
                    continue
                relate = {"op": "relate", "value": relation}
                return [*anchor_program, relate, *_filters(subset, objects[target]), {"op": "unique"}]
    return None


def ordinal_program(target: int, objects, side: int, rng: random.Random | None,
                    subsets: Sequence[tuple[str, ...]] | None = None) -> Program | None:
    """``the second [attrs] noun from the left`` among >= 2 objects sharing the named attributes
    (``rng`` None: fixed direction order left, top, right, bottom)."""
    margin = MARGIN * side
    for subset in subsets or shuffled(rng, SUBSETS):
        group = _matching(subset, target, objects)
        if len(group) < 2:
            continue
        for direction in DIRECTIONS if rng is None else shuffled(rng, DIRECTIONS):
            key, sign = _sort_key(direction)
            order = sorted(group, key=lambda i: sign * objects[i][key])  # noqa: B023
            k = order.index(target)
            coords = [objects[i][key] for i in order]
            near = coords[max(0, k - 1) : k] + coords[k + 1 : k + 2]
            if k >= len(ORDINALS) or not _clear(near, coords[k], margin):
                continue
            filters = _filters(subset, objects[target])
            return [{"op": "scene"}, *filters, {"op": "ordinal", "value": k + 1, "from": direction},
                    {"op": "unique"}]
    return None


def description_program(index: int, objects, side: int) -> Program | None:
    """Program of the object's own unique shortest description (deterministic): its fewest identifying
    attributes, else an ordinal among its identical twins; ``None`` if nothing is unique."""
    program = attribute_program(index, objects)
    program = program or ordinal_program(index, objects, side, None, subsets=[ATTRS])
    if program is None or evaluate(program, objects, side) != [index]:
        return None
    return program


def shortest_description(index: int, objects, side: int) -> str | None:
    """English form of :func:`description_program`."""
    program = description_program(index, objects, side)
    return None if program is None else render(program)
