"""Opt-in fast path: bucketed static shapes, TorchDynamo capture, channels_last give the plain loop's outputs."""

import numpy as np
import pytest
import torch

from addp_agent.engine import fast
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


# ---- backend="graphs": CUDA graphs captured by hand (exercised on CPU through a stand-in for the capture) ----


def test_timestep_rows_broadcasts_and_pads_to_the_bucket():
    expected = torch.full((4,), 7.0)
    for timestep in (7, 7.0, torch.tensor(7), torch.tensor(7.0, dtype=torch.float64), torch.tensor([7])):
        rows = fast.timestep_rows(timestep, 4, "cpu")
        assert rows.shape == (4,) and rows.dtype == torch.float32 and torch.equal(rows, expected)
    assert torch.equal(fast.timestep_rows(torch.tensor([1, 2]), 4, "cpu"), torch.tensor([1.0, 2.0, 1.0, 1.0]))
    assert torch.equal(fast.timestep_rows(torch.tensor([1.5, 2, 3]), 3, "cpu"), torch.tensor([1.5, 2.0, 3.0]))
    for bad in (torch.zeros(5), torch.zeros(2, 2)):
        with pytest.raises(ValueError):
            fast.timestep_rows(bad, 4, "cpu")


def test_graphs_backend_on_cpu_runs_eager_and_pads_only_when_asked(tiny_pixel):
    plain, plain_corrected = paint(tiny_pixel), paint(tiny_pixel, CORRECTIONS)
    state = enable_fast_path(tiny_pixel, backend="graphs")
    assert not state.graphs and not state.compiled and state.buckets is None
    assert np.array_equal(paint(tiny_pixel), plain)
    state = enable_fast_path(tiny_pixel, backend="graphs", buckets=True)
    assert not state.graphs and state.buckets == fast.DEFAULT_BUCKETS
    fast_plain, fast_corrected = paint(tiny_pixel), paint(tiny_pixel, CORRECTIONS)
    assert state.padded_rows == 3 and state.graphs_captured == state.graph_replays == 0
    assert np.abs(fast_plain - plain).max() <= 1e-5 and np.abs(fast_corrected - plain_corrected).max() <= 1e-5


def fake_capture(log):
    """A CPU stand-in for ``_capture_graph``: static buffers, and a 'replay' that recomputes into the static output."""

    def capture(forward, sample, timestep, encoder_hidden_states, state):
        inputs = (sample.clone(), timestep.clone(), encoder_hidden_states.clone())
        output = forward(*inputs, return_dict=False)[0].clone()
        log.append(tuple(sample.shape))

        class Graph:
            def replay(self):
                output.copy_(forward(*inputs, return_dict=False)[0])

        return fast.CapturedGraph(Graph(), *inputs, output)

    return capture


@pytest.mark.parametrize("fixture", ["tiny_pixel", "tiny_latent"])
def test_graph_replay_path_matches_the_plain_loop(fixture, request, monkeypatch):
    pipe = request.getfixturevalue(fixture)
    plain, plain_corrected = paint(pipe), paint(pipe, CORRECTIONS)
    captures = []
    monkeypatch.setattr(fast, "_cuda_graphs_supported", lambda device: True)
    monkeypatch.setattr(fast, "_capture_graph", fake_capture(captures))
    state = enable_fast_path(pipe, backend="graphs", channels_last=True)  # what a CUDA device gets by default
    assert state.graphs and state.backend == "graphs" and not state.compiled and state.buckets
    fast_plain, fast_corrected = paint(pipe), paint(pipe, CORRECTIONS)
    assert np.abs(fast_plain - plain).max() <= 1e-5 and np.abs(fast_corrected - plain_corrected).max() <= 1e-5
    assert np.abs(fast_corrected - fast_plain).max() > 1e-3  # the corrections (and the padded rows' slicing) matter
    assert [shape[0] for shape in captures] == [3, 6]  # one capture per bucket: 3 branches, 3 + 2 corrections → 6
    assert state.graphs_captured == 2 and state.graph_replays == 6 and state.graph_fallbacks == 0
    assert not state.capture_failures and state.padded_rows == 3
    disable_fast_path(pipe)
    assert not state.cached_graphs and np.array_equal(paint(pipe), plain)


def test_graph_outputs_are_copies_and_keep_the_return_type(tiny_pixel, monkeypatch):
    monkeypatch.setattr(fast, "_cuda_graphs_supported", lambda device: True)
    monkeypatch.setattr(fast, "_capture_graph", fake_capture([]))
    unet = tiny_pixel.unet
    channels, size = unet.config.in_channels, unet.config.sample_size
    sample = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(2, 4, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = unet(sample, 10, embeds).sample
        state = enable_fast_path(tiny_pixel, backend="graphs", buckets=(4,))
        first = unet(sample, torch.tensor(10), embeds)
        kept = first.sample.clone()
        second = unet(sample * 2, torch.tensor([10, 10]), embeds, return_dict=False)
    assert type(first).__name__ == "UNet2DConditionOutput" and isinstance(second, tuple)
    assert first.sample.shape == second[0].shape == eager.shape  # sliced back from the bucket of 4
    assert torch.allclose(first.sample, eager, atol=1e-5) and torch.equal(first.sample, kept)  # not overwritten
    assert state.graphs_captured == 1 and state.graph_replays == 2
    with torch.no_grad():  # extra conditioning → eager for that call
        unet(sample, 10, embeds, cross_attention_kwargs={"scale": 1.0})
    unet(sample, 10, embeds)  # grad enabled (training) → eager
    assert state.graph_replays == 2 and state.graph_fallbacks == 2


@pytest.mark.parametrize("fixture", ["tiny_pixel", "tiny_latent"])
def test_a_failed_capture_runs_that_shape_eager_and_is_recorded(fixture, request, monkeypatch):
    pipe = request.getfixturevalue(fixture)
    plain = paint(pipe)
    attempts = []

    def failing_capture(*args):
        attempts.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(fast, "_cuda_graphs_supported", lambda device: True)
    monkeypatch.setattr(fast, "_capture_graph", failing_capture)
    state = enable_fast_path(pipe, backend="graphs")
    with pytest.warns(RuntimeWarning, match="capture failed"):
        painted = paint(pipe)
    assert np.abs(painted - plain).max() <= 1e-5
    assert len(attempts) == 1  # tried once for the shape, then eager for every step
    (key, reason), = state.capture_failures.items()
    assert key[0][0] == 3 and "operation not permitted" in reason
    assert state.graphs_captured == state.graph_replays == 0 and state.graph_fallbacks == state.calls == 3
