"""Data source specs -> iterables of :class:`RISSample`, and data set statistics.

Specs:

- ``shapes:<dir>``: an exported Shapes-Ref folder (REFER or CRIS layout, detected);
- ``shapes-gen:<n>[:<seed>[:<size>[:<preset>]]]``: Shapes-Ref generated on the fly (preset ``default`` or
  ``crowded``: 5-6 look-alike objects, relation and ordinal expressions only);
- ``scenes-gen:<n>[:<seed>[:<size>[:<preset>[:<mode>]]]][:<knob>=<value>...]``: Scenes-3D generated on the fly;
- ``scenes:<dir>``: an exported Scenes-3D folder (gRefCOCO, REFER, CRIS or CLEVR-Ref+ layout, detected);
- ``refer:<root>:<dataset>:<splitBy>`` (e.g. ``refer:data:refcoco:unc``);
- ``cris:<root>:<dataset>`` (e.g. ``cris:data:refcoco``);
- ``grefcoco:<root>[:<dataset>[:<splitBy>]]`` (gRefCOCO: no-target and multi-target expressions);
- ``clevr-ref:<root>`` (CLEVR-Ref+: ``scenes/``, ``refexps/``, ``images/<split>/``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from addp_agent.data.cris import CrisDataset
from addp_agent.data.refer import ReferDataset
from addp_agent.data.sample import RISSample
from addp_agent.data.shapes import DATASET, ShapesRef, ShapesRefConfig
from addp_agent.data.shapes import SPLITS as SHAPES_SPLITS
from addp_agent.errors import DataError, SplitError, UserError
from addp_agent.limits import MAX_SEED

SPEC_HELP = ("shapes:<dir>, shapes-gen:<n>[:<seed>[:<size>[:<preset>]]], scenes:<dir>, "
             "scenes-gen:<n>[:<seed>[:<size>[:<preset>[:<mode>]]]], refer:<root>:<dataset>:<splitBy>, "
             "cris:<root>:<dataset>, grefcoco:<root>[:<dataset>[:<splitBy>]], clevr-ref:<root>")
SCENES = "scenes3d"
# shapes-gen presets; "crowded": 5-6 look-alike objects, relation and ordinal expressions only (the confusable case)
SHAPES_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "crowded": {"min_objects": 5, "max_objects": 6, "similarity": 1.0,
                "family_weights": {"relation": 0.5, "ordinal": 0.5}},
}


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


def scenes_layouts(folder: str | Path) -> list[str]:
    """Which exported layouts (``grefs`` / ``refer`` / ``cris`` / ``clevr-ref``) a Scenes-3D folder holds."""
    folder = Path(folder)
    checks = {"grefs": (folder / SCENES / "grefs(unc).json").is_file(),
              "refer": (folder / SCENES / "refs(unc).p").is_file(),
              "cris": (folder / "anns" / SCENES).is_dir(),
              "clevr-ref": any((folder / "refexps").glob("clevr_ref+_*_refexps.json"))}
    return [name for name, present in checks.items() if present]


def scenes_splits(folder: str | Path, layout: str) -> list[str]:
    """Splits present in an exported Scenes-3D folder."""
    folder = Path(folder)
    if layout == "cris":
        return sorted(p.stem for p in (folder / "anns" / SCENES).glob("*.json"))
    if layout == "clevr-ref":
        return sorted(p.name[len("clevr_ref+_"):-len("_refexps.json")]
                      for p in (folder / "refexps").glob("clevr_ref+_*_refexps.json"))
    from addp_agent.data.refer import read_json
    from addp_agent.data.safe_pickle import load_plain

    refs = read_json(folder / SCENES / "grefs(unc).json") if layout == "grefs" else \
        load_plain(folder / SCENES / "refs(unc).p")
    return sorted({str(r.get("split")) for r in refs if isinstance(r, dict)})


def open_layout(folder: str | Path, dataset: str, layout: str, split: str, skip_bad: bool = False
                ) -> Iterable[RISSample]:
    """The loader of one exported layout."""
    if layout == "refer":
        return ReferDataset(folder, dataset, "unc", split, skip_bad=skip_bad)
    if layout == "cris":
        return CrisDataset(folder, dataset, split, skip_bad=skip_bad)
    if layout == "grefs":
        from addp_agent.data.grefcoco import GRefDataset

        return GRefDataset(folder, dataset, "unc", split, skip_bad=skip_bad)
    from addp_agent.data.clevr_ref import ClevrRefDataset

    return ClevrRefDataset(folder, split, skip_bad=skip_bad)


def load_source(spec: str, split: str, skip_bad: bool = False) -> Iterable[RISSample]:
    """Open a data source spec for ``split`` (see module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind == "shapes-gen":
        n, seed, size, preset = parse_shapes_gen(spec)
        if split not in SHAPES_SPLITS:
            raise SplitError(f"{spec}: unknown split {split!r}; Shapes-Ref has {', '.join(SHAPES_SPLITS)}")
        return ShapesRef(split, n, seed, ShapesRefConfig(size=size, **SHAPES_PRESETS[preset]))
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
    if kind == "scenes" and rest:
        layouts = scenes_layouts(rest)
        if not layouts:
            raise DataError(f"{rest}: no exported Scenes-3D found (run `addp data scenes --out {rest}`)")
        return open_layout(rest, SCENES, layouts[0], split, skip_bad)
    if kind == "grefcoco" and rest:
        from addp_agent.data.grefcoco import GRefDataset

        parts = rest.split(":")
        if len(parts) > 3:
            raise UserError(f"bad source {spec!r}; expected grefcoco:<root>[:<dataset>[:<splitBy>]]")
        dataset, split_by = (parts[1:] + ["grefcoco", "unc"][len(parts) - 1:])[:2]
        return GRefDataset(parts[0], dataset, split_by, split, skip_bad=skip_bad)
    if kind == "clevr-ref" and rest:
        return open_layout(rest, "", "clevr-ref", split, skip_bad)
    if kind == "refer" and rest.count(":") >= 2:
        root, dataset, split_by = rest.rsplit(":", 2)
        return ReferDataset(root, dataset, split_by, split, skip_bad=skip_bad)
    if kind == "cris" and rest.count(":") >= 1:
        root, dataset = rest.rsplit(":", 1)
        return CrisDataset(root, dataset, split, skip_bad=skip_bad)
    raise UserError(f"unknown data source {spec!r}; use one of: {SPEC_HELP}")


def parse_shapes_gen(spec: str) -> tuple[int, int, int, str]:
    """``shapes-gen:<n>[:<seed>[:<size>[:<preset>]]]`` → (n ≥ 1, seed ≥ 0, size in 32..1024, a preset of
    :data:`SHAPES_PRESETS`); one :class:`UserError` naming the bad part otherwise."""
    expected = f"expected shapes-gen:<n>[:<seed>[:<size>[:<preset>]]] with a preset from {', '.join(SHAPES_PRESETS)}"
    parts = spec.partition(":")[2].split(":")
    preset = parts.pop() if len(parts) == 4 else "default"
    if preset not in SHAPES_PRESETS:
        raise UserError(f"bad source {spec!r}: unknown preset {preset!r} ({expected})")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise UserError(f"bad source {spec!r}; n, seed and size are whole numbers ({expected})") from None
    if not 1 <= len(values) <= 3:
        raise UserError(f"bad source {spec!r}; {expected}")
    n, seed, size = values + [0, 64][len(values) - 1 :]
    if n < 1:
        raise UserError(f"bad source {spec!r}: n must be ≥ 1 (the number of samples), got {n}")
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"bad source {spec!r}: seed must be in 0..{MAX_SEED}, got {seed}")
    field = ShapesRefConfig.model_fields["size"]
    low, high = (next(m for m in field.metadata if hasattr(m, bound)) for bound in ("ge", "le"))
    if not low.ge <= size <= high.le:
        raise UserError(f"bad source {spec!r}: size must be in {low.ge}..{high.le} pixels, got {size}")
    return n, seed, size, preset


