"""`addp data`: generate and export Shapes-Ref, and summarise exported data sets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from addp_agent.cli.app import app
from addp_agent.cli.options import config_options
from addp_agent.data.shapes_scene import ShapesRefConfig
from addp_agent.errors import UserError, validation_message

data_app = typer.Typer(help="Data sets: generate Shapes-Ref, print statistics.", no_args_is_help=True)
app.add_typer(data_app, name="data")

FORMATS = ("refer", "cris")


@data_app.command("shapes")
@config_options(ShapesRefConfig, into="scene", only=("size", "background", "overlap"))
def shapes(
    scene: dict[str, Any],
    out: Path = typer.Option(..., "--out", help="output folder (splits merge into it)"),
    split: str = typer.Option("train", "--split", help="train, val or test"),
    n: int = typer.Option(1000, "--n", min=1, help="number of samples"),
    seed: int = typer.Option(0, "--seed", min=0, help="base seed (splits use disjoint streams)"),
    fmt: str = typer.Option("cris", "--format", help="refer or cris layout"),
) -> None:
    """Generate Shapes-Ref samples and export them in the REFER or CRIS layout."""
    from addp_agent.data.export import check_manifest, export_cris, export_refer, write_manifest
    from addp_agent.data.shapes import SPLITS, ShapesRef

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {list(FORMATS)}")
    try:
        config = ShapesRefConfig(**scene)
    except ValidationError as error:
        raise UserError(f"bad Shapes-Ref option: {validation_message(error)}") from None
    manifest = check_manifest(out, fmt, split, seed, config)
    start = time.perf_counter()
    samples = ShapesRef(split, n, seed, config)
    count = (export_refer if fmt == "refer" else export_cris)(samples, out, split)
    write_manifest(out, manifest)
    seconds = time.perf_counter() - start
    typer.echo(f"wrote {count} {split} samples ({fmt} layout, {config.size} px) to {out} in {seconds:.1f} s")


@data_app.command("stats")
def stats(
    folder: Path = typer.Argument(..., help="a folder written by `addp data shapes`"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Counts per expression family, confusable share and mean object area, per layout and split."""
    from addp_agent.data.cris import CrisDataset
    from addp_agent.data.refer import ReferDataset
    from addp_agent.data.shapes import DATASET
    from addp_agent.data.sources import dataset_stats, shapes_layouts, shapes_splits

    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    layouts = shapes_layouts(folder)
    if not layouts:
        expected = f"{DATASET}/refs(unc).p or anns/{DATASET}/"
        raise UserError(f"{folder}: no Shapes-Ref export found (expected {expected})")
    report: dict[str, dict] = {}
    for layout in layouts:
        for split in shapes_splits(folder, layout):
            samples = (ReferDataset(folder, DATASET, "unc", split) if layout == "refer"
                       else CrisDataset(folder, DATASET, split))
            report[f"{layout}/{split}"] = dataset_stats(samples)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_table(report)


def _print_table(report: dict[str, dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from addp_agent.data.shapes import FAMILIES

    table = Table(title="Shapes-Ref statistics")
    for column in ("set", "n", *FAMILIES, "confusable", "objects/img", "target px", "object px"):
        table.add_column(column, justify="right")
    for name, s in report.items():
        shares = [f"{s.get('family_share', {}).get(f, 0):.1%}" for f in FAMILIES]
        table.add_row(name, str(s["n"]), *shares, f"{s.get('confusable_share', 0):.1%}",
                      str(s.get("objects_per_image", "-")), str(s.get("mean_target_area_px", "-")),
                      str(s.get("mean_object_area_px", "-")))
    Console(width=max(Console().width, 130)).print(table)  # keep the table readable when piped
