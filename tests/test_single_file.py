"""Single-file checkpoints in the original (ldm) layout: a tiny model written here by our own key mapping loads
through diffusers' single-file loading with the shipped configs and paints exactly what its diffusers twin paints;
files of another architecture or of the wrong shape get one clear line that names the key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from original_layout import original_state_dict
from PIL import Image
from safetensors.torch import save_file

from addp_agent.cli import main
from addp_agent.errors import ModelLoadError
from addp_agent.models.registry import load_pipeline
from addp_agent.models.single_file import CONFIGS_DIR

PROMPT = "the large green circle"


@pytest.fixture(scope="module")
def twin(tmp_path_factory, one_thread):
    """The tiny SD-shaped model as a diffusers folder, and the same weights as single files beside it."""
    from addp_agent.models.build import build_tiny_latent_pipeline

    root = tmp_path_factory.mktemp("single-file")
    pipe = build_tiny_latent_pipeline(seed=4)
    pipe.save_pretrained(root / "twin")
    state = original_state_dict(pipe)
    save_file(state, root / "tiny.safetensors")
    torch.save({"state_dict": original_state_dict(pipe, ema_offset=0.05), "global_step": 12}, root / "tiny-ema.ckpt")
    pipe.tokenizer.save_pretrained(root / "tokenizer")  # a single file holds no tokenizer: it sits beside the file
    return root


def painted(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 40, 3), dtype=np.uint8))
    return pipe(PROMPT, image, num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np",
                **kwargs)


@pytest.mark.parametrize("name", ["tiny.safetensors", "tiny-ema.ckpt"])
def test_single_file_paints_what_its_diffusers_twin_paints(twin, name):
    expected = painted(load_pipeline(twin / "twin", device="cpu", progress=False))
    loaded = load_pipeline(twin / name, device="cpu", progress=False)
    got = painted(loaded)
    assert float(np.abs(got.images - expected.images).max()) == 0.0  # the same weights, bit for bit
    assert np.array_equal(got.masks[0], expected.masks[0])
    twin_config = load_pipeline(twin / "twin", device="cpu", progress=False).resolve_settings()
    assert loaded.resolve_settings() == twin_config  # the shipped tiny config keeps the recipe defaults


def test_the_mixin_loads_the_file_with_a_local_config(twin):
    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_single_file(str(twin / "tiny.safetensors"), config=str(twin / "twin"),
                                         local_files_only=True)
    expected = painted(load_pipeline(twin / "twin", device="cpu", progress=False)).images
    assert float(np.abs(painted(pipe).images - expected).max()) == 0.0


def test_cli_segment_takes_a_single_file(twin, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    masks = []
    for model in (twin / "tiny.safetensors", twin / "twin"):
        out = tmp_path / model.name
        with pytest.raises(SystemExit) as exit_info:
            main(["segment", str(image), PROMPT, "--model", str(model), "--steps", "2", "--out", str(out),
                  "--quiet"])
        assert exit_info.value.code == 0, capsys.readouterr().err
        masks.append(json.loads((out / "result.json").read_text())["mask_rle"])
    assert masks[0] == masks[1]


def broken(twin: Path, tmp_path: Path, change) -> Path:
    from safetensors.torch import load_file

    state = load_file(twin / "tiny.safetensors")
    change(state)
    path = tmp_path / "broken.safetensors"
    save_file(state, path)
    (tmp_path / "tokenizer").symlink_to(twin / "tokenizer")
    return path


KEY = "model.diffusion_model.input_blocks.1.0.in_layers.2.weight"


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.update({KEY: s[KEY][:, :16].contiguous()}), f"'{KEY}' has shape \\(32, 16, 3, 3\\) in the file"),
    (lambda s: s.pop("model.diffusion_model.out.2.bias"), "'model.diffusion_model.out.2.bias' is missing"),
    (lambda s: s.update({"model.diffusion_model.input_blocks.9.0.op.weight": torch.zeros(2)}),
     "'model.diffusion_model.input_blocks.9.0.op.weight' has no place"),
    (lambda s: s.update({"first_stage_model.encoder.conv_in.weight": torch.zeros(32, 3, 1, 1)}),
     "'first_stage_model.encoder.conv_in.weight' has shape \\(32, 3, 1, 1\\)"),
    (lambda s: s.update({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3)}),
     "takes 4 input channels, not InstructPix2Pix"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("cond_stage_model.")], "text encoder"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("first_stage_model.")], "without its VAE"),
    (lambda s: [s.update({k.replace("model.diffusion_model.", "unet."): s.pop(k)}) for k in list(s)
                if k.startswith("model.diffusion_model.")], "not an InstructPix2Pix checkpoint in the original"),
])
def test_wrong_files_name_what_is_wrong(twin, tmp_path, change, message):
    with pytest.raises(ModelLoadError, match=message) as error:
        load_pipeline(broken(twin, tmp_path, change), device="cpu", progress=False)
    assert "\n" not in str(error.value)


def test_unreadable_and_foreign_files(twin, tmp_path):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file" * 8)
    with pytest.raises(ModelLoadError, match="cannot read the checkpoint"):
        load_pipeline(garbage, device="cpu")
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    with pytest.raises(ModelLoadError, match="not an InstructPix2Pix checkpoint.*keys start with fc"):
        load_pipeline(foreign, device="cpu")
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a model folder or a single-file checkpoint"):
        load_pipeline(other, device="cpu")
    lonely = tmp_path / "lonely" / "tiny.safetensors"
    lonely.parent.mkdir()
    lonely.write_bytes((twin / "tiny.safetensors").read_bytes())
    with pytest.raises(ModelLoadError, match="holds no tokenizer"):
        load_pipeline(lonely, device="cpu")


def test_cli_reports_a_wrong_file_in_one_line(twin, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    path = broken(twin, tmp_path, lambda s: s.update({KEY: s[KEY][:, :16].contiguous()}))
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(image), PROMPT, "--model", str(path), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and KEY in err
    assert not (tmp_path / "o").exists()


def test_shipped_instruct_pix2pix_config_is_the_original_architecture():
    """The shipped SD-1.x InstructPix2Pix config is what diffusers derives from the original hyper-parameters
    (model channels 320, multipliers 1-2-4-4, attention at 4-2-1, 2 blocks, 8 heads, context 768, 8 input
    channels; the SD VAE), and a file of that architecture in the original layout fits it key for key."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    from addp_agent.models.single_file import first_mismatch

    folder = CONFIGS_DIR / "instruct-pix2pix"
    ldm = {"model": {"params": {"scale_factor": 0.18215, "unet_config": {"params": {
        "in_channels": 8, "out_channels": 4, "model_channels": 320, "channel_mult": [1, 2, 4, 4],
        "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "num_heads": 8, "context_dim": 768,
        "transformer_depth": 1}}, "first_stage_config": {"params": {"ddconfig": {
            "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "z_channels": 4, "in_channels": 3,
            "out_ch": 3}}}}}}
    derived = create_unet_diffusers_config_from_ldm(ldm, {}, image_size=512)
    shipped = json.loads((folder / "unet" / "config.json").read_text())
    assert {k: shipped[k] for k in derived if k in shipped} == {k: v for k, v in derived.items() if k in shipped}

    class Meta:  # an SD-1.x-size InstructPix2Pix on the meta device: the layout, without a GB of weights
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
            from transformers import CLIPTextConfig, CLIPTextModel
            text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))

    # one-element tensors expanded to each shape: every key has its own storage, as in a real file
    state = {k: torch.zeros(1).expand(v.shape) for k, v in original_state_dict(Meta).items()}
    assert len([k for k in state if k.startswith("model.diffusion_model.")]) == 686
    assert first_mismatch(folder, state, ema=False) is None
