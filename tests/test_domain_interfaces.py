"""An image outside the model's domain is said so on every interface (CLI, tools, MCP text, eval), and the bundled
model's confidence map is applied and calibrated on an unseen seed."""

from __future__ import annotations

import base64
import json
import shutil
import sys
from pathlib import Path

import anyio
import numpy as np
import pytest
from cli_support import run_cli as run
from mcp import ClientSession, StdioServerParameters, stdio_client
from PIL import Image

from addp_agent.data.natural import TEXTURES, package_photos
from addp_agent.data.sources import load_source
from addp_agent.domain import fit_domain
from addp_agent.metrics import iou_counts, iou_from_counts
from addp_agent.models.calibration import Calibration
from addp_agent.reliability import expected_calibration_error

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundled():
    from addp_agent.models.registry import load_pipeline

    pipe = load_pipeline(device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(package_photos()[0]).save(folder / "hopper.png")
    sample = next(iter(load_source("shapes-gen:1:9:64", "test")))
    Image.fromarray(sample.image).save(folder / "shapes.png")
    (folder / "expression.txt").write_text(sample.expression)
    return folder


def test_cli_warns_on_stderr_and_records_the_check(photo_dir, tmp_path, capsys):
    code, out, err = run(["segment", str(photo_dir / "hopper.png"), "the woman", "--out", str(tmp_path / "a"),
                          "--quiet"], capsys)
    assert code in (0, None) and out == ""
    assert err.count("\n") == 1 and err.startswith("warning: this image looks outside the model's synthetic-shapes")
    record = json.loads((tmp_path / "a" / "result.json").read_text())
    assert record["in_domain"] is False and record["domain"] == "synthetic-shapes" and record["domain_score"] > 1
    assert record["warning"] in err and record["confidence"] == 0.0 and record["raw_confidence"] > 0
    assert (tmp_path / "a" / "mask.png").is_file()  # a warning, not an error: the result is still written

    code, out, err = run(["segment", str(photo_dir / "shapes.png"), (photo_dir / "expression.txt").read_text(),
                          "--out", str(tmp_path / "b"), "--quiet"], capsys)
    record = json.loads((tmp_path / "b" / "result.json").read_text())
    assert code in (0, None) and err == "" and record["in_domain"] is True and record["warning"] is None


def test_agent_cli_warns_and_traces_the_check(photo_dir, tmp_path, capsys):
    code, _, err = run(["agent", str(photo_dir / "hopper.png"), "the woman", "--critic", "none", "--out",
                        str(tmp_path / "agent")], capsys)
    trace = json.loads((tmp_path / "agent" / "trace.json").read_text())
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]  # after the loading bars
    assert code in (0, None) and len(warnings) == 1 and warnings[0].startswith("warning: this image looks outside")
    assert trace["in_domain"] is False and trace["warning"] in err


def test_bad_input_is_still_one_line_and_writes_nothing(tmp_path, capsys):
    code, out, err = run(["segment", str(tmp_path / "missing.png"), "the woman", "--out", str(tmp_path / "o")],
                         capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "o").exists()


def test_tool_results_carry_the_warning_in_the_field_and_the_text(bundled, photo_dir):
    from addp_agent.tools.functions import SegmentationTools

    tools = SegmentationTools(pipeline=bundled)
    data = base64.b64encode((photo_dir / "hopper.png").read_bytes()).decode()
    output = tools.call("segment", {"image": f"data:image/png;base64,{data}", "expression": "the cat"})
    result = output.data()
    assert not output.is_error and result["in_domain"] is False and result["domain"] == "synthetic-shapes"
    assert result["warning"] and output.text().startswith(f"WARNING: {result['warning']}")
    assert result["confidence"] == 0.0
    refined = tools.call("refine", {"mask_id": result["mask_id"], "correction": "the flag"})
    assert refined.data()["warning"] == result["warning"] and refined.text().startswith("WARNING:")

    shapes = base64.b64encode((photo_dir / "shapes.png").read_bytes()).decode()
    inside = tools.call("segment", {"image": shapes, "expression": (photo_dir / "expression.txt").read_text()})
    assert inside.data()["in_domain"] is True and inside.data()["warning"] is None
    assert "WARNING" not in inside.text()


async def _mcp_segment(folder: Path) -> object:
    params = StdioServerParameters(command=sys.executable, cwd=ROOT,
                                   args=["-m", "addp_agent", "mcp", "--allow-dir", str(folder)],
                                   env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ADDP_CRITIC_MODEL": "",
                                        "PYTHONPATH": str(ROOT)})
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await session.call_tool("segment", {"image": "hopper.png", "expression": "the woman"})


