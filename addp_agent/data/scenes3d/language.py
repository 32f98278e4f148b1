"""Words: object descriptions, relation and ordinal phrases, plurals, and the scene caption.

With ``synonyms`` off every concept has one word (the first listed); with it on, a word is drawn from the list.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

SYNONYMS: dict[str, tuple[str, ...]] = {
    "large": ("large", "big"), "small": ("small", "tiny"), "medium": ("medium", "midsize"),
    "metal": ("metal", "metallic", "shiny"), "rubber": ("rubber", "matte"),
    "sphere": ("sphere", "ball"), "cube": ("cube", "block"), "cylinder": ("cylinder",), "cone": ("cone",),
    "object": ("object", "thing"),
    "left": ("left of", "to the left of"), "right": ("right of", "to the right of"),
    "front": ("in front of",), "behind": ("behind",),
    "nearest": ("nearest to the camera", "closest to the camera"),
    "farthest": ("farthest from the camera", "furthest from the camera"),
}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
EXTREMES_1 = {"left": "leftmost", "right": "rightmost"}
ADJECTIVES = ("size", "color", "material")


class Words:
    """Word choice for one expression (deterministic given the rng)."""

    def __init__(self, rng: random.Random, synonyms: bool) -> None:
        self.rng, self.synonyms = rng, synonyms

    def word(self, concept: str) -> str:
        options = SYNONYMS.get(concept, (concept,))
        return self.rng.choice(options) if self.synonyms and len(options) > 1 else options[0]

    def noun(self, description: dict[str, str], plural: bool = False) -> str:
        """``[size] [colour] [material] shape`` (or object/thing), optionally plural."""
        words = [self.word(description[a]) for a in ADJECTIVES if a in description]
        noun = self.word(description.get("shape", "object"))
        return " ".join([*words, noun + ("s" if plural else "")])

    def relation(self, relation: str) -> str:
        return self.word(relation)

    def extreme(self, which: str) -> str:
        return self.word(which)

    def ordinal(self, rank: int, direction: str, thing: str) -> str:
        if rank == 1 and direction in EXTREMES_1 and (not self.synonyms or self.rng.random() < 0.5):
            return f"the {EXTREMES_1[direction]} {thing}"
        return f"the {ORDINALS[rank - 1]} {thing} from the {direction}"

    def group(self, count: int, thing_plural: str) -> str:
        """A multi-target phrase: "both spheres", "the two spheres", "all the cubes", "all three cubes"."""
        if count == 2:
            return self.rng.choice((f"both {thing_plural}", f"the two {thing_plural}"))
        return self.rng.choice((f"all the {thing_plural}", f"all {NUMBERS[count]} {thing_plural}"
                                if count < len(NUMBERS) else f"all the {thing_plural}"))


def article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def caption(objects: Sequence[dict[str, Any]], floor: str) -> str:
    """What a captioner could say: "five objects on a grey floor: a large blue metal cube, …" (left to right)."""
    order = sorted(range(len(objects)), key=lambda j: objects[j]["u"])
    parts = [article(" ".join(objects[j][a] for a in (*ADJECTIVES, "shape"))) for j in order]
    listing = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    count = NUMBERS[len(objects)] if len(objects) < len(NUMBERS) else str(len(objects))
    return f"{count} object{'s' if len(objects) != 1 else ''} on {article(floor)} floor, from left to right: {listing}"
