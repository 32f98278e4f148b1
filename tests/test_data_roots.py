"""A missing data root or a wrong layout names the file or folder it expected: one line, exit code 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from addp_agent.cli import main
from addp_agent.data.cris import CrisDataset
from addp_agent.data.export import export_cris, export_refer
from addp_agent.data.refer import ReferDataset
from addp_agent.data.shapes import ShapesRef, ShapesRefConfig
from addp_agent.errors import DataError


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> tuple[Path, Path]:
    """A CRIS and a REFER export of two Shapes-Ref samples named refcoco."""
    cris, refer = tmp_path_factory.mktemp("cris"), tmp_path_factory.mktemp("refer")
    export_cris(ShapesRef("val", 2, 0, ShapesRefConfig(size=32)), cris, "val", "refcoco")
    export_refer(ShapesRef("val", 2, 0, ShapesRefConfig(size=32)), refer, "val", "refcoco")
    return cris, refer


def test_missing_roots_name_the_root_and_what_belongs_there(tmp_path):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"^{nowhere}: data root not found; a CRIS layout there holds "
                                        rf"{nowhere}/anns/refcoco/val.json and anns/<dataset>/<split>.json"):
        CrisDataset(nowhere, "refcoco", "val")
    with pytest.raises(DataError, match=rf"^{nowhere}: data root not found; a REFER layout there holds "
                                        rf"{nowhere}/refcoco/refs\(unc\).p, {nowhere}/refcoco/instances.json"):
        ReferDataset(nowhere, "refcoco", "unc", "val")


def test_a_layout_given_as_the_other_names_the_expected_file_and_the_right_spec(layouts):
    cris, refer = layouts
    with pytest.raises(DataError, match=rf"^{refer}/anns/refcoco/val.json: not found: {refer} is not a CRIS layout "
                                        rf"of refcoco .*use refer:{refer}:refcoco:<splitBy>$"):
        CrisDataset(refer, "refcoco", "val")
    with pytest.raises(DataError, match=rf"^{cris}/refcoco/refs\(unc\).p: cannot read \(not found\): {cris} holds "
                                        rf"the CRIS layout of refcoco; use cris:{cris}:refcoco$"):
        ReferDataset(cris, "refcoco", "unc", "val")
    with pytest.raises(DataError, match=r"anns/refcocog/val.json: not found: .* \(anns/ holds \['refcoco'\]\)"):
        CrisDataset(cris, "refcocog", "val")


def test_missing_mask_or_image_folders_are_named(layouts, tmp_path):
    cris, refer = layouts
    no_masks = shutil.copytree(cris, tmp_path / "no-masks")
    shutil.rmtree(no_masks / "masks")
    with pytest.raises(DataError, match=rf"^{no_masks}/masks/refcoco: not found: a CRIS layout keeps "
                                        r"masks/refcoco/<segment_id>.png$"):
        CrisDataset(no_masks, "refcoco", "val")
    no_images = shutil.copytree(cris, tmp_path / "no-images")
    shutil.rmtree(no_images / "images")
    with pytest.raises(DataError, match=rf"^{no_images}/images/train2014: image folder not found"):
        CrisDataset(no_images, "refcoco", "val", skip_bad=True)  # not a silent run that skips every sample
    refer_no_images = shutil.copytree(refer, tmp_path / "refer-no-images")
    shutil.rmtree(refer_no_images / "images")
    with pytest.raises(DataError, match=rf"^{refer_no_images}/images/mscoco/images/train2014: image folder not found"):
        ReferDataset(refer_no_images, "refcoco", "unc", "val", skip_bad=True)


@pytest.mark.parametrize("command", [["eval", "--model", "/unused"], ["train"]])
def test_cli_reports_a_missing_root_in_one_line(command, tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--data", f"cris:{nowhere}:refcoco", "--out", str(tmp_path / "o"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {nowhere}: data root not found; a CRIS layout there holds {nowhere}/anns/refcoco/" \
                  f"{'val' if command[0] == 'eval' else 'train'}.json and anns/<dataset>/<split>.json, " \
                  "masks/<dataset>/<segment_id>.png and images/train2014/ (or images/<dataset>/)"
    assert not (tmp_path / "o").exists()
