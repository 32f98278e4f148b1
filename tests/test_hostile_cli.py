"""Hostile command-line input: every one is one line on stderr, exit code 2, no traceback, nothing written.

Each case is named after its input. All of them fail before a model loads (the model path does not even exist),
which is what "before any model work" means here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import exit_code, run_cli
from PIL import Image

from addp_agent.cli import main

LONG = "a" * 201
CUDA = [] if torch.cuda.is_available() else [("device-cuda-on-cpu-torch", ["--device", "cuda"], "CPU-only build")]


def run(argv: list[str], capsys) -> tuple[int, str]:
    code, _, err = run_cli(argv, capsys)
    return code, err


def one_line(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


# ------------------------------------------------------------------------------------------------ shared options
SAMPLER = [
    ("steps-1001", ["--steps", "1001"], "--steps: Input should be less than or equal to 1000"),
    ("steps-0", ["--steps", "0"], "--steps: Input should be greater than or equal to 1"),
    ("steps-abc", ["--steps", "abc"], "Invalid value for '--steps'"),
    ("seed-minus-5", ["--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    ("seed-2-to-the-31", ["--seed", str(2**31)], "--seed"),
    ("device-tpu", ["--device", "tpu"], "--device tpu: not a device name"),
    ("device-cuda-99", ["--device", "cuda:99"], "--device cuda:99"),
    *CUDA,
]
SEGMENT_ONLY = [
    ("guidance-scale-nan", ["--guidance-scale", "nan"], "--guidance-scale"),
    ("guidance-scale-inf", ["--guidance-scale", "inf"], "--guidance-scale"),
    ("guidance-scale-minus-1", ["--guidance-scale", "-1"], "--guidance-scale"),
    ("image-guidance-scale-nan", ["--image-guidance-scale", "nan"], "--image-guidance-scale"),
    ("correction-scale-minus-inf", ["--correction-scale", "-inf"], "--correction-scale"),
    ("threshold-minus-1", ["--threshold", "-1"], "--threshold: Input should be greater than 0"),
    ("threshold-0", ["--threshold", "0"], "--threshold: Input should be greater than 0"),
    ("threshold-1000", ["--threshold", "1000"], "--threshold: Input should be less than or equal to 441.67"),
    ("threshold-nan", ["--threshold", "nan"], "--threshold"),
    ("correction-of-201-characters", ["--correction", LONG], "--correction[0]: String should have at most 200"),
    ("nine-corrections", [a for k in range(9) for a in ("--correction", f"thing {k}")], "--correction"),
    ("empty-correction", ["--correction", " "], "--correction is empty"),
    ("correction-mode-sideways", ["--correction-mode", "sideways"], "--correction-mode"),
    ("dtype-fp8", ["--dtype", "fp8"], "--dtype"),
]


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in SAMPLER + SEGMENT_ONLY],
                         ids=[c[0] for c in SAMPLER + SEGMENT_ONLY])
def test_segment_option(extra, message, image, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run(["segment", str(image), "the circle", "--model", str(tmp_path / "no-model"), "--out", str(out),
                     *extra], capsys)
    one_line(code, err, message)
    assert not out.exists()


def test_segment_expression_of_301_characters(image, tmp_path, capsys):
    code, err = run(["segment", str(image), "a" * 301, "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o")],
                    capsys)
    one_line(code, err, "EXPRESSION: String should have at most 300 characters")


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in SAMPLER], ids=[c[0] for c in SAMPLER])
def test_agent_option(extra, message, image, tmp_path, capsys):
    code, err = run(["agent", str(image), "the circle", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o"),
                     *extra], capsys)
    if extra[0] == "--steps" and extra[1] != "abc":
        message = "Invalid value for '--steps'"  # typer's own range check, same bounds
    if extra[0] == "--seed":
        message = "Invalid value for '--seed'"
    one_line(code, err, message)


@pytest.mark.parametrize("extra", [["--steps", "1001"], ["--seed", "-5"], ["--device", "tpu"], ["--ensemble", "0"],
                                   ["--ensemble", "100000"], ["--processing-resolution", "-3"]],
                         ids=["steps-1001", "seed-minus-5", "device-tpu", "ensemble-0", "ensemble-100000",
                              "processing-resolution-minus-3"])
def test_depth_option(extra, image, tmp_path, capsys):
    code, err = run(["depth", str(image), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o"), *extra],
                    capsys)
    one_line(code, err, extra[0])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--steps", "1001"], "--steps: Input should be less than or equal to 1000"),
    (["--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    (["--device", "tpu"], "--device tpu"),
], ids=["steps-1001", "seed-minus-5", "device-tpu"])
def test_eval_option(extra, message, tmp_path, capsys):
    code, err = run(["eval", "--data", "shapes-gen:4", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o"),
                     *extra], capsys)
    one_line(code, err, message)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--steps", "1,1001"], "--steps[1]: Input should be less than or equal to 1000"),
    (["--guidance-scale", "1,nan"], "--guidance-scale[1]: Input should be a finite number"),
    (["--seed", "-5"], "Invalid value for '--seed'"),
    (["--prefer-fast-within", "nan"], "--prefer-fast-within: must be a finite number"),
    (["--device", "tpu"], "--device tpu"),
], ids=["steps-1-and-1001", "guidance-scale-1-and-nan", "seed-minus-5", "prefer-fast-within-nan", "device-tpu"])
def test_sweep_option(extra, message, tmp_path, capsys):
    code, err = run(["sweep", "--data", "shapes-gen:4", "--model", str(tmp_path / "m"), "--out",
                     str(tmp_path / "s.json"), *extra], capsys)
    one_line(code, err, message)


@pytest.mark.parametrize(("argv", "message"), [
    (["analyze-timesteps", "--data", "shapes-gen:4", "--device", "tpu"], "--device tpu"),
    (["analyze-timesteps", "--data", "shapes-gen:4", "--seed", "-5"], "Invalid value for '--seed'"),
    (["mcp", "--device", "cuda:99"], "--device cuda:99"),
    (["mcp", "--client-memory-mb", "2048"], "--client-memory-mb (2048) must not exceed --total-memory-mb"),
    (["mcp", "--max-clients", "0"], "Invalid value for '--max-clients'"),
    (["mcp", "--http", "192.0.2.1:8765"], "cannot serve on 192.0.2.1:8765 (Cannot assign requested address)"),
    (["mcp", "--http", ""], "--http expects HOST:PORT"),
    (["mcp", "--batch-wait-ms", "1e300"], "Invalid value for '--batch-wait-ms'"),  # was: every request hung
    (["train", "--lr", "inf"], "--lr: must be a finite number"),
    (["train", "--cfg-dropout", "1.5"], "--cfg-dropout: Input should be less than or equal to 1"),
    (["train", "--task", "depth", "--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    (["train", "--weight-decay", "1e308"], "--weight-decay: Input should be less than or equal to 1"),  # was: a
    # model of non-finite weights, saved with exit 0
    (["train", "--task", "depth", "--weight-decay", "2"], "--weight-decay: Input should be less than or equal to 1"),
    (["effects", "--threads", "99999"], "--threads must be 1 …"),
    (["eval", "--data", "shapes-gen:2", "--decode-size", "100000"], "--decode-size: Input should be less than or "
                                                                    "equal to 4096"),  # was: minutes of resizing
    (["bundle", "nowhere", "--steps", "1001"], "--steps: Input should be less than or equal to 1000"),
    (["bundle", "nowhere", "--guidance-scale", "nan"], "--guidance-scale: must be a finite number"),
    (["data", "shapes", "--seed", "-1"], "Invalid value for '--seed'"),
    (["no-such-command"], "No such command 'no-such-command'"),
], ids=["analyze-device-tpu", "analyze-seed-minus-5", "mcp-device-cuda-99", "mcp-client-memory-over-total",
        "mcp-max-clients-0", "mcp-http-address-not-on-this-machine", "mcp-http-empty", "mcp-batch-wait-1e300",
        "train-lr-inf",
        "train-cfg-dropout-1.5", "train-depth-seed-minus-5", "train-weight-decay-1e308", "train-depth-weight-decay-2",
        "effects-threads-99999", "eval-decode-size-100000", "bundle-steps-1001", "bundle-guidance-nan",
        "data-shapes-seed-minus-1", "unknown-command"])
def test_other_command_option(argv, message, tmp_path, capsys):
    if argv[0] in ("analyze-timesteps", "train", "data", "effects", "eval"):
        argv = [*argv, "--out", str(tmp_path / "o")]
    code, err = run(argv, capsys)
    one_line(code, err, message)
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------------- --out
def out_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    foreign = tmp_path / "holds-other-files"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    return {"out-is-a-file": (a_file, "exists and is not a folder"),
            "out-below-a-file": (a_file / "below", "cannot write there"),
            "out-on-read-only-sysfs": (Path("/sys/addp-out"), "cannot write there"),
            "out-holding-other-files": (foreign, "holds files that are not an earlier")}


def command_argv(command: str, image: Path, tmp_path: Path) -> list[str]:
    model = str(tmp_path / "no-model")
    return {"segment": ["segment", str(image), "the circle", "--model", model],
            "depth": ["depth", str(image), "--model", model],
            "agent": ["agent", str(image), "the circle", "--model", model],
            "eval": ["eval", "--data", "shapes-gen:2", "--model", model],
            "eval-depth": ["eval", "--task", "depth", "--data", "synthetic:2", "--model", model],
            "analyze-timesteps": ["analyze-timesteps", "--data", "shapes-gen:2", "--model", model],
            "train": ["train", "--steps", "1"],
            "train-depth": ["train", "--task", "depth", "--steps", "1"],
            "data-shapes": ["data", "shapes", "--n", "2"],
            "data-scenes": ["data", "scenes", "--n", "2", "--size", "64"]}[command]


FOLDER_COMMANDS = ["segment", "depth", "agent", "eval", "eval-depth", "analyze-timesteps", "train", "train-depth",
                   "data-shapes", "data-scenes"]


@pytest.mark.parametrize("case", ["out-is-a-file", "out-below-a-file", "out-on-read-only-sysfs",
                                  "out-holding-other-files"])
@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_unwritable_out_fails_before_any_work(command, case, image, tmp_path, capsys):
    out, message = out_cases(tmp_path)[case]
    if case == "out-holding-other-files" and command in ("data-shapes", "data-scenes"):
        pytest.skip("exports merge into a folder (splits of one data root): other files there are kept")
    code, err = run([*command_argv(command, image, tmp_path), "--out", str(out)], capsys)
    one_line(code, err, message)
    if case == "out-holding-other-files":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_sweep_out_that_is_a_folder_or_below_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out, message in ((tmp_path, "not a writable file path"), (tmp_path / "f" / "s.json", "cannot write there")):
        code, err = run(["sweep", "--data", "shapes-gen:4", "--model", str(tmp_path / "m"), "--out", str(out)],
                        capsys)
        one_line(code, err, message)


def test_bundle_target_that_is_not_a_pipeline_folder(tmp_path, capsys):
    target = tmp_path / "home"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    code, err = run(["bundle", str(tmp_path / "nowhere"), "--target", str(target)], capsys)
    one_line(code, err, "not a pipeline folder")
    assert (target / "notes.txt").read_text() == "mine"


def run_unprivileged(argv: list[str], capsys) -> tuple[int, str]:
    """``run(argv)`` as ``nobody`` (see :func:`unprivileged`), after one run as this user so that every module the
    command imports is loaded (``nobody`` may not read the interpreter's files)."""
    exit_code(argv)
    capsys.readouterr()
    with unprivileged():
        return run(argv, capsys)


@contextmanager
def unprivileged():
    """Permission bits apply: as root, act as ``nobody`` for the block (root writes into read-only folders)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_read_only_out_folder_fails_before_any_work(image, capsys):
    shared = Path(tempfile.mkdtemp(prefix="addp-ro-"))  # traversable by an unprivileged user, unlike pytest's
    try:
        shared.chmod(0o755)
        read_only = shared / "read-only"
        read_only.mkdir()
        read_only.chmod(0o555)
        code, err = run_unprivileged(["segment", str(image), "the circle", "--model", str(shared / "no-model"),
                                      "--out", str(read_only)], capsys)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    one_line(code, err, "cannot write there")
    assert "Permission denied" in err


def test_mcp_http_port_in_use_fails_before_the_models_load(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(["mcp", "--model", "no-model-needed", "--http", f"127.0.0.1:{port}"], capsys)
    one_line(code, err, f"cannot serve on 127.0.0.1:{port} (Address already in use)")


@pytest.mark.parametrize("command", ["segment", "depth", "agent"])
def test_unreadable_image_is_one_line(command, image, capsys):
    shared = Path(tempfile.mkdtemp(prefix="addp-eacces-"))
    try:
        shared.chmod(0o777)
        locked = shared / "locked.png"
        shutil.copy(image, locked)
        locked.chmod(0o000)
        code, err = run_unprivileged([*command_argv(command, locked, shared), "--out", str(shared / "o")], capsys)
        assert not (shared / "o").exists()
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    one_line(code, err, "cannot read it (Permission denied)")


# -------------------------------------------------------------------------------------------- data specs
@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """One split (test) of every exported layout, 2 samples each."""
    root = tmp_path_factory.mktemp("exports")
    for fmt in ("refer", "cris"):
        with pytest.raises(SystemExit) as exit_info:
            main(["data", "shapes", "--out", str(root / f"shapes-{fmt}"), "--split", "test", "--n", "2", "--format",
                  fmt])
        assert exit_info.value.code == 0
    for fmt in ("grefs", "refer", "cris", "clevr-ref", "depth"):
        with pytest.raises(SystemExit) as exit_info:
            main(["data", "scenes", "--out", str(root / f"scenes-{fmt}"), "--split", "test", "--n", "2", "--size",
                  "64", "--format", fmt])
        assert exit_info.value.code == 0
    return root


SPECS = {
    "shapes-gen-minus-5": ("shapes-gen:-5", "test", "n must be ≥ 1"),
    "shapes-gen-0": ("shapes-gen:0", "test", "n must be ≥ 1"),
    "shapes-gen-seed-minus-1": ("shapes-gen:4:-1", "test", "seed must be in 0.."),
    "shapes-gen-size-7": ("shapes-gen:4:0:7", "test", "size must be in 32..1024"),
    "shapes-gen-split-bogus": ("shapes-gen:4", "bogus", "unknown split 'bogus'; Shapes-Ref has train, val, test"),
    "scenes-gen-0": ("scenes-gen:0", "test", "N must be ≥ 1"),
    "scenes-gen-split-bogus": ("scenes-gen:2:0:64", "bogus", "unknown Scenes-3D split 'bogus'; use one of"),
    "shapes-refer-split-bogus": ("shapes:{root}/shapes-refer", "bogus", "unknown split 'bogus' (splits present: "
                                                                        "['test']"),
    "shapes-cris-split-bogus": ("shapes:{root}/shapes-cris", "bogus", "unknown split 'bogus' for shapes (splits "
                                                                      "present: ['test'])"),
    "scenes-grefs-split-bogus": ("scenes:{root}/scenes-grefs", "bogus", "no refs in split 'bogus' (splits present: "
                                                                        "['test'])"),
    "scenes-refer-split-val": ("scenes:{root}/scenes-refer", "val", "no refs in split 'val' (splits present: "
                                                                    "['test'])"),
    "scenes-clevr-ref-split-bogus": ("scenes:{root}/scenes-clevr-ref", "bogus", "no CLEVR-Ref+ split 'bogus' here "
                                                                                "(splits present: ['test'])"),
    "refer-split-bogus": ("refer:{root}/shapes-refer:shapes:unc", "bogus", "unknown split 'bogus'"),
    "cris-split-train": ("cris:{root}/shapes-cris:shapes", "train", "unknown split 'train' for shapes (splits "
                                                                    "present: ['test'])"),
    "grefcoco-split-bogus": ("grefcoco:{root}/scenes-grefs:scenes3d", "bogus", "no refs in split 'bogus' (splits "
                                                                               "present: ['test'])"),
    "clevr-ref-split-bogus": ("clevr-ref:{root}/scenes-clevr-ref", "bogus", "(splits present: ['test'])"),
}


@pytest.mark.parametrize("case", list(SPECS))
def test_eval_data_spec_leaves_nothing_behind(case, exports, tmp_path, capsys):
    spec, split, message = SPECS[case]
    out = tmp_path / "run"
    code, err = run(["eval", "--data", spec.format(root=exports), "--split", split, "--model",
                     str(tmp_path / "no-model"), "--critic", "none", "--out", str(out)], capsys)
    one_line(code, err, message)
    assert not out.exists()  # no config.json left behind


DEPTH_SPECS = {
    "depth-scenes-gen-0": ("scenes-gen:0:0:64", "test", "N must be ≥ 1"),
    "depth-synthetic-seed-minus-2": ("synthetic:2:-2", "test", "SEED must be in 0.."),
    "depth-synthetic-split-bogus": ("synthetic:2", "bogus", "unknown split 'bogus'"),
    "depthdir-split-bogus": ("depthdir:{root}/scenes-depth", "bogus", "no depth split 'bogus' (splits present: "
                                                                      "['test'])"),
    "nyu-split-bogus": ("nyu:{root}/scenes-depth", "bogus", "no such list file"),
}


@pytest.mark.parametrize("case", list(DEPTH_SPECS))
def test_eval_depth_data_spec_leaves_nothing_behind(case, exports, tmp_path, capsys):
    spec, split, message = DEPTH_SPECS[case]
    out = tmp_path / "run"
    code, err = run(["eval", "--task", "depth", "--data", spec.format(root=exports), "--split", split, "--model",
                     str(tmp_path / "no-model"), "--out", str(out)], capsys)
    one_line(code, err, message)
    assert not out.exists()


def test_steps_beyond_the_models_scheduler_are_a_user_error(tiny_pixel_dir, image, tmp_path, capsys):
    model = tmp_path / "short-schedule"
    shutil.copytree(tiny_pixel_dir, model)
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "num_train_timesteps": 100}))
    code, err = run(["segment", str(image), "the circle", "--model", str(model), "--steps", "101", "--out",
                     str(tmp_path / "o"), "--quiet"], capsys)
    one_line(code, err, "this model's scheduler has 100 timesteps, so at most 100 steps; got 101")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [["data", "shapes", "--n", "2", "--out", ""], ["eval", "--data", "shapes-gen:2",
                                  "--out", ""], ["manifests", "--dir", ""], ["train", "--steps", "1", "--out", ""]],
                         ids=["data-shapes", "eval", "manifests", "train"])
def test_out_that_is_the_current_folder_is_one_line_and_writes_nothing(argv, tmp_path, monkeypatch, capsys):
    """`--out ''` is the current folder: it used to end in "Device or resource busy: '.'" (and eval left its
    config.json there)."""
    monkeypatch.chdir(tmp_path)
    code, err = run(argv, capsys)
    one_line(code, err, "is the current folder or holds it")
    assert not any(tmp_path.iterdir())


def test_segment_out_dot_is_one_line(image, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err = run(["segment", str(image), "the circle", "--out", ".", "--quiet"], capsys)
    one_line(code, err, "is the current folder or holds it")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("below", ["", "sub"], ids=["out-is-a-file", "out-below-a-file"])
def test_effects_out_that_is_or_is_below_a_file(below, tmp_path, capsys):
    """Used to end in FileExistsError / NotADirectoryError tracebacks."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, err = run(["effects", "--steps", "1", "--out", str(a_file / below if below else a_file)], capsys)
    one_line(code, err, "a-file")
    assert a_file.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_eval_into_a_folder_of_other_files_is_refused_and_keeps_them(tmp_path, capsys):
    """eval used to write its files among the user's (and overwrite any of the same names)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    code, err = run(["eval", "--data", "shapes-gen:2", "--model", str(tmp_path / "no-model"), "--out", str(folder)],
                    capsys)
    one_line(code, err, "holds files that are not an earlier `addp eval` output (notes.txt)")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_eval_into_a_folder_with_another_commands_config_is_one_short_line(tmp_path, capsys):
    """A model's unet/ folder holds a config.json too: that used to print a 157-line pydantic dump."""
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", "sample_size": 16}))
    code, err = run(["eval", "--data", "shapes-gen:2", "--model", str(tmp_path / "no-model"), "--out", str(folder)],
                    capsys)
    one_line(code, err, "config.json: not an evaluation's settings")
    assert len(err) < 300 and sorted(p.name for p in folder.iterdir()) == ["config.json"]
