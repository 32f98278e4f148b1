"""`addp data scenes`: generate Scenes-3D and export it (REFER, CRIS, gRefCOCO, CLEVR-Ref+ or depth layout)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from addp_agent.cli.data import data_app
from addp_agent.errors import UserError
from addp_agent.limits import MAX_GENERATED, MAX_SEED

SCENES_FORMATS = ("refer", "cris", "grefs", "clevr-ref", "depth")


@data_app.command("scenes")
def scenes(
    out: Path = typer.Option(..., "--out", help="output folder (splits merge into it; depth: one split per folder)"),
    split: str = typer.Option("train", "--split", help="train, val or test"),
    n: int = typer.Option(1000, "--n", help="number of samples"),
    seed: int = typer.Option(0, "--seed", help="base seed (splits use disjoint streams)"),
    size: int = typer.Option(128, "--size", help="image side in pixels, 64-512"),
    preset: str = typer.Option("default", "--preset", help="default or hard"),
    mode: str = typer.Option("classic", "--mode", help="classic (one target) or generalized (also none / several)"),
    fmt: str = typer.Option("grefs", "--format", help="refer, cris, grefs, clevr-ref or depth"),
    dataset_name: str = typer.Option("scenes3d", "--dataset-name", help="folder name of the refer/cris/grefs "
                                     "layout; the official REFER class accepts refcoco, refcoco+, refcocog, refclef; "
                                     "G_REFER accepts grefcoco"),
    knobs: list[str] = typer.Option([], "--set", help="KNOB=VALUE for any Scenes-3D setting (repeatable), e.g. "
                                    "--set max_objects=8 --set family_weights=attribute=1,ordinal=2"),
) -> None:
    """Generate Scenes-3D samples and export them. Every option is checked before anything is written."""
    from addp_agent.data import manifest
    from addp_agent.data.scenes3d import SPLITS, ScenesDepth, ScenesRef, scenes_config
    from addp_agent.data.scenes3d.spec import parse_overrides
    from addp_agent.outputs_io import check_output_folder, output_set

    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    if fmt not in SCENES_FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {list(SCENES_FORMATS)}")
    if not 1 <= n <= MAX_GENERATED or not 0 <= seed <= MAX_SEED:
        raise UserError(f"--n must be 1 … {MAX_GENERATED} and --seed 0 … {MAX_SEED} (got --n {n}, --seed {seed})")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_+.-]*", dataset_name):
        raise UserError(f"bad --dataset-name {dataset_name!r}; use letters, digits, _ + . -")
    config = scenes_config(size, preset, mode, parse_overrides(knobs))
    if fmt == "refer" and config.mode == "generalized":
        raise UserError("the REFER layout holds exactly one object per ref; use --format grefs or cris for "
                        "--mode generalized")
    check_output_folder(out)
    path = out / "scenes-3d.json"
    document = manifest.check(path, "Scenes-3D", fmt, split, seed, config.model_dump(mode="json"))
    held = [k for k in document["exports"] if fmt == "depth" and k.startswith("depth/") and k != f"depth/{split}"]
    if held:
        raise UserError(f"{out} already holds {held[0]} (depth file numbers would clash); use another --out")
    start = time.perf_counter()
    with output_set(out, keep=True) as staging:  # the folder holds the old export or the new one, never a mix
        if fmt == "depth":
            from addp_agent.data.scenes3d.export_depth import export_depth

            count = export_depth(ScenesDepth(split, n, seed, config), staging)
        else:
            from addp_agent.data.scenes3d import export

            samples = ScenesRef(split, n, seed, config)
            if fmt == "clevr-ref":
                count = export.export_clevr_ref(samples, staging, split)
            else:
                writer = {"refer": export.export_refer, "cris": export.export_cris,
                          "grefs": export.export_grefs}[fmt]
                count = writer(samples, staging, split, dataset_name)
        manifest.write(staging / path.name, document)
    typer.echo(f"wrote {count} {split} samples ({fmt} layout, {size} px, {preset}, {config.mode}) to {out} in "
               f"{time.perf_counter() - start:.1f} s")