def test_mcp_text_content_repeats_the_warning(photo_dir):
    result = anyio.run(_mcp_segment, photo_dir)
    text = result.content[0]
    assert not result.is_error and text.type == "text"
    assert text.text.startswith("WARNING: this image looks outside the model's synthetic-shapes domain")
    assert result.structured_content["in_domain"] is False and result.structured_content["warning"] in text.text


def test_eval_counts_out_of_domain_images_per_run(red_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(red_dir, model)
    rng = np.random.default_rng(3)
    clouds = [TEXTURES["clouds"](32, rng) for _ in range(12)]  # a model of clouds: Shapes-Ref is outside its domain
    Calibration(domain=fit_domain("clouds", 32, clouds[:8], clouds[8:], "clouds", "clouds")).save(model)
    out = tmp_path / "run"
    code, _, err = run(["eval", "--data", "shapes-gen:3:1:32", "--model", str(model), "--critic", "none", "--steps",
                        "1", "--out", str(out), "--quiet"], capsys)
    assert code == 0 and "3 of 3 images look outside the model's domain" in err
    document = json.loads((out / "metrics.json").read_text())
    assert document["domain"] == {"in_domain": 0, "out_of_domain": 3, "unchecked": 0}
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["in_domain"] for r in records] == [False] * 3 and all(r["domain_score"] > 1 for r in records)
    assert "3 out of domain" in (out / "report.md").read_text()


def test_the_bundled_confidence_map_is_applied_and_calibrated_on_an_unseen_seed(bundled):
    assert bundled.confidence_map is not None and bundled.domain_check is not None
    samples = list(load_source("shapes-gen:128:4:64", "test"))  # seed 4: neither the fit (0) nor its test (1)
    raw, mapped, correct = [], [], []
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        output = bundled([s.expression for s in chunk], [s.image for s in chunk], output_type="np",
                         show_progress=False)
        for sample, result in zip(chunk, output.results(0), strict=True):
            assert result.domain.in_domain and result.raw_confidence is not None
            assert result.confidence == pytest.approx(bundled.confidence_map(result.raw_confidence))
            raw.append(result.raw_confidence)
            mapped.append(result.confidence)
            correct.append(iou_from_counts(*iou_counts(result.mask, sample.mask)) >= 0.5)
    assert expected_calibration_error(mapped, correct) <= 0.05
    assert expected_calibration_error(mapped, correct) < expected_calibration_error(raw, correct)
    assert np.mean(correct) > 0.9


def test_depth_models_declare_a_domain_and_warn(tiny_depth_dir, photo_dir, tmp_path, capsys):
    from addp_agent.data.depth_sources import write_depth_dir
    from addp_agent.data.depth_synthetic import SyntheticDepth

    model = tmp_path / "depth"
    shutil.copytree(tiny_depth_dir, model)
    code, out, err = run(["calibrate", "--model", str(model), "--only", "domain", "--domain", "synthetic-shapes",
                          "--domain-data", "shapes-gen:300:0:32", "--data", "shapes-gen:100:0:32", "--resolution",
                          "32"], capsys)  # a depth model: the domain is fitted without running it
    assert code in (0, None), err
    assert Calibration.load(model).domain.name == "synthetic-shapes" and Calibration.load(model).confidence is None

    code, _, err = run(["depth", str(photo_dir / "hopper.png"), "--model", str(model), "--steps", "1", "--out",
                        str(tmp_path / "d"), "--quiet"], capsys)
    record = json.loads((tmp_path / "d" / "result.json").read_text())
    assert code in (0, None) and err.startswith("warning: this image looks outside") and err.count("\n") == 1
    assert record["in_domain"] is False and record["domain"] == "synthetic-shapes" and record["warning"] in err
    assert "this depth map is probably meaningless" in err and "mask" not in err  # worded for depth
    Image.fromarray(next(iter(load_source("shapes-gen:1:9:32", "test"))).image).save(tmp_path / "shapes32.png")
    code, _, err = run(["depth", str(tmp_path / "shapes32.png"), "--model", str(model), "--steps", "1", "--out",
                        str(tmp_path / "e"), "--quiet"], capsys)
    assert code in (0, None) and err == ""
    assert json.loads((tmp_path / "e" / "result.json").read_text())["in_domain"] is True

    write_depth_dir(SyntheticDepth("test", 2, seed=4, size=32), tmp_path / "data")
    code, _, err = run(["eval", "--task", "depth", "--data", f"depthdir:{tmp_path / 'data'}", "--model", str(model),
                        "--steps", "1", "--curve-n", "0", "--out", str(tmp_path / "eval"), "--quiet"], capsys)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert code in (0, None) and metrics["domain"]["out_of_domain"] + metrics["domain"]["in_domain"] == 2
    records = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    assert all(isinstance(r["in_domain"], bool) for r in records)
