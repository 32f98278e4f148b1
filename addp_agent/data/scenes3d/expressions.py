"""Build referring expressions whose programs select exactly the intended targets.

``build(rng, objects, cfg, family, want)``: ``want`` is ``one`` (classic), ``many`` (two or more targets) or ``none``
(a program that selects nothing, from attribute values present in the scene). Spatial words need margins: every
object the words could apply to is at least ``relation_margin`` metres (and ``image_margin`` of the width in the
image, in the same order) from the boundary, so nothing hangs on a borderline case. The evaluator, not this module,
has the last word: callers keep an expression only if :func:`~programs.evaluate` returns its targets.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

from addp_agent.data.scenes3d.config import ScenesConfig
from addp_agent.data.scenes3d.language import Words
from addp_agent.data.scenes3d.programs import (
    ATTRS,
    AXIS,
    DIRECTIONS,
    EXTREMES,
    RELATIONS,
    Objects,
    Program,
    filters,
    matches,
    node,
    ordered,
)

SUBSETS_BY_LENGTH = [list(itertools.combinations(ATTRS, r)) for r in range(len(ATTRS) + 1)]
MAX_RANK = 5
# image-space check per axis fact: (image coordinate, sign relating it to the camera-frame fact)
IMAGE_AXIS = {"right": ("u", 1), "forward": ("v", -1)}


@dataclass
class Expression:
    text: str
    program: Program
    family: str
    targets: list[int]
    description: dict[str, str]  # what the targets' own words say (the last filters)
    spatial: dict[str, Any] = field(default_factory=dict)  # anchor + relation, rank + direction, or extreme


class Context:
    """Per-scene lookups shared by the builders (selections are cached: builders ask for the same ones often)."""

    def __init__(self, rng: random.Random, objects: Objects, cfg: ScenesConfig) -> None:
        self.rng, self.objects, self.cfg = rng, objects, cfg
        self.words = Words(rng, cfg.synonyms)
        self.n = len(objects)
        self.pixel_margin = cfg.image_margin * cfg.size
        self._bits: dict[tuple[str, str], int] = {}
        for j, o in enumerate(objects):
            for a in ATTRS:
                self._bits[a, o[a]] = self._bits.get((a, o[a]), 0) | 1 << j
        self._selected: dict[tuple, list[int]] = {}
        self._subsets: dict[int, list[list[dict[str, str]]]] = {}

    def select(self, description: dict[str, str]) -> list[int]:
        """Indices of the objects that have every attribute value in ``description``."""
        key = tuple(sorted(description.items()))
        found = self._selected.get(key)
        if found is None:
            bits = (1 << self.n) - 1
            for item in key:
                bits &= self._bits.get(item, 0)
            found = [j for j in range(self.n) if bits >> j & 1]
            self._selected[key] = found
        return found

    def descriptions(self, j: int, shuffle: bool = True) -> list[dict[str, str]]:
        """Every attribute subset of object ``j`` (empty first), shorter first, shuffled within a length."""
        groups = self._subsets.get(j)
        if groups is None:
            obj = self.objects[j]
            groups = self._subsets[j] = [[{a: obj[a] for a in subset} for subset in group]
                                         for group in SUBSETS_BY_LENGTH]
        out: list[dict[str, str]] = []
        for group in groups:
            group = list(group)  # the dicts are shared: callers never change them
            if shuffle:
                self.rng.shuffle(group)
            out += group
        return out

    def identifying(self, j: int) -> dict[str, str] | None:
        """A description selecting only ``j``: the shortest 60 % of the time, else a random longer one."""
        options = [d for d in self.descriptions(j) if d and self.select(d) == [j]]
        if not options:
            return None
        shortest = [d for d in options if len(d) == len(options[0])]
        return self.rng.choice(shortest if self.rng.random() < 0.6 else options)

    def related(self, anchor: int, relation: str) -> list[int]:
        fact, sign = AXIS[relation]
        a = self.objects[anchor][fact]
        return [j for j in range(self.n) if j != anchor and sign * (self.objects[j][fact] - a) > 0]

    def separated(self, j: int, k: int, fact: str) -> bool:
        """``j`` and ``k`` are apart along ``fact`` by the margin, in the same order in 3D and in the image."""
        image, sign = IMAGE_AXIS[fact]
        delta = self.objects[j][fact] - self.objects[k][fact]
        delta_image = sign * (self.objects[j][image] - self.objects[k][image])
        return abs(delta) >= self.cfg.relation_margin and delta * delta_image > 0 and \
            abs(delta_image) >= self.pixel_margin

    def clear_relation(self, members: list[int], anchor: int, relation: str) -> bool:
        fact = AXIS[relation][0]
        return all(self.separated(m, anchor, fact) for m in members)

    def clear_order(self, sequence: list[int], direction: str) -> bool:
        fact = AXIS[direction][0]
        return all(self.separated(a, b, fact) for a, b in itertools.pairwise(sequence))


def _relation_program(anchor_desc: dict[str, str], relation: str, target_desc: dict[str, str], unique: bool
                      ) -> Program:
    program = [node("scene", [])]
    program += filters(anchor_desc, 0)
    program.append(node("unique", [len(program) - 1]))
    program.append(node("relate", [len(program) - 1], [relation]))
    program += filters(target_desc, len(program) - 1)
    if unique:
        program.append(node("unique", [len(program) - 1]))
    return program


def _shuffled(rng: random.Random, items) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


def attribute(ctx: Context, want: str) -> Expression | None:
    w, objects = ctx.words, ctx.objects
    if want == "one":
        for t in _shuffled(ctx.rng, range(ctx.n)):
            desc = ctx.identifying(t)
            if desc is not None:
                program = [node("scene", []), *filters(desc, 0)]
                program.append(node("unique", [len(program) - 1]))
                return Expression(f"the {w.noun(desc)}", program, "attribute", [t], desc)
        return None
    if want == "many":
        options = {tuple(sorted(d.items())) for j in range(ctx.n) for d in ctx.descriptions(j) if d}
        groups = [(dict(d), ctx.select(dict(d))) for d in sorted(options)]
        groups = [(d, s) for d, s in groups if 2 <= len(s) < ctx.n or (len(s) >= 2 and "shape" in d)]
        if not groups:
            return None
        desc, chosen = ctx.rng.choice(groups)
        program = [node("scene", []), *filters(desc, 0)]
        return Expression(w.group(len(chosen), w.noun(desc, plural=True)), program, "attribute", chosen, desc)
    present = {a: sorted({o[a] for o in objects}) for a in ATTRS}
    options = []
    for size in (2, 3):
        for subset in itertools.combinations(ATTRS, size):
            for values in itertools.product(*(present[a] for a in subset)):
                desc = dict(zip(subset, values, strict=True))
                if not ctx.select(desc):
                    options.append(desc)
    if not options:
        return None
    desc = ctx.rng.choice(options)
    program = [node("scene", []), *filters(desc, 0)]
    program.append(node("unique", [len(program) - 1]))
    return Expression(f"the {w.noun(desc)}", program, "attribute", [], desc)


def _relation_search(ctx: Context, want: str, anchors: list[int] | None = None):
    """Yield (anchor, anchor description, relation, target description, chosen) meeting ``want``.

    Without ``anchors``, every object with an identifying description is tried as the anchor; with them, those
    objects are (their description is then the caller's business and comes back as ``None``).
    """
    for anchor in anchors if anchors is not None else _shuffled(ctx.rng, range(ctx.n)):
        anchor_desc = None if anchors is not None else ctx.identifying(anchor)
        if anchors is None and anchor_desc is None:
            continue
        for relation in _shuffled(ctx.rng, RELATIONS):
            side = set(ctx.related(anchor, relation))
            found = _target_words(ctx, want, anchor, relation, side)
            if found is not None:
                yield anchor, anchor_desc, relation, *found


def _target_words(ctx: Context, want: str, anchor: int, relation: str, side: set[int]):
    for owner in _shuffled(ctx.rng, range(ctx.n)):
        if owner == anchor or (want != "none" and owner not in side):
            continue
        for desc in ctx.descriptions(owner):
            members = [m for m in ctx.select(desc) if m != anchor]
            chosen = [m for m in members if m in side]
            ok = {"one": len(chosen) == 1 and len(members) >= 2,
                  "many": len(chosen) >= 2 and len(members) > len(chosen),
                  "none": not chosen and bool(members)}[want]
            if ok and ctx.clear_relation(members, anchor, relation):
                return desc, chosen
    return None


def relation(ctx: Context, want: str) -> Expression | None:
    w = ctx.words
    for anchor, anchor_desc, rel, desc, chosen in _relation_search(ctx, want):
        program = _relation_program(anchor_desc, rel, desc, unique=want != "many")
        tail = f"{w.relation(rel)} the {w.noun(anchor_desc)}"
        head = w.group(len(chosen), w.noun(desc, plural=True)) if want == "many" else f"the {w.noun(desc)}"
        return Expression(f"{head} {tail}", program, "relation", chosen, desc,
                          {"anchor": anchor, "relation": rel})
    return None


def chained(ctx: Context, want: str) -> Expression | None:
    """ "the sphere left of the cube behind the yellow cylinder": the anchor is itself found by a relation."""
    if want != "one":
        return None
    w = ctx.words
    for first, first_desc, rel1, mid_desc, mids in _relation_search(ctx, "one"):
        for middle, _, rel2, desc, chosen in _relation_search(ctx, "one", anchors=mids):
            if first in chosen:
                continue
            program = _relation_program(first_desc, rel1, mid_desc, unique=True)
            program.append(node("relate", [len(program) - 1], [rel2]))
            program += filters(desc, len(program) - 1)
            program.append(node("unique", [len(program) - 1]))
            text = (f"the {w.noun(desc)} {w.relation(rel2)} the {w.noun(mid_desc)} {w.relation(rel1)} "
                    f"the {w.noun(first_desc)}")
            return Expression(text, program, "chained", chosen, desc,
                              {"anchor": middle, "relation": rel2, "first": first, "first_relation": rel1})
    return None


def _groups(ctx: Context) -> list[tuple[dict[str, str], list[int]]]:
    """Descriptions that fit two or more objects (so position words are needed), in random order."""
    seen, out = set(), []
    for j in _shuffled(ctx.rng, range(ctx.n)):
        for desc in ctx.descriptions(j):
            key = tuple(sorted(desc.items()))
            members = ctx.select(desc)
            if key not in seen and len(members) >= 2:
                seen.add(key)
                out.append((desc, members))
    ctx.rng.shuffle(out)
    return out


def depth(ctx: Context, want: str) -> Expression | None:
    if want != "one":
        return None
    objects, margin = ctx.objects, ctx.cfg.depth_margin
    for desc, members in _groups(ctx):
        for which in _shuffled(ctx.rng, EXTREMES):
            order = sorted(members, key=lambda j: objects[j]["distance"])
            if which == "farthest":
                order.reverse()
            first, second = objects[order[0]]["distance"], objects[order[1]]["distance"]
            if abs(second - first) >= margin * min(first, second):
                program = [node("scene", []), *filters(desc, 0)]
                program.append(node("filter_extreme", [len(program) - 1], [which]))
                text = f"the {ctx.words.noun(desc)} {ctx.words.extreme(which)}"
                return Expression(text, program, "depth", [order[0]], desc, {"extreme": which})
    return None


def ordinal(ctx: Context, want: str) -> Expression | None:
    if want != "one":
        return None
    for desc, members in _groups(ctx):
        for direction in _shuffled(ctx.rng, DIRECTIONS):
            order = ordered(members, ctx.objects, direction)
            rank = ctx.rng.randint(1, min(MAX_RANK, len(order)))
            if ctx.clear_order(order[: rank + 1], direction):
                program = [node("scene", []), *filters(desc, 0)]
                program.append(node("filter_ordinal", [len(program) - 1], [rank, direction]))
                text = ctx.words.ordinal(rank, direction, ctx.words.noun(desc))
                return Expression(text, program, "ordinal", [order[rank - 1]], desc,
                                  {"rank": rank, "direction": direction})
    return None


BUILDERS = {"attribute": attribute, "relation": relation, "depth": depth, "ordinal": ordinal, "chained": chained}


def build(rng: random.Random, objects: Objects, cfg: ScenesConfig, family: str, want: str) -> Expression | None:
    """An expression of ``family`` with ``want`` targets, or ``None`` when this scene offers none."""
    return BUILDERS[family](Context(rng, objects, cfg), want)


def near_misses(expression: Expression, objects: Objects) -> list[int]:
    """Objects the program comes closest to selecting: all of its constraints but one hold (most first).

    Constraints are the targets' attribute words plus the spatial part (a relation to the actual anchor; a rank
    or an extreme, which only targets meet). Ties rank by attributes shared with a target, then image distance.
    """
    desc, spatial = expression.description, expression.spatial
    relate = None
    if "relation" in spatial:
        fact, sign = AXIS[spatial["relation"]]
        anchor = objects[spatial["anchor"]]
        relate = {j for j, o in enumerate(objects) if j != spatial["anchor"] and sign * (o[fact] - anchor[fact]) > 0}
    total = len(desc) + (1 if spatial else 0)
    if total < 2:
        return []
    reference = objects[expression.targets[0]] if expression.targets else None
    scored = []
    for j, obj in enumerate(objects):
        if j in expression.targets or j == spatial.get("anchor"):
            continue
        met = matches(obj, desc) + (1 if relate is not None and j in relate else 0)
        if met >= total - 1:
            shared = matches(obj, {a: reference[a] for a in ATTRS}) if reference else 0
            distance = ((obj["u"] - reference["u"]) ** 2 + (obj["v"] - reference["v"]) ** 2) if reference else 0.0
            scored.append((-met, -shared, distance, j))
    return [j for *_, j in sorted(scored)]


def unique_name(ctx: Context, j: int) -> tuple[str, Program]:
    """An object's own shortest description (an ordinal from the left for identical twins) and its program."""
    desc = next((d for d in ctx.descriptions(j, shuffle=False) if d and ctx.select(d) == [j]), None)
    w = Words(random.Random(0), False)
    if desc is not None:
        program = [node("scene", []), *filters(desc, 0)]
        program.append(node("unique", [len(program) - 1]))
        return f"the {w.noun(desc)}", program
    desc = {a: ctx.objects[j][a] for a in ATTRS}
    order = ordered(ctx.select(desc), ctx.objects, "left")
    rank = order.index(j) + 1
    program = [node("scene", []), *filters(desc, 0)]
    program.append(node("filter_ordinal", [len(program) - 1], [rank, "left"]))
    return w.ordinal(rank, "left", w.noun(desc)), program