def dataset_stats(samples: Iterable[RISSample]) -> dict[str, Any]:
    """Counts per family and per number of targets, confusable share, objects per image, mean target / object area
    (pixels and image fraction) and, when the samples know their objects' visibility (Scenes-3D), occlusion."""
    families: Counter = Counter()
    targets: Counter = Counter()
    per_image: Counter = Counter()
    n = confusable = objects = 0
    target_px = object_px = target_frac = 0.0
    fractions: list[float] = []
    for sample in samples:
        n += 1
        families[sample.family or "unknown"] += 1
        targets[sample.n_targets] += 1
        confusable += sample.confusable
        pixels = sample.mask.size
        target_px += int(sample.mask.sum())
        target_frac += sample.mask.sum() / pixels
        count = sample.n_targets + len(sample.others)
        objects += count
        per_image[count] += 1
        object_px += sum(int(m.sum()) for m in sample.target_masks) + sum(int(o.mask.sum()) for o in sample.others)
        fractions += [o["visible_fraction"] for o in (sample.meta or {}).get("objects", [])
                      if isinstance(o, dict) and "visible_fraction" in o]
    if n == 0:
        return {"n": 0}
    report = {"n": n, "families": dict(sorted(families.items())),
              "family_share": {k: round(v / n, 4) for k, v in sorted(families.items())},
              "targets": {str(k): v for k, v in sorted(targets.items())},
              "confusable_share": round(confusable / n, 4), "objects_per_image": round(objects / n, 3),
              "objects_histogram": {str(k): v for k, v in sorted(per_image.items())},
              "mean_target_area_px": round(target_px / n, 2),
              "mean_target_area_frac": round(float(target_frac) / n, 5),
              "mean_object_area_px": round(object_px / max(objects, 1), 2)}
    if fractions:
        visible = np.asarray(fractions)
        report["occlusion"] = {"mean_visible_fraction": round(float(visible.mean()), 4),
                               "occluded_share": round(float((visible < 0.99).mean()), 4),
                               "under_half_visible_share": round(float((visible < 0.5).mean()), 4)}
    return report
