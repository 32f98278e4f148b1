"""Bundled models load by name (`--model shapes-ref-small`, `model="depth-small"`); a local path of the same name
wins, and a name whose folder this install lacks is one clear error."""

from pathlib import Path

import pytest
from cli_support import run_cli as run

from addp_agent.errors import ModelLoadError
from addp_agent.models import registry
from addp_agent.models.registry import BUNDLED_MODELS, DEFAULT_DEPTH_MODEL_DIR, DEFAULT_MODEL_DIR, load_pipeline

SCENE = Path(__file__).resolve().parents[1] / "examples" / "scene.png"


def test_names_resolve_to_the_bundled_folders():
    assert registry.resolve_source("shapes-ref-small") == (DEFAULT_MODEL_DIR, False)
    assert registry.resolve_source("depth-small") == (DEFAULT_DEPTH_MODEL_DIR, False)
    assert registry.resolve_source("owner/model") == (Path("owner/model"), True)  # still a hub id
    pipe = load_pipeline("shapes-ref-small", device="cpu", progress=False)
    assert pipe.resolution == 64 and pipe.domain_check is not None and pipe.domain_check.name == "synthetic-shapes"


def test_a_local_folder_of_the_same_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "depth-small").mkdir()
    assert registry.resolve_source("depth-small") == (Path("depth-small"), False)


def test_a_name_whose_folder_is_missing_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(BUNDLED_MODELS, "scenes3d-ris-small", (tmp_path / "absent", "test"))
    with pytest.raises(ModelLoadError, match="bundled model 'scenes3d-ris-small' is not in this install"):
        load_pipeline("scenes3d-ris-small", device="cpu", progress=False)
    code, _, err = run(["segment", str(SCENE), "the triangle", "--model", "shapes-ref-smal", "--out",
                        str(tmp_path / "out")], capsys)
    assert code == 2 and "model path does not exist (bundled models: shapes-ref-small" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_segment_by_name_matches_the_default(tmp_path, capsys):
    code, _, err = run(["segment", str(SCENE), "the triangle", "--model", "shapes-ref-small", "--out",
                        str(tmp_path / "named"), "--quiet"], capsys)
    assert code in (0, None), err
    code, _, err = run(["segment", str(SCENE), "the triangle", "--out", str(tmp_path / "default"), "--quiet"], capsys)
    assert code in (0, None), err
    assert (tmp_path / "named" / "mask.png").read_bytes() == (tmp_path / "default" / "mask.png").read_bytes()


def test_models_lists_each_bundled_model(tmp_path, monkeypatch, capsys):
    import json

    monkeypatch.setitem(BUNDLED_MODELS, "scenes3d-ris-small", (tmp_path / "absent", "not shipped here"))
    code, out, err = run(["models", "--json"], capsys)
    assert code in (0, None), err
    listed = {m["name"]: m for m in json.loads(out)}
    assert list(listed) == list(BUNDLED_MODELS)
    ris, depth, absent = listed["shapes-ref-small"], listed["depth-small"], listed["scenes3d-ris-small"]
    assert (ris["task"], ris["default"], ris["steps"], ris["domain"]) == ("ris", True, 1, "synthetic-shapes")
    assert (depth["task"], depth["default"], depth["domain"]) == ("depth", True, "synthetic-scenes3d")
    assert 0 < ris["size_mib"] <= 30 and 0 < depth["size_mib"] <= 30
    assert absent["installed"] is False and absent["task"] is None
    code, out, _ = run(["models"], capsys)
    assert code in (0, None) and "shapes-ref-small" in out and "not in this install" in out
