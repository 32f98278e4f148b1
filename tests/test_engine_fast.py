"""Opt-in fast path: bucketed static shapes, TorchDynamo capture, channels_last give the plain loop's outputs."""

import numpy as np
import pytest
import torch

from addp_agent.engine.fast import bucket_size, disable_fast_path, enable_fast_path

CORRECTIONS = ["the blue square", "the small circle"]


def paint(pipe, corrections=None):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    out = pipe("the red circle", image, num_inference_steps=3, corrections=corrections,
               generator=torch.Generator().manual_seed(0), output_type="np")
    return np.asarray(out.images)


def test_bucket_size():
    buckets = (1, 2, 3, 4, 6, 8)
    assert [bucket_size(n, buckets) for n in (1, 3, 5, 7, 8, 9, 17)] == [1, 3, 6, 8, 8, 16, 24]


@pytest.mark.parametrize("fixture", ["tiny_pixel", pytest.param("tiny_latent", marks=pytest.mark.slow)])
def test_gpu_style_fast_path_matches_the_plain_loop_on_cpu(fixture, request):
    """The CUDA configuration (compile + static-shape buckets + channels_last), traced by Dynamo on CPU (~25 s)."""
    pipe = request.getfixturevalue(fixture)
    plain, plain_corrected = paint(pipe), paint(pipe, CORRECTIONS)
    state = enable_fast_path(pipe, compile=True, backend="eager", channels_last=True, buckets=True)
    fast, fast_corrected = paint(pipe), paint(pipe, CORRECTIONS)
    assert state.compiled and state.calls == 6
    assert state.padded_rows == 3  # 3 branches fit bucket 3; 3 + 2 corrections = 5 rows pad to 6 at 3 steps
    assert np.abs(fast - plain).max() <= 1e-5 and np.abs(fast_corrected - plain_corrected).max() <= 1e-5
    assert np.abs(fast_corrected - fast).max() > 1e-3  # the corrections (and the padded rows' slicing) matter
    disable_fast_path(pipe)
    assert "forward" not in vars(pipe.unet)
    assert np.array_equal(paint(pipe), plain)


def test_cpu_defaults_change_nothing_and_channels_last_matches(tiny_pixel):
    plain = paint(tiny_pixel)
    state = enable_fast_path(tiny_pixel)
    assert not state.compiled and not state.channels_last and state.buckets is None
    assert np.array_equal(paint(tiny_pixel), plain) and state.calls == 3
    state = enable_fast_path(tiny_pixel, channels_last=True)  # re-enabling replaces the previous wrapper
    assert state.channels_last
    assert tiny_pixel.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(paint(tiny_pixel) - plain).max() <= 1e-5


@pytest.mark.slow
def test_inductor_compile_matches_the_plain_loop(tiny_pixel):
    plain = paint(tiny_pixel, CORRECTIONS)
    enable_fast_path(tiny_pixel, compile=True)
    assert np.abs(paint(tiny_pixel, CORRECTIONS) - plain).max() <= 1e-4
