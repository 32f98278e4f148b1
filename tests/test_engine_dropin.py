"""ADDPPipeline as a drop-in for diffusers' StableDiffusionInstructPix2PixPipeline.

The behaviour diffusers' own InstructPix2Pix fast tests and ``PipelineTesterMixin`` check, written here against the
stock pipeline itself: both are built from the very same tiny components and given the same inputs, and must agree
within 1e-5 (call signature, components, save/load, batches, several images per prompt, callbacks, pt/np/pil inputs
and outputs, image latents, negative prompts, embeddings, non-square sizes, dtype, return types).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image

from addp_agent.engine import ADDPPipeline
from addp_agent.engine.pipeline import STOCK_DEFAULTS
from addp_agent.errors import UserError

PROMPT = "the large green circle"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def components(one_thread):
    """The tiny SD-shaped InstructPix2Pix components (random weights), as a stock components dict."""
    from addp_agent.models.build import build_tiny_latent_pipeline

    parts = dict(build_tiny_latent_pipeline(seed=0).components)
    assert {"safety_checker", "feature_extractor", "image_encoder"} <= set(parts)
    return parts


def pipelines(components, **overrides):
    parts = {**components, **overrides}
    stock = StableDiffusionInstructPix2PixPipeline(**parts, requires_safety_checker=False)
    ours = ADDPPipeline(**parts)
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
    return stock, ours


def picture(height=32, width=32, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def both(stock, ours, **inputs):
    """The stock and ADDP outputs of one call (fresh generators seeded alike)."""
    def run(pipe):
        seeded = dict(inputs)
        seeds = seeded.pop("seeds", 0)
        seeded["generator"] = ([torch.Generator().manual_seed(s) for s in seeds] if isinstance(seeds, list)
                               else torch.Generator().manual_seed(seeds))
        return pipe(**seeded)
    return run(stock), run(ours)


def close(a, b, tolerance=TOLERANCE) -> float:
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    b = b.cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    difference = float(np.abs(a - b).max())
    assert difference <= tolerance, difference
    return difference


BASE = dict(num_inference_steps=2, guidance_scale=6.0, image_guidance_scale=1.5, output_type="np")


# ------------------------------------------------------------------------------------ signature and components
def test_call_takes_every_stock_argument_in_the_stock_order():
    stock = [p for p in inspect.signature(StableDiffusionInstructPix2PixPipeline.__call__).parameters.values()
             if p.name not in ("self", "kwargs")]
    ours = list(inspect.signature(ADDPPipeline.__call__).parameters.values())[1:]
    assert [p.name for p in ours[:len(stock)]] == [p.name for p in stock]
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in ours[:len(stock)])
    addp_own = ours[len(stock):]
    assert {"corrections", "correction_scale", "correction_mode", "stop_after_step", "state", "encoded",
            "trajectory_every", "threshold", "resolution"} <= {p.name for p in addp_own}
    assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in addp_own)


def test_defaults_are_the_stock_defaults_when_the_model_names_none(components):
    stock_defaults = {name: p.default for name, p in
                      inspect.signature(StableDiffusionInstructPix2PixPipeline.__call__).parameters.items()
                      if name in STOCK_DEFAULTS}
    assert stock_defaults == STOCK_DEFAULTS
    settings = ADDPPipeline(**components).resolve_settings()
    assert {k: settings[k] for k in STOCK_DEFAULTS} == STOCK_DEFAULTS


def test_stock_components_from_pipe_and_back(components):
    stock, _ = pipelines(components)
    ours = ADDPPipeline.from_pipe(stock)
    assert set(ours.components) == set(stock.components) | {"vae"}
    assert ours.unet is stock.unet and ours.safety_checker is None and ours.image_encoder is None
    back = StableDiffusionInstructPix2PixPipeline.from_pipe(ours)
    assert back.unet is stock.unet
    ours.set_progress_bar_config(disable=True)
    expected, got = both(stock, ours, prompt=PROMPT, image=picture(), **BASE)
    close(got.images, expected.images)


def test_save_and_load_with_the_optional_components_left_out(components, tmp_path):
    _, ours = pipelines(components)
    before = ours(PROMPT, picture(), generator=torch.Generator().manual_seed(0), **BASE).images
    ours.save_pretrained(tmp_path)
    loaded = ADDPPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    for name in ("safety_checker", "feature_extractor", "image_encoder"):
        assert getattr(loaded, name) is None
    close(loaded(PROMPT, picture(), generator=torch.Generator().manual_seed(0), **BASE).images, before)
    stock = StableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    close(stock(PROMPT, picture(), generator=torch.Generator().manual_seed(0), **BASE).images, before)


# ------------------------------------------------------------------------------------------- the same result
@pytest.mark.parametrize("scheduler", [PNDMScheduler, DDIMScheduler, EulerAncestralDiscreteScheduler])
def test_positional_call_matches_stock(components, scheduler):
    config = {"skip_prk_steps": True} if scheduler is PNDMScheduler else {}
    stock, ours = pipelines(components, scheduler=scheduler(**config))
    args = (PROMPT, picture(), 3, 6.0, 1.5, "the small square")  # through negative_prompt, positionally
    expected = stock(*args, generator=torch.Generator().manual_seed(0), output_type="np").images
    got = ours(*args, generator=torch.Generator().manual_seed(0), output_type="np").images
    close(got, expected)


@pytest.mark.parametrize("size", [(32, 48), (48, 32), (40, 24), (37, 29)])
def test_non_square_inputs_keep_the_stock_size(components, size):
    stock, ours = pipelines(components)
    expected, got = both(stock, ours, prompt=PROMPT, image=picture(*size), **BASE)
    factor = ours.vae_scale_factor  # 2 for the tiny VAE (8 for SD's)
    assert got.images.shape == (1, size[0] - size[0] % factor, size[1] - size[1] % factor, 3)
    close(got.images, expected.images)
    assert got.masks[0].shape == size  # masks come back at the input's own size


def test_working_resolution_is_square_and_masks_keep_the_input_size(components):
    _, ours = pipelines(components)
    out = ours(PROMPT, picture(48, 32), resolution="working", generator=torch.Generator().manual_seed(0), **BASE)
    assert out.images.shape == (1, ours.resolution, ours.resolution, 3) and out.masks[0].shape == (48, 32)
    result = ours.segment(picture(48, 32), PROMPT, num_inference_steps=2)
    assert result.painted.shape == (ours.resolution, ours.resolution, 3) and result.mask.shape == (48, 32)


@pytest.mark.parametrize("negative", ["the small square", ["the small square", "a red ring"]])
def test_negative_prompts_match_stock(components, negative):
    stock, ours = pipelines(components)
    prompt = PROMPT if isinstance(negative, str) else [PROMPT, "the blue star"]
    expected, got = both(stock, ours, prompt=prompt, image=picture(), negative_prompt=negative, **BASE)
    close(got.images, expected.images)
    plain = ours(prompt, picture(), generator=torch.Generator().manual_seed(0), **BASE).images
    assert np.abs(plain - got.images).max() > 1e-4  # the negative prompt does something


def test_prompt_and_negative_embeddings_match_stock(components):
    stock, ours = pipelines(components)
    embeds, negative = ours.encode_text([PROMPT]), ours.encode_text(["the small square"])
    expected, got = both(stock, ours, prompt_embeds=embeds, negative_prompt_embeds=negative, image=picture(), **BASE)
    close(got.images, expected.images)
    by_text = ours(PROMPT, picture(), negative_prompt="the small square", generator=torch.Generator().manual_seed(0),
                   **BASE).images
    close(got.images, by_text)


@pytest.mark.parametrize(("prompts", "count"), [(1, 1), (1, 2), (2, 1), (2, 2), (3, 2)])
def test_images_per_prompt_match_stock(components, prompts, count):
    stock, ours = pipelines(components)
    prompt = PROMPT if prompts == 1 else [PROMPT, "the blue star", "the left one"][:prompts]
    expected, got = both(stock, ours, prompt=prompt, image=picture(), num_images_per_prompt=count,
                         seeds=list(range(prompts * count)), **BASE)
    assert len(got.images) == len(got.masks) == len(got.prompts) == prompts * count
    close(got.images, expected.images)


def test_several_images_per_prompt_keep_each_prompt_with_its_own_image(components):
    """Stock repeats a batch of B images as i0, i1, i0, i1 against prompts p0, p0, p1, p1 (its prompt and image
    rows disagree when B > 1 and num_images_per_prompt > 1); here each copy of a prompt keeps its own image."""
    _, ours = pipelines(components)
    images, prompts = [picture(seed=1), picture(seed=2)], [PROMPT, "the blue star"]
    together = ours(prompts, images, num_images_per_prompt=2, generator=[torch.Generator().manual_seed(s)
                                                                          for s in range(4)], **BASE).images
    for k in range(2):
        alone = ours(prompts[k], images[k], num_images_per_prompt=2, generator=[
            torch.Generator().manual_seed(2 * k + s) for s in range(2)], **BASE).images
        close(together[2 * k: 2 * k + 2], alone)


def test_batch_matches_stock_and_its_single_runs(components):
    stock, ours = pipelines(components)
    prompts = [PROMPT, "the blue star", " ".join(["very long"] * 40)]
    images = [picture(seed=s) for s in range(3)]
    with pytest.warns(UserWarning, match="truncated"):
        expected, got = both(stock, ours, prompt=prompts, image=images, seeds=[0, 1, 2], **BASE)
    close(got.images, expected.images)
    single = ours(prompts[0], images[0], generator=torch.Generator().manual_seed(0), **BASE).images
    close(got.images[:1], single)


# ------------------------------------------------------------------------------------- inputs and outputs
def image_as(kind: str, image: Image.Image, batch: int = 1):
    array = np.asarray(image).astype(np.float32) / 255.0
    if kind == "pil":
        return image if batch == 1 else [image] * batch
    if kind == "np":
        return array if batch == 1 else np.stack([array] * batch)
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return tensor[None].repeat(batch, 1, 1, 1)


@pytest.mark.parametrize("kind", ["pil", "np", "pt"])
def test_pil_numpy_and_tensor_inputs_match_stock_and_each_other(components, kind):
    stock, ours = pipelines(components)
    source = picture(32, 40)
    expected, got = both(stock, ours, prompt=[PROMPT, PROMPT], image=image_as(kind, source, 2), seeds=[0, 1],
                         **BASE)
    close(got.images, expected.images)
    reference = ours([PROMPT, PROMPT], [source, source], generator=[torch.Generator().manual_seed(s) for s in (0, 1)],
                     **BASE).images
    close(got.images, reference, 1e-5 if kind != "pil" else 0.0)


def test_float_inputs_are_not_quantised(components):
    _, ours = pipelines(components)
    array = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    latents = ours.encode_images(array, resolution=None)
    with torch.no_grad():
        exact = ours.condition_latents(torch.from_numpy(array * 2 - 1).permute(2, 0, 1)[None])
    quantised = ours.encode_images((array * 255).round().astype(np.uint8), resolution=None)
    assert (latents - exact).abs().max() < TOLERANCE < 10 * TOLERANCE < (latents - quantised).abs().max()


def test_image_latents_as_input(components):
    stock, ours = pipelines(components)
    pixels = image_as("pt", picture())
    latents = ours.vae.encode(pixels * 2 - 1).latent_dist.mode()
    expected, got = both(stock, ours, prompt=PROMPT, image=latents, **BASE)
    close(got.images, expected.images)
    close(got.images, ours(PROMPT, pixels, generator=torch.Generator().manual_seed(0), **BASE).images)
    assert got.masks[0].shape == (32, 32)


def test_noise_latents_input_matches_stock(components):
    stock, ours = pipelines(components)
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    expected, got = both(stock, ours, prompt=PROMPT, image=picture(), latents=noise, **BASE)
    close(got.images, expected.images)
    with pytest.raises(UserError, match="do not match"):
        ours(PROMPT, picture(), latents=noise[:, :, :2], **BASE)


def test_output_types_and_return_tuple_match_stock(components):
    stock, ours = pipelines(components)
    outputs = {}
    for kind in ("pt", "np", "pil", "latent"):
        expected, got = both(stock, ours, prompt=PROMPT, image=picture(), **{**BASE, "output_type": kind})
        expected_tuple, got_tuple = both(stock, ours, prompt=PROMPT, image=picture(),
                                         **{**BASE, "output_type": kind}, return_dict=False)
        assert len(got_tuple) == len(expected_tuple) == 2 and got_tuple[1] is None and got.nsfw_content_detected is None
        if kind == "pil":
            for pictures in (got_tuple[0], expected.images):
                assert all(np.array_equal(np.asarray(a), np.asarray(b))
                           for a, b in zip(got.images, pictures, strict=True))
        else:
            close(got.images, expected.images)
            close(got_tuple[0], got.images, 0.0)
        outputs[kind] = got.images
    close(outputs["pt"].permute(0, 2, 3, 1), outputs["np"], 0.0)
    assert np.abs(np.asarray(outputs["pil"][0], dtype=np.float64) - outputs["np"][0] * 255).max() <= 0.5 + 1e-6


def test_bfloat16_matches_stock(components):
    stock, ours = pipelines({k: v for k, v in components.items()})
    for pipe in (stock, ours):
        pipe.to(dtype=torch.bfloat16)
    try:
        assert all(getattr(ours, n).dtype == torch.bfloat16 for n in ("unet", "vae", "text_encoder"))
        expected, got = both(stock, ours, prompt=PROMPT, image=picture(), **BASE)
        assert np.isfinite(got.images).all()
        close(got.images, expected.images)
    finally:
        for pipe in (stock, ours):
            pipe.to(dtype=torch.float32)


# ---------------------------------------------------------------------------------------------- callbacks
def test_step_end_callbacks_see_and_replace_tensors_like_stock(components):
    stock, ours = pipelines(components)
    seen: dict[str, list] = {"stock": [], "ours": []}

    def callback(name):
        def on_step_end(pipe, i, t, tensors):
            assert set(tensors) == set(pipe._callback_tensor_inputs)
            seen[name].append((i, int(t), {k: v.shape for k, v in tensors.items()}))
            if i == pipe.num_timesteps - 1:
                tensors["latents"] = torch.zeros_like(tensors["latents"])
            return tensors
        return on_step_end

    outputs = []
    for name, pipe in (("stock", stock), ("ours", ours)):
        outputs.append(pipe(PROMPT, picture(), generator=torch.Generator().manual_seed(0), **{**BASE, "output_type": (
            "latent")}, callback_on_step_end=callback(name),
            callback_on_step_end_tensor_inputs=pipe._callback_tensor_inputs).images)
    assert seen["ours"] == seen["stock"] and len(seen["ours"]) == 2
    assert outputs[1].abs().sum() == 0 == outputs[0].abs().sum()


def test_a_callback_raising_the_guidance_scale_acts_like_stock(components):
    stock, ours = pipelines(components)

    def louder(pipe, i, t, tensors):
        pipe._guidance_scale += 1.0
        return tensors

    expected, got = both(stock, ours, prompt=PROMPT, image=picture(), callback_on_step_end=louder,
                         **{**BASE, "num_inference_steps": 3, "guidance_scale": 2.0})
    close(got.images, expected.images)
    assert ours.guidance_scale == stock.guidance_scale == 2.0 + ours.num_timesteps


def test_deprecated_step_callback_is_called_like_stock(components):
    stock, ours = pipelines(components)
    calls: dict[str, list] = {"stock": [], "ours": []}
    for name, pipe in (("stock", stock), ("ours", ours)):
        pipe(PROMPT, picture(), generator=torch.Generator().manual_seed(0), **{**BASE, "num_inference_steps": 4},
             callback=lambda step, t, latents, name=name: calls[name].append((step, int(t), latents.shape)),
             callback_steps=2)
    assert calls["ours"] == calls["stock"] and len(calls["ours"]) == 2


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_stock_arguments_raise_clear_errors(components):
    _, ours = pipelines(components)
    embeds = ours.encode_text([PROMPT])
    cases = [
        (dict(prompt=PROMPT, prompt_embeds=embeds), "not both"),
        (dict(prompt=None), "give `prompt`"),
        (dict(negative_prompt="x", negative_prompt_embeds=embeds), "not both"),
        (dict(prompt=None, prompt_embeds=embeds, negative_prompt_embeds=embeds[:, :3]), "same shape"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), "callback_on_step_end_tensor_inputs"),
        (dict(num_images_per_prompt=0), "num_images_per_prompt"),
        (dict(negative_prompt=["a", "b", "c"]), "3 negative prompts for 1"),
        (dict(generator=[torch.Generator()] * 2), "2 generators for a batch of 1"),
        (dict(image=[picture(), np.zeros((32, 32, 3), np.float32)]), "mixes"),
        (dict(image=[np.zeros((32, 32, 3), np.float32), np.zeros((24, 32, 3), np.float32)]), "one size"),
        (dict(image=torch.zeros(1, 2, 32, 32)), "3 channels"),
        (dict(resolution=31), "resolution"),
    ]
    for overrides, message in cases:
        arguments = {"prompt": PROMPT, "image": picture(), **BASE, **overrides}
        with pytest.raises(UserError, match=message):
            ours(**arguments)
    with pytest.raises(UserError, match="negative_prompt cannot change encodings"):
        ours(encoded=ours.encode(PROMPT, picture()), negative_prompt="x", **BASE)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        ours(PROMPT, picture(), corection="typo", **BASE)


def test_safety_checker_flags_like_stock(components):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8}, projection_dim=8)).eval()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(-2.0)  # every image is flagged
    parts = dict(safety_checker=checker, feature_extractor=CLIPImageProcessor(size=32, crop_size=32))
    stock, ours = pipelines(components, **parts)
    expected, got = both(stock, ours, prompt=PROMPT, image=picture(), **BASE)
    assert got.nsfw_content_detected == expected.nsfw_content_detected == [True]
    close(got.images, expected.images)
    assert not got.images.any() and not got.masks[0].any()  # black image, empty mask


def test_negative_prompt_and_corrections_share_one_unet_batch(components):
    """A negative prompt (stock) and corrections D⁻ (ADDP) together: 3 + K branches in one UNet call per step; a
    sample without corrections gets exactly the stock result; corrections repeat with each image of their prompt."""
    stock, ours = pipelines(components)
    sizes = []
    ours.unet.register_forward_hook(lambda module, args, output: sizes.append(args[0].shape[0]))
    prompts, negative = [PROMPT, "the blue star"], "the small square"
    for mode in ("additive", "replace"):
        sizes.clear()
        got = ours(prompts, picture(), negative_prompt=negative, num_images_per_prompt=2,
                   generator=[torch.Generator().manual_seed(s) for s in range(4)],
                   corrections=[["the red ring"], []], correction_mode=mode, **BASE)
        assert sizes == [4 * (3 + 1)] * 2
        assert got.corrections == [["the red ring"]] * 2 + [[]] * 2
        expected = stock(prompts[1], picture(), negative_prompt=negative, num_images_per_prompt=2,
                         generator=[torch.Generator().manual_seed(s) for s in (2, 3)], **BASE).images
        close(got.images[2:], expected)
        alone = ours(prompts[0], picture(), negative_prompt=negative, num_images_per_prompt=2,
                     generator=[torch.Generator().manual_seed(s) for s in (0, 1)], **BASE).images
        assert np.abs(got.images[:2] - alone).max() > 1e-4  # the correction acts on its prompt's images
