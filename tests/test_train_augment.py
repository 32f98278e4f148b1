"""Diffusion-tailored augmentation: identity at t = 0, intensity grows with t, bounds of the official recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from addp_agent.train.augment import (
    RED,
    affine_masks,
    augment_depth_targets,
    augment_ris_targets,
    erase_masks,
    jitter_paint,
    paint,
    ris_intensity,
)

B, S = 64, 64


def square_masks(batch: int = B, size: int = S, half: int = 10) -> torch.Tensor:
    masks = torch.zeros(batch, size, size, dtype=torch.bool)
    masks[:, size // 2 - half : size // 2 + half, size // 2 - half : size // 2 + half] = True
    return masks


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1).clamp_min(1)


def noise_images(seed: int = 0) -> torch.Tensor:
    return torch.rand(B, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 0.5 + 0.25  # never pure red


def test_target_is_unchanged_at_t0():
    images, masks = noise_images(), square_masks()
    out = augment_ris_targets(images, masks, torch.zeros(B, dtype=torch.long), generator=torch.Generator())
    assert torch.equal(out, paint(images, masks))
    assert torch.equal(paint(images, masks)[:, :, 32, 32], RED.expand(B, 3))


def test_intensity_is_linear_in_t():
    s = ris_intensity(torch.tensor([0, 500, 999]))
    np.testing.assert_allclose(s.numpy(), [0.0, 0.1, 0.2 * 0.999], rtol=1e-6)


def test_mask_iou_falls_and_colour_distance_grows_with_t():
    images, masks = noise_images(), square_masks()
    mean_iou, colour = [], []
    for t in (0, 250, 500, 750, 999):
        out = augment_ris_targets(images, masks, torch.full((B,), t), generator=torch.Generator().manual_seed(1))
        painted = (out != images).any(dim=1)  # the noise image is never red, so changed pixels = new mask
        mean_iou.append(float(iou(painted, masks).mean()))
        inside = out[:, :, 32, 32]  # the centre pixel stays inside the moved mask for these small transforms
        colour.append(float((inside - RED).norm(dim=1).mean()))
    assert mean_iou[0] == 1.0 and colour[0] == 0.0
    assert all(a > b for a, b in zip(mean_iou, mean_iou[1:], strict=False)), mean_iou
    assert all(a < b for a, b in zip(colour, colour[1:], strict=False)), colour
    assert mean_iou[-1] < 0.8 and colour[-1] > 0.05


def test_affine_stays_within_recipe_bounds():
    masks, s = square_masks(400), torch.full((400,), 0.2)
    moved = affine_masks(masks, s, torch.Generator().manual_seed(0))
    area = moved.flatten(1).sum(1).float() / masks.flatten(1).sum(1).float()
    ys = torch.arange(S).float()[None, :, None]
    xs = torch.arange(S).float()[None, None, :]
    count = moved.flatten(1).sum(1)
    cy, cx = (moved * ys).flatten(1).sum(1) / count, (moved * xs).flatten(1).sum(1) / count
    shift = torch.stack([cy - 31.5, cx - 31.5]).abs()
    assert float(shift.max()) <= 0.2 * S + 1  # translate ±s of the size (rotation/scale are about the centre)
    assert float(shift.max()) > 0.15 * S  # and it does use that range
    assert float(area.min()) >= 0.8**2 - 0.05 and float(area.max()) <= 1.2**2 + 0.05  # scale 1 ± s
    assert torch.equal(affine_masks(masks, torch.zeros(400)), masks)


def test_erasing_probability_and_area():
    masks = torch.ones(400, S, S, dtype=torch.bool)
    kept = erase_masks(masks, torch.full((400,), 0.2), torch.Generator().manual_seed(0))
    erased = 1 - kept.flatten(1).float().mean(1)
    assert 0.4 < float((erased > 0).float().mean()) < 0.6  # p = 0.5
    assert float(erased.max()) <= 0.2 + 0.02  # area ≤ s (rounding)


def test_paint_jitter_has_no_hue_shift_and_is_bounded():
    colours = jitter_paint(torch.full((1000,), 0.2), torch.Generator().manual_seed(0))
    assert torch.all(colours[:, 0] >= colours[:, 1] - 1e-6) and torch.allclose(colours[:, 1], colours[:, 2])
    assert float(colours[:, 0].min()) > 0.6 and float(colours[:, 1].max()) < 0.25
    assert torch.equal(jitter_paint(torch.zeros(5)), RED.expand(5, 3))


def _roughness(x: torch.Tensor) -> float:
    return float((x[..., 1:, :] - x[..., :-1, :]).abs().mean())


def test_depth_blur_grows_with_t():
    depth = torch.rand(16, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    same = augment_depth_targets(depth, torch.zeros(16, dtype=torch.long), generator=torch.Generator())
    torch.testing.assert_close(same, depth)
    rough = [_roughness(augment_depth_targets(depth, torch.full((16,), t), generator=torch.Generator().manual_seed(0)))
             for t in (0, 300, 999)]
    assert rough[0] > rough[1] > rough[2]


@pytest.mark.parametrize("t", [1, 999])
def test_augmented_targets_stay_valid_images(t):
    out = augment_ris_targets(noise_images(), square_masks(), torch.full((B,), t), generator=torch.Generator())
    assert out.shape == (B, 3, S, S) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_targets_stay_on_the_data_device():
    """Data kept on an accelerator (``data_device="auto"``): painting and augmentation create nothing on the CPU.

    The meta device stands in for a GPU: like CUDA it refuses to mix with CPU tensors.
    """
    from addp_agent.train.data import TrainingData

    n, size = 4, 16
    data = TrainingData(images=torch.zeros(n, size, size, 3, dtype=torch.uint8, device="meta"),
                        masks=torch.zeros(n, size, size, dtype=torch.bool, device="meta"),
                        input_ids=torch.zeros(n, 8, dtype=torch.long, device="meta"),
                        null_ids=torch.zeros(1, 8, dtype=torch.long, device="meta"))
    images, masks, ids = data.batch(torch.tensor([0, 2, 3]))  # indices are drawn on the CPU
    t = torch.tensor([0, 500, 999])
    clean = paint(images, masks)
    augmented = augment_ris_targets(images, masks, t.to(images.device), 1000, 0.2, None)
    assert {clean.device.type, augmented.device.type, ids.device.type} == {"meta"}
    assert clean.shape == augmented.shape == (3, 3, size, size)
