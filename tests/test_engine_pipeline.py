"""ADDPPipeline: stock equivalence, batched branches, trajectories, stop/resume, batches, loading."""

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline
from PIL import Image

from addp_agent.engine import ADDPPipeline
from addp_agent.errors import UserError

PROMPT = "the large green circle"


def rgb(size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def stock_from(pipe):
    stock = StableDiffusionInstructPix2PixPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    stock.set_progress_bar_config(disable=True)
    return stock


@pytest.mark.parametrize("scheduler", ["euler_ancestral", "ddim"])
def test_same_painted_image_as_stock_instructpix2pix(tiny_latent, scheduler):
    if scheduler == "ddim":
        tiny_latent.scheduler = DDIMScheduler.from_config(tiny_latent.scheduler.config)
    stock = stock_from(tiny_latent)
    image = Image.fromarray(rgb())
    kwargs = dict(num_inference_steps=4, guidance_scale=6.0, image_guidance_scale=1.5, output_type="np")
    expected = stock(prompt=PROMPT, image=image, generator=torch.Generator().manual_seed(0), **kwargs).images
    ours = tiny_latent(prompt=PROMPT, image=image, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert ours.shape == expected.shape == (1, 32, 32, 3)
    assert np.abs(ours - expected).max() <= 1e-4


def test_loads_a_stock_instructpix2pix_folder(tiny_latent, tmp_path):
    stock_from(tiny_latent).save_pretrained(tmp_path)
    loaded = ADDPPipeline.from_pretrained(tmp_path)
    assert loaded.unet.config.in_channels == 8 and loaded.vae is not None


def count_unet_batches(pipe):
    sizes = []
    pipe.unet.register_forward_hook(lambda module, args, output: sizes.append(args[0].shape[0]))
    return sizes


def test_all_branches_run_as_one_batched_unet_call(tiny_pixel):
    sizes = count_unet_batches(tiny_pixel)
    tiny_pixel(["a", "b"], [rgb(), rgb(seed=1)], num_inference_steps=3, corrections=[["x", "y"], ["z"]],
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert sizes == [2 * (3 + 2)] * 3  # one call per step: text, image, uncond + 2 correction branches


@pytest.mark.parametrize("mode", ["additive", "replace", "paper"])
def test_image_guidance_one_skips_the_unconditional_branch_with_the_same_result(tiny_pixel, mode):
    sizes = count_unet_batches(tiny_pixel)
    kwargs = dict(num_inference_steps=3, guidance_scale=3.0, corrections=["the blue square"], correction_mode=mode,
                  output_type="np")
    fast = tiny_pixel(PROMPT, rgb(), image_guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
                      **kwargs).images
    assert sizes == [2 + 1] * 3  # text, image-only, correction: ε_u has weight 0
    sizes.clear()
    near_one = tiny_pixel(PROMPT, rgb(), image_guidance_scale=1.0 + 1e-7, generator=torch.Generator().manual_seed(0),
                          **kwargs).images
    assert sizes == [3 + 1] * 3  # every other image scale computes ε_u
    assert np.abs(fast - near_one).max() < 1e-5


def test_corrections_change_the_prediction_and_zero_weight_does_not(tiny_pixel):
    def run(**kwargs):
        return tiny_pixel(PROMPT, rgb(), num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                          output_type="np", **kwargs).images
    plain = run()
    # same numbers up to float noise from the larger batch
    assert np.abs(run(corrections=["the blue square"], correction_scale=0.0) - plain).max() < 1e-5
    assert np.abs(run(corrections=["the blue square"], correction_scale=2.0) - plain).max() > 1e-4
    assert np.abs(run(corrections=["the blue square"], correction_mode="replace") - plain).max() > 1e-4
    assert np.abs(run(corrections=["the blue square"], correction_mode="paper") - plain).max() > 1e-4


def test_paper_form_is_additive_with_the_weight_times_text_scale(tiny_pixel):
    """On a real UNet (ε_i ≠ ε_c): (1+w)·ε̂(D) − w·ε̂(D⁻) = ε̂(D) + s_T·w·(ε_t − ε_c), and not plain additive."""
    def run(**kwargs):
        return tiny_pixel(PROMPT, rgb(), num_inference_steps=3, guidance_scale=2.5, image_guidance_scale=1.5,
                          corrections=["the blue square"], generator=torch.Generator().manual_seed(0),
                          output_type="latent", **kwargs).images
    paper = run(correction_mode="paper", correction_scale=0.8)
    torch.testing.assert_close(paper, run(correction_mode="additive", correction_scale=2.5 * 0.8), atol=1e-5, rtol=0)
    assert (paper - run(correction_mode="additive", correction_scale=0.8)).abs().max() > 1e-3


@pytest.mark.parametrize("fixture", ["tiny_latent", "tiny_pixel"])
def test_resume_after_step_k_equals_switching_the_correction_on_at_k(fixture, request):
    pipe = request.getfixturevalue(fixture)
    image, k, steps = rgb(), 2, 5
    full = pipe(PROMPT, image, num_inference_steps=steps, generator=torch.Generator().manual_seed(3),
                corrections=["the blue square"], correction_start_step=k, output_type="np")
    first = pipe(PROMPT, image, num_inference_steps=steps, generator=torch.Generator().manual_seed(3),
                 stop_after_step=k, output_type="np")
    assert first.state is not None and first.state.step_index == k
    sizes = count_unet_batches(pipe)
    resumed = pipe(state=first.state, corrections=["the blue square"], output_type="np")
    assert len(sizes) == steps - k  # steps 0..k are not recomputed
    assert np.abs(resumed.images - full.images).max() == 0.0
    again = pipe(state=first.state, corrections=["the blue square"], output_type="np")  # a state is reusable
    assert np.array_equal(again.images, resumed.images)


def test_trajectory_every_k_decodes_masks_at_the_original_size(tiny_pixel):
    out = tiny_pixel(PROMPT, rgb(32)[:20], num_inference_steps=6, trajectory_every=2, resolution="working",
                     generator=torch.Generator().manual_seed(0), output_type="np")
    points = out.trajectories[0]
    assert [p.step for p in points] == [1, 3, 5]
    scheduler = tiny_pixel.scheduler
    scheduler.set_timesteps(6)
    assert [p.timestep for p in points] == [int(t) for t in scheduler.timesteps[[1, 3, 5]]]
    assert all(p.mask.shape == (20, 32) for p in points)
    assert np.array_equal(points[-1].mask, out.masks[0])  # the last x̂₀ is the final sample for DDIM x₀-prediction


def test_batches_are_deterministic_and_masks_keep_each_input_size(tiny_pixel):
    images = [rgb(32), rgb(32, seed=1)[:24, :16]]
    first = tiny_pixel([PROMPT, "the square"], images, num_inference_steps=3,
                       generator=torch.Generator().manual_seed(7), output_type="np")
    second = tiny_pixel([PROMPT, "the square"], images, num_inference_steps=3,
                        generator=torch.Generator().manual_seed(7), output_type="np")
    assert np.array_equal(first.images, second.images)
    assert [m.shape for m in first.masks] == [(32, 32), (24, 16)]
    assert len(first.confidences) == 2


def test_bad_calls_raise_user_errors(tiny_pixel):
    with pytest.raises(UserError, match="empty"):
        tiny_pixel("   ", rgb(), num_inference_steps=1)
    with pytest.raises(UserError, match="2 expressions but 3 images"):
        tiny_pixel(["a", "b"], [rgb()] * 3, num_inference_steps=1)
    with pytest.raises(UserError, match="correction is empty"):
        tiny_pixel("a", rgb(), num_inference_steps=1, corrections=["\x00 "])
    with pytest.raises(UserError, match="correction_mode"):
        tiny_pixel("a", rgb(), num_inference_steps=1, correction_mode="nope")


def test_long_expressions_are_truncated_with_a_warning(tiny_pixel):
    with pytest.warns(UserWarning, match="truncated"):
        tiny_pixel(" ".join(["circle"] * 80), rgb(), num_inference_steps=1, output_type="np")


def test_segment_result_exports(tiny_pixel):
    from addp_agent.masks import decode_rle

    result = tiny_pixel.segment(rgb(32)[:30], PROMPT, corrections=["the square"], num_inference_steps=2, seed=1)
    assert result.mask.shape == (30, 32) and result.seed == 1 and result.corrections == ["the square"]
    assert np.array_equal(decode_rle(result.rle()), result.mask)
    record = result.to_json()
    assert record["area"] == int(result.mask.sum()) and record["settings"]["num_inference_steps"] == 2
