"""The ADDP RIS training recipe, pinned: the noisy input comes from the augmented target, the loss regresses the
clean target, InstructPix2Pix's CFG dropout is on, and generalized samples are painted right (a no-target sample is
the unchanged image, a multi-target sample paints every target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from addp_agent.train.augment import RED, augment_ris_targets, paint
from addp_agent.train.config import TrainConfig
from addp_agent.train.data import from_arrays
from addp_agent.train.loop import batch_loss, cfg_drops, make_batch
from addp_agent.train.timesteps import TimestepSampler

SIZE = 32


def squares(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    for top, left, height, width in boxes:
        mask[top : top + height, left : left + width] = True
    return mask


ONE = squares((8, 8, 10, 10))
TWO = squares((3, 3, 7, 7), (20, 20, 8, 8))  # two separate targets
NONE = squares()


@pytest.fixture(scope="module")
def data(pipe):
    rng = np.random.default_rng(0)
    images = (rng.integers(40, 200, (3, SIZE, SIZE, 3))).astype(np.uint8)  # never pure red
    return from_arrays(images, np.stack([NONE, ONE, TWO]), ["the cone", "the cube", "the two spheres"],
                       pipe.tokenizer)


def config(tmp_path, **overrides) -> TrainConfig:
    return TrainConfig(**({"out": tmp_path, "batch_size": 48} | overrides))


def batch_for(pipe, data, settings: TrainConfig, seed: int = 0, preset: str = "uniform"):
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    sampler = TimestepSampler.from_preset(preset, 1000, None, scheduler.betas.double().numpy())
    return make_batch(settings, pipe, data, sampler, scheduler, torch.Generator().manual_seed(seed), "cpu"), scheduler


def test_noisy_input_from_the_augmented_target_regression_to_the_clean_one(pipe, data, tmp_path):
    batch, scheduler = batch_for(pipe, data, config(tmp_path))
    a = scheduler.alphas_cumprod[batch.t].view(-1, 1, 1, 1)
    clean = pipe.target_latents(paint(batch.images, batch.masks) * 2 - 1)
    augmented = pipe.target_latents(batch.augmented * 2 - 1)
    torch.testing.assert_close(batch.target, clean)  # x₀-prediction regresses the clean painted target …
    torch.testing.assert_close(batch.noisy, a.sqrt() * augmented + (1 - a).sqrt() * batch.noise)  # … from x'_t
    moved = (batch.augmented != batch.clean).flatten(1).any(1)
    assert moved.sum() >= 10  # the augmentation changed these samples, so the two targets differ there:
    assert (augmented[moved] - clean[moved]).abs().amax() > 0.5
    from_clean = a.sqrt() * clean + (1 - a).sqrt() * batch.noise
    assert (batch.noisy[moved] - from_clean[moved]).abs().amax() > 0.05

    eps, _ = batch_for(pipe, data, config(tmp_path, parameterization="epsilon"))
    torch.testing.assert_close(eps.noisy, batch.noisy)
    expected = (eps.noisy - a.sqrt() * clean) / (1 - a).sqrt()  # the ε that leads back to the *clean* target
    torch.testing.assert_close(eps.target, expected, atol=2e-4, rtol=1e-4)
    assert (eps.target[moved] - eps.noise[moved]).abs().amax() > 0.05  # not the drawn noise (the augmented one)


def test_the_loss_is_the_mse_of_the_unet_prediction_against_the_clean_target(pipe, data, tmp_path):
    settings = config(tmp_path, batch_size=6)
    batch, _ = batch_for(pipe, data, settings, seed=3)
    loss = batch_loss(settings, pipe, pipe.unet, pipe.text_encoder, batch)
    with torch.no_grad():
        embeds = pipe.text_encoder(batch.input_ids)[0]
        output = pipe.unet(torch.cat([batch.noisy, batch.condition], 1), batch.t, encoder_hidden_states=embeds).sample
        clean = pipe.target_latents(paint(batch.images, batch.masks) * 2 - 1)
    assert float(loss.detach()) == pytest.approx(float(((output - clean) ** 2).mean()), rel=1e-5)


def test_cfg_dropout_is_instructpix2pix_and_on_by_default(pipe, data, tmp_path):
    assert TrainConfig.model_fields["cfg_dropout"].default == 0.05
    text, image = cfg_drops(torch.linspace(0, 1, 10_001)[:-1], 0.05)  # r ∈ [0, 1): text / image / both / neither
    assert (text & ~image).float().mean() == pytest.approx(0.05, abs=2e-4)
    assert (image & ~text).float().mean() == pytest.approx(0.05, abs=2e-4)
    assert (text & image).float().mean() == pytest.approx(0.05, abs=2e-4)
    batch, _ = batch_for(pipe, data, config(tmp_path, batch_size=3000))
    both = batch.drop_text & batch.drop_image
    assert 0.035 < float((batch.drop_text & ~both).float().mean()) < 0.065
    assert 0.035 < float((batch.drop_image & ~both).float().mean()) < 0.065
    assert 0.035 < float(both.float().mean()) < 0.065
    null = data.null_ids[0]
    assert (batch.input_ids[batch.drop_text] == null).all() and (batch.input_ids[~batch.drop_text] != null).any(1).all()
    assert (batch.condition[batch.drop_image] == 0).all()
    assert (batch.condition[~batch.drop_image].flatten(1).abs().amax(1) > 0).all()


def test_a_no_target_sample_stays_the_unchanged_image_at_every_timestep(pipe, data, tmp_path):
    batch, _ = batch_for(pipe, data, config(tmp_path, batch_size=96))
    empty = ~batch.masks.flatten(1).any(1)
    assert empty.sum() >= 10 and float(batch.t[empty].max()) > 500
    assert torch.equal(batch.clean[empty], batch.images[empty]) and torch.equal(batch.augmented[empty],
                                                                                 batch.images[empty])
    torch.testing.assert_close(batch.target[empty], pipe.target_latents(batch.images[empty] * 2 - 1))


def test_a_multi_target_sample_paints_every_target(pipe, data, tmp_path):
    batch, _ = batch_for(pipe, data, config(tmp_path, batch_size=96))
    two = (batch.masks.flatten(1).sum(1) == int(TWO.sum()))
    assert two.sum() >= 10
    red = RED.view(1, 3, 1, 1)
    for box in ((3, 3, 7, 7), (20, 20, 8, 8)):  # every pixel of both targets is red in the regression target
        region = torch.from_numpy(squares(box))
        assert (batch.clean[two][:, :, region] == red.view(1, 3, 1)).all()
    assert (batch.clean[two][:, :, ~torch.from_numpy(TWO)] != red.view(1, 3, 1)).any(1).all()


def test_light_augmentation_keeps_both_targets():
    images = torch.full((64, 3, SIZE, SIZE), 0.5)
    masks = torch.from_numpy(TWO)[None].expand(64, -1, -1).clone()
    out = augment_ris_targets(images, masks, torch.full((64,), 100), generator=torch.Generator().manual_seed(0))
    painted = (out != images).any(1)
    for box in ((3, 3, 7, 7), (20, 20, 8, 8)):  # s = 0.02: each target keeps most of its pixels
        region = torch.from_numpy(squares(box))
        assert (painted[:, region].float().mean(1) > 0.5).all()


def test_generalized_training_arrays_match_the_samples(tmp_path):
    """Scenes-3D in generalized mode: empty masks for no-target samples, the union of every target otherwise."""
    from itertools import islice

    from addp_agent.data.sources import load_source
    from addp_agent.train.data import cached_scenes

    spec = "scenes-gen:8:1:64:default:generalized:empty_rate=0.4:multi_rate=0.4"
    _, masks, texts = cached_scenes(spec, "train", 0, 64, workers=1)
    samples = list(islice(iter(load_source(spec, "train")), 8))
    assert texts == [s.expression for s in samples]
    assert {s.n_targets for s in samples} >= {0, 1, 2}
    for mask, sample in zip(masks, samples, strict=True):
        assert np.array_equal(mask, sample.mask)
        if sample.n_targets == 0:
            assert not mask.any()
        assert len(sample.target_masks) == sample.n_targets
        assert all((mask & target).sum() == target.sum() > 0 for target in sample.target_masks)


def test_validation_on_generalized_data_reports_gres_metrics(tiny_train_config):
    import json

    from addp_agent.train.loop import train

    config = tiny_train_config(data="scenes-gen:8:0:64:default:generalized:empty_rate=0.5", steps=1, val_every=1,
                               val_n=6, checkpoint_every=1)
    train(config, progress=False)
    row = [json.loads(line) for line in (config.out / "log.jsonl").read_text().splitlines()][-1]
    assert {"val_mIoU", "val_oIoU", "val_gIoU", "val_N-acc", "val_T-acc"} <= set(row)
    assert 0 <= row["val_N-acc"] <= 1 and 0 <= row["val_gIoU"] <= 1
