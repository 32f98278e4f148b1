"""`addp agent`: per-round files, trace.json, the table, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_support import run_cli as run
from PIL import Image
from test_agent_support import ChatServer, Reply, completion, scripted
from test_hostile_images import png_declaring

from addp_agent.data.shapes import generate_sample

pytestmark = pytest.mark.usefixtures("one_thread")




def test_oracle_critic_on_a_shapes_sample_via_its_old_name(tmp_path, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(["agent", "--shapes-sample", "val:5", "--critic", "simulated", "--max-rounds", "2",
                             "--steps", "3", "--model", str(tiny_pixel_dir), "--out", str(out)], capsys)
    assert code == 0, err
    trace = json.loads((out / "trace.json").read_text())
    assert trace["critic"] == "oracle" and trace["critic_label"] == "oracle (reads ground truth)"
    assert trace["expression"] == generate_sample("val", 5).expression
    assert trace["rounds"][0]["critique"]["verdict"] in ("accept", "revise")
    assert 0.0 <= trace["rounds"][0]["iou_with_ground_truth"] <= 1.0
    for r in trace["rounds"]:
        assert (out / f"round{r['round']}_overlay.png").is_file() and (out / f"round{r['round']}_mask.png").is_file()
    assert (out / "mask.png").is_file() and (out / "overlay.png").is_file()
    assert "IoU GT" in stdout and f"stop = {trace['stop_reason']}" in stdout


def test_vlm_critic_with_resume_from_step_k(tmp_path, tiny_pixel_dir, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(generate_sample("val", 5).image).save(image)
    revise = {"verdict": "revise", "problem": "covers the cross", "correction": "the cross", "confidence": 0.7}
    accept = {"verdict": "accept", "problem": "", "correction": None, "confidence": 0.9}
    replies = [Reply(completion(json.dumps(revise))), Reply(completion(json.dumps(accept)))]
    out = tmp_path / "out"
    with ChatServer(scripted(replies)) as server:
        code, stdout, err = run(["agent", str(image), "the cross", "--critic", "vlm", "--base-url", server.url,
                                 "--critic-model", "vlm-test", "--no-cache", "--steps", "4", "--resume-step", "2",
                                 "--convergence-iou", "1.01",
                                 "--model", str(tiny_pixel_dir), "--out", str(out)], capsys)
    assert code == 0, err
    trace = json.loads((out / "trace.json").read_text())
    assert [r["corrections"] for r in trace["rounds"]][:2] == [[], ["the cross"]]
    assert all(r["resumed_from_step"] == 2 for r in trace["rounds"])
    assert (out / "round1_step2_overlay.png").is_file()
    assert len(server.requests) == len(trace["rounds"]) and "covers the cross" in stdout


@pytest.mark.parametrize("spec", ["val", "val:x", "val:3:y", "val:1:2:3", "valid:3"])
def test_bad_shapes_sample_is_one_clear_error(tmp_path, tiny_pixel_dir, capsys, spec):
    code, _, err = run(["agent", "--shapes-sample", spec, "--critic", "simulated", "--out", str(tmp_path / "o"),
                        "--model", str(tiny_pixel_dir)], capsys)
    assert code == 2 and err.startswith("error: --shapes-sample") and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_shapes_sample_seed_selects_the_stream():
    from addp_agent.cli.agent import parse_shapes_spec

    assert parse_shapes_spec("test:245") == ("test", 245, 0)
    assert parse_shapes_spec("test:245:1") == ("test", 245, 1)
    assert not np.array_equal(generate_sample("test", 245, 1).image, generate_sample("test", 245, 0).image)


def test_self_and_noisy_critics_on_a_shapes_sample(tmp_path, tiny_pixel_dir, capsys):
    for critic, extra in (("self", []), ("noisy", ["--critic-accuracy", "0.5", "--critic-seed", "3"])):
        out = tmp_path / critic
        code, stdout, err = run(["agent", "--shapes-sample", "val:5", "--critic", critic, "--max-rounds", "2",
                                 "--model", str(tiny_pixel_dir), "--out", str(out), *extra], capsys)
        assert code == 0, err
        trace = json.loads((out / "trace.json").read_text())
        assert trace["critic"] == critic and trace["rounds"][0]["critique"] is not None
    assert "score" in json.loads((tmp_path / "self" / "trace.json").read_text())["rounds"][0]["critique"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--critic", "simulated"], "--gt-mask"),
    (["--critic", "oracle"], "--critic oracle reads the ground truth"),
    (["--critic", "noisy", "--gt-mask", "GT10"], "--critic noisy needs --critic-accuracy"),
    (["--critic", "paper", "--critic-model", "m", "--base-url", "http://127.0.0.1:9/v1"], "--caption"),
    (["--critic", "judge"], "unknown critic 'judge'"),
    (["--critic", "vlm", "--critic-model", "m", "--base-url", "notaurl"], "is not an http(s) URL"),  # was: exit 0
    (["--critic", "vlm", "--critic-model", "m", "--base-url", "ftp://host/v1"], "is not an http(s) URL"),
    (["--critic", "simulated", "--gt-mask", "GT"], "differ"),
    (["--steps", "4", "--resume-step", "1", "--correction-steps", "2"], "--correction-steps and --resume-step exclude"),
    (["--correction-steps", "0"], "--correction-steps"),
    (["--critic", "oracle", "--gt-mask", "GT-TEXT"], "not a readable image"),
    (["--critic", "oracle", "--gt-mask", "GT-EMPTY"], "not a readable image"),
    (["--critic", "oracle", "--gt-mask", "GT-TRUNCATED"], "damaged or truncated"),
    (["--critic", "oracle", "--gt-mask", "GT-BOMB"], "over the 40 MP cap"),
    (["--critic", "oracle", "--gt-mask", "GT-FOLDER"], "not a file"),
    (["--critic", "noisy", "--critic-accuracy", "0.5", "--critic-seed", "-1", "--gt-mask", "GT10"],
     "Invalid value for '--critic-seed'"),
])
def test_clear_errors(tmp_path, tiny_pixel_dir, capsys, extra, message):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "gt.png")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "gt-fits.png")
    (tmp_path / "gt.txt").write_text("not a mask")
    (tmp_path / "gt-empty.png").write_bytes(b"")
    noisy = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "gt-noisy.png")
    (tmp_path / "gt-truncated.png").write_bytes((tmp_path / "gt-noisy.png").read_bytes()[:300])
    (tmp_path / "gt-bomb.png").write_bytes(png_declaring(20_000, 20_000))
    (tmp_path / "gt-folder").mkdir()
    paths = {"GT": str(tmp_path / "gt.png"), "GT10": str(tmp_path / "gt-fits.png"), "GT-TEXT": str(tmp_path / "gt.txt"),
             "GT-EMPTY": str(tmp_path / "gt-empty.png"), "GT-TRUNCATED": str(tmp_path / "gt-truncated.png"),
             "GT-BOMB": str(tmp_path / "gt-bomb.png"), "GT-FOLDER": str(tmp_path / "gt-folder")}
    extra = [paths.get(e, e) for e in extra]
    code, _, err = run(["agent", str(image), "the cup", "--out", str(tmp_path / "o"), "--model", str(tiny_pixel_dir),
                        *extra], capsys)
    assert code == 2 and err.startswith("error: ") and (message in err or "is 10×10" in err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra", [["--batch-max", "0"], ["--batch-wait-ms", "-1"]])
def test_mcp_refuses_bad_batching_settings(tiny_pixel_dir, capsys, extra):
    code, _, err = run(["mcp", "--model", str(tiny_pixel_dir), *extra], capsys)
    assert code == 2 and "Invalid value" in err and extra[0] in err
