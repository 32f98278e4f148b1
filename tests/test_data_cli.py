"""`addp data shapes` / `addp data stats` through the CLI entry point (errors: one line, exit 2)."""

from __future__ import annotations

import importlib
import json

import pytest

import addp_agent.cli as cli
from addp_agent.data.cris import CrisDataset
from addp_agent.data.refer import ReferDataset


@pytest.fixture(autouse=True)
def _only_data_commands(monkeypatch) -> None:
    """Register just this module's commands, so the tests do not depend on other command groups."""
    monkeypatch.setattr(cli, "_register", lambda: importlib.import_module("addp_agent.cli.data"))


def _run(args: list[str]) -> None:
    try:
        cli.main(args)
    except SystemExit as exit_:
        assert exit_.code in (0, None), exit_.code


def test_shapes_then_stats(tmp_path, capsys) -> None:
    out = tmp_path / "shapes"
    base = ["data", "shapes", "--out", str(out), "--format"]
    _run([*base, "refer", "--split", "val", "--n", "12", "--seed", "1"])
    _run([*base, "refer", "--split", "test", "--n", "8"])
    _run([*base, "cris", "--split", "val", "--n", "6", "--seed", "1"])
    assert "wrote 6 val samples (cris layout, 64 px)" in capsys.readouterr().out
    assert len(ReferDataset(out, "shapes", "unc", "val")) == 12
    assert len(CrisDataset(out, "shapes", "val")) == 6
    for clash, message in ((["--size", "128", "--seed", "1"], "other settings (size)"),
                           (["--seed", "2"], "refer/val was made with --seed 1")):
        with pytest.raises(SystemExit) as exit_:  # would overwrite the shared images with different ones
            cli.main([*base, "cris", "--split", "val", "--n", "6", *clash])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    _run(["data", "shapes", "--out", str(tmp_path / "big"), "--split", "val", "--n", "2", "--size", "128"])
    assert next(iter(CrisDataset(tmp_path / "big", "shapes", "val"))).image.shape == (128, 128, 3)
    capsys.readouterr()
    _run(["data", "stats", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"refer/test", "refer/val", "cris/val"}
    val = report["refer/val"]
    assert val["n"] == 12 and sum(val["families"].values()) == 12
    assert 0 <= val["confusable_share"] <= 1 and val["mean_target_area_px"] > 30
    _run(["data", "stats", str(out)])
    assert "refer/val" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--split", "dev"], "unknown split 'dev'"),
    (["--format", "coco"], "unknown format 'coco'"),
    (["--size", "16"], "bad Shapes-Ref option: size"),
    (["--background", "stars"], "bad Shapes-Ref option: background"),
    (["--n", "100000000000"], "'--n'"),  # was: "sample index 99999999999 out of range", naming no flag
])
def test_shapes_bad_options_exit_2(tmp_path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "shapes", "--out", str(tmp_path), "--n", "2", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_stats_errors_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "stats", str(tmp_path)])
    assert exit_.value.code == 2 and "no Shapes-Ref / Scenes-3D export found" in capsys.readouterr().err
    (tmp_path / "anns" / "shapes").mkdir(parents=True)
    (tmp_path / "anns" / "shapes" / "val.json").write_text("[{")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "stats", str(tmp_path)])
    assert exit_.value.code == 2 and "val.json: malformed JSON" in capsys.readouterr().err
    (tmp_path / "anns" / "shapes" / "val.json").unlink()
    (tmp_path / "filename_list.txt").write_bytes(b"\x80\x81 rgb/0.png depth/0.png\n")  # a depth folder's list
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", "stats", str(tmp_path)])
    assert exit_.value.code == 2 and "cannot read the list file" in capsys.readouterr().err  # was: UnicodeDecodeError
