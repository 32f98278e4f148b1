"""`addp segment`: outputs, and one clear error (exit 2, nothing written) for each bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_support import run_cli as run
from PIL import Image

from addp_agent.masks import decode_rle


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def segment_args(image, out, model, *extra):
    return ["segment", str(image), "the large green circle", "--model", str(model), "--steps", "2", "--out", str(out),
            "--quiet", *extra]


def test_writes_mask_overlay_and_result_json(image_path, tmp_path, tiny_pixel_dir, capsys):
    out = tmp_path / "out"
    code, _, err = run(segment_args(image_path, out, tiny_pixel_dir, "--correction", "the blue square",
                                    "--correction", "the cross", "--seed", "3"), capsys)
    assert code == 0, err
    mask = Image.open(out / "mask.png")
    assert mask.mode == "L" and mask.size == (56, 40)
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    record = json.loads((out / "result.json").read_text())
    assert record["expression"] == "the large green circle" and record["seed"] == 3
    assert record["corrections"] == ["the blue square", "the cross"] and record["settings"]["num_inference_steps"] == 2
    assert np.array_equal(decode_rle(record["mask_rle"]), np.asarray(mask) > 0)
    assert record["area"] == int((np.asarray(mask) > 0).sum()) and len(record["bbox"]) == 4
    assert {"encode_s", "denoise_s", "total_s"} <= set(record["timings"])
    assert Image.open(out / "overlay.png").size == (56, 40)
    assert not [p for p in out.iterdir() if p.name.startswith(".addp-")]  # no staging leftovers


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA"])
def test_image_modes_are_converted(mode, tmp_path, tiny_pixel_dir, capsys):
    array = np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    image = image.convert("I;16") if mode == "I;16" else image.convert(mode)
    path = tmp_path / f"in-{mode.replace(';', '')}.png"
    image.save(path)
    code, _, err = run(segment_args(path, tmp_path / "o", tiny_pixel_dir), capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "o" / "mask.png").size == (24, 24)


def make_bad_inputs(tmp_path, image_path, tiny_pixel_dir):
    text_png = tmp_path / "notes.png"
    text_png.write_text("this is not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(image_path.read_bytes()[:200])
    truncated_jpeg = tmp_path / "truncated.jpg"
    Image.open(image_path).save(tmp_path / "full.jpg")
    truncated_jpeg.write_bytes((tmp_path / "full.jpg").read_bytes()[:300])
    no_unet = tmp_path / "no-unet"
    shutil.copytree(tiny_pixel_dir, no_unet)
    shutil.rmtree(no_unet / "unet")
    no_vocabulary = tmp_path / "no-vocabulary"  # the tokenizer/ folder is there, its files are not
    shutil.copytree(tiny_pixel_dir, no_vocabulary)
    for file in (no_vocabulary / "tokenizer").iterdir():
        file.unlink()

    def edited(name: str, file: str, edit) -> object:
        """A copy of the tiny model whose ``file`` (JSON) holds ``edit(parsed)`` (bytes are written as they are)."""
        folder = tmp_path / name
        shutil.copytree(tiny_pixel_dir, folder)
        value = edit(json.loads((folder / file).read_text()))
        (folder / file).write_bytes(value if isinstance(value, bytes) else json.dumps(value).encode())
        return folder

    index, scheduler = "model_index.json", "scheduler/scheduler_config.json"
    return {
        "missing file": (tmp_path / "nope.png", "the circle", tiny_pixel_dir, "no such file"),
        "text named .png": (text_png, "the circle", tiny_pixel_dir, "not a readable image"),
        "truncated png": (truncated, "the circle", tiny_pixel_dir, "damaged or truncated"),
        "truncated jpeg": (truncated_jpeg, "the circle", tiny_pixel_dir, "damaged or truncated"),
        "empty expression": (image_path, "", tiny_pixel_dir, "expression is empty"),
        "whitespace expression": (image_path, " \t\n ", tiny_pixel_dir, "expression is empty; give"),
        "control-character expression": (image_path, "\x07\u200b\ud800", tiny_pixel_dir,
                                         "expression is empty (it held only control or unencodable characters)"),
        "model path missing": (image_path, "the circle", tmp_path / "no-model", "does not exist"),
        "model missing a component": (image_path, "the circle", no_unet, "component 'unet' is missing"),
        "model index a JSON list": (image_path, "the circle", edited("index-list", index, lambda _: []),
                                    "a JSON object of components expected, got list"),
        "model index not UTF-8": (image_path, "the circle", edited("index-latin1", index, lambda _: b'{"a": "\xff"}'),
                                  "model_index.json: malformed JSON"),
        "model index component a number": (image_path, "the circle",
                                           edited("index-unet-5", index, lambda i: {**i, "unet": 5}),
                                           "component 'unet' is missing"),
        "model scheduler of 0 timesteps": (image_path, "the circle",
                                           edited("no-timesteps", scheduler, lambda c: {**c, "num_train_timesteps": 0}),
                                           "cannot load as an InstructPix2Pix-format model"),
        "model tokenizer without its files": (image_path, "the circle", no_vocabulary,
                                              "the tokenizer is empty or damaged"),
    }


@pytest.mark.parametrize("case", ["missing file", "text named .png", "truncated png", "truncated jpeg",
                                  "empty expression", "whitespace expression", "control-character expression",
                                  "model path missing",
                                  "model missing a component", "model index a JSON list", "model index not UTF-8",
                                  "model index component a number", "model scheduler of 0 timesteps",
                                  "model tokenizer without its files"])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, image_path, tiny_pixel_dir, capsys):
    image, expression, model, message = make_bad_inputs(tmp_path, image_path, tiny_pixel_dir)[case]
    out = tmp_path / "out"
    code, _, err = run(["segment", str(image), expression, "--model", str(model), "--out", str(out), "--quiet"],
                       capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_unet_with_wrong_input_channels_is_refused(tmp_path, image_path, capsys):
    from conftest import build_tiny_pixel
    from diffusers import UNet2DConditionModel

    pipe = build_tiny_pixel()
    config = dict(pipe.unet.config)
    config["in_channels"] = 5
    pipe.register_modules(unet=UNet2DConditionModel.from_config(config))
    pipe.save_pretrained(tmp_path / "bad-unet")
    code, _, err = run(segment_args(image_path, tmp_path / "out", tmp_path / "bad-unet"), capsys)
    assert code == 2 and "input channels" in err and not (tmp_path / "out").exists()


def test_image_over_the_pixel_cap_is_refused(tmp_path, tiny_pixel_dir, capsys, monkeypatch):
    import addp_agent.images

    monkeypatch.setattr(addp_agent.images, "MAX_PIXELS", 1000)
    path = tmp_path / "big.png"
    Image.new("RGB", (50, 40)).save(path)
    code, _, err = run(segment_args(path, tmp_path / "out", tiny_pixel_dir), capsys)
    assert code == 2 and "over the" in err and "cap" in err


def test_expression_over_the_token_limit_is_truncated_with_a_warning(image_path, tmp_path, tiny_pixel_dir, capsys):
    words = " ".join(["a"] * 120)  # 239 characters (under the 300 the tools allow too), 120 tokens (over 77)
    code, _, err = run(segment_args(image_path, tmp_path / "o", tiny_pixel_dir)[:2] + [words]
                       + segment_args(image_path, tmp_path / "o", tiny_pixel_dir)[3:], capsys)
    assert code == 0 and "truncated" in err


def test_real_process_exit_code_and_no_traceback(tmp_path, tiny_pixel_dir):
    result = subprocess.run([sys.executable, "-m", "addp_agent", "segment", str(tmp_path / "missing.png"), "x",
                             "--model", str(tiny_pixel_dir), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no such file") and "Traceback" not in result.stderr


def test_found_instances_and_not_found_in_result_json_and_the_printed_line(image_path, tmp_path, red_dir, capsys):
    from test_tools_generalized import strict_copy

    out = tmp_path / "found"
    args = ["segment", str(image_path), "the cube", "--steps", "1", "--out", str(out), "--correction", "the sphere",
            "--correction-mode", "paper"]
    code, printed, err = run([*args, "--model", str(red_dir)], capsys)
    assert code == 0, err
    record = json.loads((out / "result.json").read_text())
    assert record["found"] is True and record["found_rule"] is None and record["settings"]["correction_mode"] == "paper"
    count = len(record["instances"])
    assert count >= 1 and all(set(i) == {"bbox", "area", "area_fraction"} for i in record["instances"])
    assert printed.startswith(f"found: {count} instance") and f"{record['area']} px" in printed

    strict = strict_copy(red_dir, tmp_path / "strict")
    code, printed, err = run([*args, "--model", str(strict), "--out", str(tmp_path / "missing")], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "missing" / "result.json").read_text())
    assert record["found"] is False and record["instances"] == [] and record["area"] == 0
    assert record["found_rule"] == {"statistic": "area_fraction", "threshold": 2.0}
    assert printed.startswith("not found: nothing painted above the model's calibrated threshold; the mask is empty")
    assert not (np.asarray(Image.open(tmp_path / "missing" / "mask.png")) > 0).any()


def test_unknown_correction_mode_is_one_line(image_path, tmp_path, tiny_pixel_dir, capsys):
    code, _, err = run(segment_args(image_path, tmp_path / "o", tiny_pixel_dir, "--correction-mode", "sideways"),
                       capsys)
    assert code == 2 and err.strip() == "error: --correction-mode: Input should be 'additive', 'replace' or 'paper'"
    assert not (tmp_path / "o").exists()
