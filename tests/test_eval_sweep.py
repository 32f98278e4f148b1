"""`addp sweep`: the grid, the pick rule, batch-independent paired rows, and bad input as one line."""

from __future__ import annotations

import json

import pytest

from addp_agent.cli import main
from addp_agent.data.sources import load_source
from addp_agent.errors import UserError
from addp_agent.eval.sweep import SweepPoint, SweepRow, grid, parse_list, pick, run_point


def _row(steps: int, miou: float, guidance: float = 3.0, image_guidance: float = 1.0) -> SweepRow:
    return SweepRow(steps=steps, guidance_scale=guidance, image_guidance_scale=image_guidance,
                    timestep_spacing="trailing", n=10,
                    miou=miou, oiou=miou, precision_at_50=miou, precision_at_90=miou, seconds_per_sample=0.01 * steps)


def test_grid_is_the_deduplicated_product() -> None:
    points = grid([1, 2, 2], [1.0, 3.0], [1.0], ["trailing", "leading"])
    assert len(points) == 2 * 2 * 2
    assert points[0] == SweepPoint(steps=1, guidance_scale=1.0, image_guidance_scale=1.0, timestep_spacing="trailing")
    assert {p.timestep_spacing for p in points} == {"trailing", "leading"}


@pytest.mark.parametrize("args, message", [
    (([0], [1.0], [1.0], ["trailing"]), "--steps"),
    (([2], [0.5], [1.0], ["trailing"]), "guidance scales"),
    (([2], [1.0], [1.0], ["sideways"]), "--spacing"),
])
def test_grid_rejects_bad_values(args, message) -> None:
    with pytest.raises(UserError, match=message):
        grid(*args)


def test_parse_list() -> None:
    assert parse_list(" 1, 2,4 ", int, "--steps") == [1, 2, 4]
    assert parse_list("1.5", float, "--guidance-scale") == [1.5]
    with pytest.raises(UserError, match="--steps: expected comma-separated int"):
        parse_list("2,x", int, "--steps")
    with pytest.raises(UserError, match="at least one"):
        parse_list(" , ", int, "--steps")
    for text in ("1,,2", "1,2,", ",1"):  # an empty item was silently skipped
        with pytest.raises(UserError, match="--steps: an empty item"):
            parse_list(text, int, "--steps")


def test_pick_prefers_quality_then_fewer_steps() -> None:
    rows = [_row(10, 0.80), _row(2, 0.795), _row(1, 0.70), _row(4, 0.80)]
    assert pick(rows) == rows[3]  # ties on mIoU go to fewer steps
    assert pick(rows, prefer_fast_within=0.01) == rows[1]
    assert pick(rows, prefer_fast_within=0.2) == rows[2]
    with pytest.raises(UserError):
        pick([])


def test_pick_counts_guidance_branches_in_the_cost() -> None:
    three_branches, two_branches = _row(1, 0.9894, 1.5, 1.5), _row(1, 0.9892, 1.5, 1.0)
    unguided, two_steps = _row(1, 0.9824, 1.0, 1.0), _row(2, 0.9780, 2.0, 1.0)
    assert (three_branches.unet_passes, two_branches.unet_passes, unguided.unet_passes, two_steps.unet_passes) \
        == (3, 2, 1, 4)
    rows = [three_branches, two_branches, unguided, two_steps]
    assert pick(rows) == three_branches
    assert pick(rows, prefer_fast_within=0.005) == two_branches  # same steps, a third fewer UNet rows
    assert pick(rows, prefer_fast_within=0.01) == unguided
    assert SweepRow.model_validate_json(two_branches.model_dump_json()).unet_passes == 2  # written to sweep.json


def test_rows_do_not_depend_on_batch_size_and_restore_the_scheduler(red_pipe) -> None:
    samples = list(load_source("shapes-gen:5:2:32", "val"))
    spacing = red_pipe.scheduler.config.timestep_spacing
    point = SweepPoint(steps=2, guidance_scale=2.0, image_guidance_scale=1.5,
                       timestep_spacing="linspace" if spacing != "linspace" else "trailing")
    one = run_point(red_pipe, samples, point, batch_size=1, seed=3)
    many = run_point(red_pipe, samples, point, batch_size=4, seed=3)
    assert one.n == many.n == 5
    assert one.miou == pytest.approx(many.miou, abs=1e-6) and one.oiou == pytest.approx(many.oiou, abs=1e-6)
    assert 0.0 < one.miou < 1.0 and one.seconds_per_sample > 0
    assert red_pipe.scheduler.config.timestep_spacing == spacing


def test_cli_writes_rows_and_pick(red_dir, tmp_path, capsys) -> None:
    out = tmp_path / "sweeps" / "sweep.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--data", "shapes-gen:6:2:32", "--model", str(red_dir), "--steps", "1,2",
              "--guidance-scale", "1,2", "--image-guidance-scale", "1", "--limit", "4", "--batch-size", "2",
              "--out", str(out)])
    assert exit_info.value.code == 0
    document = json.loads(out.read_text())
    assert document["n"] == 4 and len(document["rows"]) == 4
    assert document["best"]["miou"] == max(row["miou"] for row in document["rows"])
    assert {(r["steps"], r["guidance_scale"]) for r in document["rows"]} == {(1, 1.0), (1, 2.0), (2, 1.0), (2, 2.0)}
    printed = capsys.readouterr().out
    assert f"pick: addp bundle {red_dir} --steps {document['best']['steps']}" in printed


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "--steps"),
    (["--steps", "two"], "--steps: expected"),
    (["--spacing", "sideways"], "--spacing"),
    (["--limit", "0"], "--limit"),
    (["--prefer-fast-within", "1.5"], "--prefer-fast-within"),
    (["--data", "nowhere:1"], ""),
])
def test_bad_input_is_one_line_and_writes_nothing(red_dir, tmp_path, capsys, extra, message) -> None:
    out = tmp_path / "sweep.json"
    args = ["sweep", "--data", "shapes-gen:4:2:32", "--model", str(red_dir), "--out", str(out), *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists() and not out.with_name("sweep.json.tmp").exists()


def test_out_that_is_a_folder_is_refused(red_dir, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--data", "shapes-gen:4:2:32", "--model", str(red_dir), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "not a writable file path" in capsys.readouterr().err
