"""Words the self-consistency critic builds candidate names from: general English lexicons of colours, materials,
sizes and solid/shape nouns, kept only where the model's own tokenizer knows the word.

Nothing here comes from a scene: no generator object list, no annotation. A synonym group contributes its first
word the model knows (one candidate per meaning keeps the naming pass small). The nouns cover the synthetic worlds
(2-D shapes, 3-D solids); models of real photographs want a larger noun list (``Lexicon(...)`` takes any).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

COLOURS: tuple[tuple[str, ...], ...] = (
    ("red",), ("green",), ("blue",), ("yellow",), ("purple", "violet"), ("cyan", "turquoise"), ("white",),
    ("gray", "grey"), ("black",), ("orange",), ("pink",), ("brown",), ("magenta",), ("teal",), ("beige",))
MATERIALS: tuple[tuple[str, ...], ...] = (("metal", "metallic", "shiny"), ("rubber", "matte"), ("wooden", "wood"),
                                          ("glass",), ("plastic",))
SIZES: tuple[tuple[str, ...], ...] = (("small", "little", "tiny"), ("large", "big"), ("medium", "midsize"))
NOUNS: tuple[tuple[str, ...], ...] = (
    ("circle",), ("square",), ("triangle",), ("star",), ("diamond",), ("hexagon",), ("cross",), ("ring",),
    ("rectangle",), ("ellipse",), ("heart",), ("pentagon",), ("sphere", "ball"), ("cube", "block"),
    ("cylinder",), ("cone",), ("pyramid",), ("torus",))
GENERIC: tuple[str, ...] = ("object", "shape", "thing")


def _pick(groups: tuple[tuple[str, ...], ...], known: Callable[[str], bool]) -> tuple[str, ...]:
    """The first known word of each group that has one, in the groups' order."""
    return tuple(next(w for w in group if known(w)) for group in groups if any(map(known, group)))


@dataclass(frozen=True)
class Lexicon:
    """The candidate words of one model, by role (each tuple in a fixed order)."""

    colours: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    nouns: tuple[str, ...]
    generic: tuple[str, ...]

    @classmethod
    def for_words(cls, known_words: Collection[str]) -> Lexicon:
        """The lexicon restricted to ``known_words`` (the model tokenizer's whole words)."""
        known = known_words.__contains__
        return cls(colours=_pick(COLOURS, known), materials=_pick(MATERIALS, known), sizes=_pick(SIZES, known),
                   nouns=_pick(NOUNS, known), generic=tuple(w for w in GENERIC if known(w)))

    def __len__(self) -> int:
        return len(self.colours) + len(self.materials) + len(self.sizes) + len(self.nouns) + len(self.generic)
