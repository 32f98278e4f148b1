"""`addp data`: generate and export Shapes-Ref, and summarise exported data sets (Scenes-3D: ``data_scenes``)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from addp_agent.cli.app import app
from addp_agent.cli.options import config_options
from addp_agent.data.shapes_scene import ShapesRefConfig
from addp_agent.errors import UserError, validation_message
from addp_agent.limits import MAX_GENERATED, MAX_SEED

data_app = typer.Typer(help="Data sets: generate Shapes-Ref or Scenes-3D, print statistics.", no_args_is_help=True)
app.add_typer(data_app, name="data")

FORMATS = ("refer", "cris")


@data_app.command("shapes")
@config_options(ShapesRefConfig, into="scene", only=("size", "background", "overlap"))
def shapes(
    scene: dict[str, Any],
    out: Path = typer.Option(..., "--out", help="output folder (splits merge into it)"),
    split: str = typer.Option("train", "--split", help="train, val or test"),
    n: int = typer.Option(1000, "--n", min=1, max=MAX_GENERATED, help="number of samples"),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="base seed (splits use disjoint streams)"),
    fmt: str = typer.Option("cris", "--format", help="refer or cris layout"),
    dataset_name: str = typer.Option("shapes", "--dataset-name", help="REFER/CRIS folder name; the official REFER "
                                     "class accepts refcoco, refcoco+, refcocog, refclef"),
) -> None:
    """Generate Shapes-Ref samples and export them in the REFER or CRIS layout."""
    from addp_agent.data.export import check_manifest, export_cris, export_refer, write_manifest
    from addp_agent.data.shapes import SPLITS, ShapesRef
    from addp_agent.outputs_io import check_output_folder, output_set

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {list(FORMATS)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+.-]*", dataset_name):
        raise UserError(f"bad --dataset-name {dataset_name!r}; use letters, digits, _ + . -")
    try:
        config = ShapesRefConfig(**scene)
    except ValidationError as error:
        raise UserError(f"bad Shapes-Ref option: {validation_message(error)}") from None
    check_output_folder(out)
    manifest = check_manifest(out, fmt, split, seed, config)
    start = time.perf_counter()
    samples = ShapesRef(split, n, seed, config)
    with output_set(out, keep=True) as staging:  # the folder holds the old export or the new one, never a mix
        count = (export_refer if fmt == "refer" else export_cris)(samples, staging, split, dataset_name)
        write_manifest(staging, manifest)
    seconds = time.perf_counter() - start
    typer.echo(f"wrote {count} {split} samples ({fmt} layout, {config.size} px) to {out} in {seconds:.1f} s")


@data_app.command("stats")
def stats(
    folder: Path = typer.Argument(..., help="a folder written by `addp data shapes` or `addp data scenes`"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Counts per expression family and per number of targets, confusable share, objects, occlusion and areas, per
    layout and split (depth folders: depth range and valid share)."""
    from addp_agent.data.shapes import DATASET
    from addp_agent.data.sources import (
        SCENES,
        dataset_stats,
        open_layout,
        scenes_layouts,
        scenes_splits,
        shapes_layouts,
        shapes_splits,
    )

    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    report: dict[str, dict] = {}
    for layout in shapes_layouts(folder):
        for split in shapes_splits(folder, layout):
            report[f"{layout}/{split}"] = dataset_stats(open_layout(folder, DATASET, layout, split))
    for layout in scenes_layouts(folder):
        for split in scenes_splits(folder, layout):
            report[f"{layout}/{split}"] = dataset_stats(open_layout(folder, SCENES, layout, split))
    if (folder / "filename_list.txt").is_file():
        report["depth"] = _depth_stats(folder)
    if not report:
        expected = f"{DATASET}/refs(unc).p, anns/{DATASET}/, {SCENES}/grefs(unc).json or filename_list.txt"
        raise UserError(f"{folder}: no Shapes-Ref / Scenes-3D export found (expected {expected})")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_table(report)


def _depth_stats(folder: Path) -> dict:
    import numpy as np
    from PIL import Image

    values, total, n = [], 0, 0
    listing = folder / "filename_list.txt"
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:  # no read permission, not a text file
        raise UserError(f"{listing}: cannot read the list file ({getattr(error, 'strerror', None) or error})") \
            from None
    for line in lines:
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            depth = np.asarray(Image.open(folder / parts[1]), dtype=np.float64) / 1000.0
        except OSError as error:
            raise UserError(f"{folder / parts[1]}: cannot read depth ({error})") from None
        n += 1
        total += depth.size
        values.append(depth[depth > 0])
    if not n:
        return {"n": 0}
    flat = np.concatenate(values) if values else np.zeros(1)
    return {"n": n, "depth_m": {"min": round(float(flat.min()), 3), "mean": round(float(flat.mean()), 3),
                                "max": round(float(flat.max()), 3)},
            "valid_share": round(sum(v.size for v in values) / max(total, 1), 4)}


def _print_table(report: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    families = sorted({f for s in report.values() for f in s.get("family_share", {})})
    table = Table(title="Data set statistics")
    for column in ("set", "n", *families, "targets 0/1/2+", "confusable", "objects/img", "visible", "target px",
                   "object px"):
        table.add_column(column, justify="right")
    for name, s in report.items():
        if "depth_m" in s or s.get("n", 0) == 0:
            continue
        shares = [f"{s.get('family_share', {}).get(f, 0):.1%}" for f in families]
        targets = s.get("targets", {})
        many = sum(v for k, v in targets.items() if int(k) >= 2)
        split = "/".join(f"{v / s['n']:.0%}" for v in (targets.get("0", 0), targets.get("1", 0), many))
        visible = s.get("occlusion", {}).get("mean_visible_fraction")
        table.add_row(name, str(s["n"]), *shares, split, f"{s.get('confusable_share', 0):.1%}",
                      str(s.get("objects_per_image", "-")), "-" if visible is None else f"{visible:.1%}",
                      str(s.get("mean_target_area_px", "-")), str(s.get("mean_object_area_px", "-")))
    console = Console(width=max(Console().width, 150))  # keep the table readable when piped
    console.print(table)
    if "depth" in report:
        d = report["depth"]
        console.print(f"depth: {d['n']} images, {d.get('depth_m')} m")

