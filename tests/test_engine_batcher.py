"""DynamicBatcher: concurrent submits equal individual calls, and run as fewer UNet batches."""

import threading

import numpy as np
import pytest

from addp_agent.engine.batcher import DynamicBatcher
from addp_agent.errors import UserError

REQUESTS = [("the red circle", [], 3), ("the blue square", ["the green circle"], 11),
            ("the small triangle", ["the big triangle", "the square"], 5), ("a thing", [], 3)]


def rgb(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def unet_batches(pipe) -> list[int]:
    sizes: list[int] = []
    pipe.unet.register_forward_hook(lambda module, args, output: sizes.append(args[0].shape[0]))
    return sizes


def submit_concurrently(batcher: DynamicBatcher, requests, steps: int = 3):
    barrier, futures = threading.Barrier(len(requests)), [None] * len(requests)

    def client(k: int) -> None:
        expression, corrections, seed = requests[k]
        barrier.wait()
        futures[k] = batcher.submit(rgb(k, size=32 + 8 * k), expression, corrections, steps=steps, seed=seed)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [future.result(timeout=120) for future in futures]


@pytest.mark.parametrize("fixture", ["tiny_pixel", "tiny_latent"])  # DDIM (η = 0) and EulerAncestral (noisy steps)
def test_concurrent_submits_equal_individual_calls_in_fewer_unet_batches(fixture, request):
    pipe = request.getfixturevalue(fixture)
    expected = [pipe.segment(rgb(k, size=32 + 8 * k), expression, corrections or None, num_inference_steps=3,
                             seed=seed) for k, (expression, corrections, seed) in enumerate(REQUESTS)]
    sizes = unet_batches(pipe)
    with DynamicBatcher(pipe, max_batch=16, max_wait_ms=500) as batcher:
        results = submit_concurrently(batcher, REQUESTS)
    assert batcher.stats.calls == 1 and batcher.stats.batch_sizes == [4]
    assert len(sizes) == 3 and sizes == [4 * (3 + 2)] * 3  # 3 steps, one UNet batch each, instead of 4 × 3 calls
    for got, want, (_, corrections, seed) in zip(results, expected, REQUESTS, strict=True):
        assert got.mask.shape == want.mask.shape
        assert np.array_equal(got.mask, want.mask)
        assert np.abs(got.painted.astype(int) - want.painted.astype(int)).max() <= 1
        assert np.abs(got.soft - want.soft).max() <= 1e-2
        assert got.seed == seed and got.corrections == corrections


def test_groups_by_settings_and_respects_max_batch(tiny_pixel):
    with DynamicBatcher(tiny_pixel, max_batch=2, max_wait_ms=300) as batcher:
        futures = [batcher.submit(rgb(k), "the red circle", steps=2 if k < 3 else 1, seed=k) for k in range(4)]
        results = [f.result(timeout=120) for f in futures]
    assert sorted(batcher.stats.batch_sizes) == [1, 1, 2]  # max_batch 2 over 3 two-step requests; 1 one-step
    assert [r.settings["num_inference_steps"] for r in results] == [2, 2, 2, 1]
    assert batcher.stats.requests == 4


def test_bad_requests_fail_early_and_pipeline_errors_reach_the_future(tiny_pixel):
    with DynamicBatcher(tiny_pixel, max_wait_ms=0) as batcher:
        with pytest.raises(UserError):
            batcher.submit(rgb(0), "   ")
        with pytest.raises(UserError):
            batcher.submit(rgb(0), "the circle", guidance=2.0)
        failing = batcher.submit(rgb(0), "the circle", steps=2, correction_mode="sideways")
        with pytest.raises(UserError):
            failing.result(timeout=60)
        assert batcher.submit(rgb(0), "the circle", steps=1, seed=None).result(timeout=60).seed is not None
    with pytest.raises(UserError):
        batcher.submit(rgb(0), "the circle")


@pytest.mark.parametrize("wait_ms", [-1.0, float("nan"), 1e13, 1e300])
def test_a_wait_window_out_of_range_is_refused(tiny_pixel, wait_ms):
    """Past threading.TIMEOUT_MAX the worker thread died on its first request and every request hung."""
    with pytest.raises(UserError, match="max_wait_ms in 0..60000"):
        DynamicBatcher(tiny_pixel, max_wait_ms=wait_ms)


@pytest.mark.parametrize("max_batch", [0, 257, 10**8])
def test_a_batch_size_out_of_range_is_refused(tiny_pixel, max_batch):
    with pytest.raises(UserError, match="max_batch must be in 1..256"):
        DynamicBatcher(tiny_pixel, max_batch=max_batch)
