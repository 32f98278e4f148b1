"""Data source specs -> iterables of :class:`RISSample`, and data set statistics.

Specs:

- ``shapes:<dir>``: an exported Shapes-Ref folder (REFER or CRIS layout, detected);
- ``shapes-gen:<n>[:<seed>[:<size>]]``: Shapes-Ref generated on the fly;
- ``scenes-gen:<n>[:<seed>[:<size>[:<preset>[:<mode>]]]][:<knob>=<value>...]``: Scenes-3D generated on the fly;
- ``refer:<root>:<dataset>:<splitBy>`` (e.g. ``refer:data:refcoco:unc``);
- ``cris:<root>:<dataset>`` (e.g. ``cris:data:refcoco``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from addp_agent.data.cris import CrisDataset
from addp_agent.data.refer import ReferDataset
from addp_agent.data.sample import RISSample
from addp_agent.data.shapes import DATASET, ShapesRef, ShapesRefConfig
from addp_agent.errors import DataError, UserError

SPEC_HELP = ("shapes:<dir>, shapes-gen:<n>[:<seed>[:<size>]], scenes-gen:<n>[:<seed>[:<size>[:<preset>[:<mode>]]]], "
             "refer:<root>:<dataset>:<splitBy>, cris:<root>:<dataset>")


def shapes_layouts(folder: str | Path) -> list[str]:
    """Which exported layouts (``refer`` / ``cris``) a Shapes-Ref folder holds."""
    folder = Path(folder)
    found = []
    if (folder / DATASET / "refs(unc).p").is_file():
        found.append("refer")
    if (folder / "anns" / DATASET).is_dir():
        found.append("cris")
    return found


def shapes_splits(folder: str | Path, layout: str) -> list[str]:
    """Splits present in an exported folder (from the CRIS file names or the REFER refs)."""
    folder = Path(folder)
    if layout == "cris":
        return sorted(p.stem for p in (folder / "anns" / DATASET).glob("*.json"))
    from addp_agent.data.safe_pickle import load_plain

    refs = load_plain(folder / DATASET / "refs(unc).p")
    return sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})


def load_source(spec: str, split: str, skip_bad: bool = False) -> Iterable[RISSample]:
    """Open a data source spec for ``split`` (see module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "shapes-gen":
        try:
            values = [int(part) for part in rest.split(":")]
            if not 1 <= len(values) <= 3:
                raise ValueError(rest)
            n, seed, size = values + [0, 64][len(values) - 1 :]
            return ShapesRef(split, n, seed, ShapesRefConfig(size=size))
        except ValueError:
            raise UserError(f"bad source {spec!r}; expected shapes-gen:<n>[:<seed>[:<size>]]") from None
    if kind == "scenes-gen":
        from addp_agent.data.scenes3d import ScenesRef, parse_spec

        n, seed, config = parse_spec(rest)
        return ScenesRef(split, n, seed, config)
    if kind == "shapes" and rest:
        layouts = shapes_layouts(rest)
        if not layouts:
            raise DataError(f"{rest}: no exported Shapes-Ref found (run `addp data shapes --out {rest}`)")
        if layouts[0] == "refer":
            return ReferDataset(rest, DATASET, "unc", split, skip_bad=skip_bad)
        return CrisDataset(rest, DATASET, split, skip_bad=skip_bad)
    if kind == "refer" and rest.count(":") >= 2:
        root, dataset, split_by = rest.rsplit(":", 2)
        return ReferDataset(root, dataset, split_by, split, skip_bad=skip_bad)
    if kind == "cris" and rest.count(":") >= 1:
        root, dataset = rest.rsplit(":", 1)
        return CrisDataset(root, dataset, split, skip_bad=skip_bad)
    raise UserError(f"unknown data source {spec!r}; use one of: {SPEC_HELP}")


def dataset_stats(samples: Iterable[RISSample]) -> dict[str, Any]:
    """Counts per family, confusable share, mean target / object area (pixels and image fraction)."""
    families: Counter = Counter()
    n = confusable = objects = 0
    target_px = object_px = target_frac = 0.0
    for sample in samples:
        n += 1
        families[sample.family or "unknown"] += 1
        confusable += sample.confusable
        pixels = sample.mask.size
        target_px += int(sample.mask.sum())
        target_frac += sample.mask.sum() / pixels
        objects += 1 + len(sample.others)
        object_px += int(sample.mask.sum()) + sum(int(o.mask.sum()) for o in sample.others)
    if n == 0:
        return {"n": 0}
    return {"n": n, "families": dict(sorted(families.items())),
            "family_share": {k: round(v / n, 4) for k, v in sorted(families.items())},
            "confusable_share": round(confusable / n, 4), "objects_per_image": round(objects / n, 3),
            "mean_target_area_px": round(target_px / n, 2),
            "mean_target_area_frac": round(float(target_frac) / n, 5),
            "mean_object_area_px": round(object_px / objects, 2)}
