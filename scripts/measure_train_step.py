"""Measure the paper-refcoco training step on this machine, and project the time per RefCOCO epoch.

It runs the project's own training step (``addp_agent.train.loop.optimisation_step``: three VAE encodes, the frozen
text encoder, the UNet forward and backward, AdamW, EMA) on an InstructPix2Pix model of SD-1.5 size with random
weights, at the recipe's settings (x₀ objective, RIS timesteps, augmentation, CFG dropout), on Shapes-Ref images at
the working resolution. Times are per optimisation step over ``--repeats`` repeats of ``--steps`` steps each (after
``--warmup`` steps), printed as min–max; the VAE encodes and the UNet forward + backward are also timed alone.

    python scripts/measure_train_step.py                      # on a GPU: SD-1.5 size, batch 32, 256 px, fp32/TF32
    python scripts/measure_train_step.py --mixed-precision bf16
    python scripts/measure_train_step.py --flops              # FLOPs of one micro-batch (meta tensors, any machine)
    python scripts/measure_train_step.py --size toy --batch-size 4 --resolution 32 --accumulation 2 --steps 2
                                                              # CPU dry run of the same code at toy size

An epoch is one pass over the referred objects (RefCOCO train: 42,404), so epoch time = objects / effective batch ×
step time. ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

REFCOCO_TRAIN_OBJECTS = 42_404  # referred objects in RefCOCO (unc) train: 120,624 expressions


def sd15_pipeline():
    """An InstructPix2Pix pipeline of SD-1.5 size with random weights (UNet 860 M, VAE, 12-layer 768-wide CLIP text
    encoder over the project's local tokenizer: the text side is frozen in the recipe, its cost is small)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from addp_agent.engine.pipeline import ADDPPipeline
    from addp_agent.models.build import build_scheduler
    from addp_agent.models.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    return ADDPPipeline(unet=sd15_unet(), vae=sd15_vae(), text_encoder=text, tokenizer=tokenizer,
                        scheduler=build_scheduler("euler_ancestral", "epsilon"))


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(in_channels=8, out_channels=4, cross_attention_dim=768, attention_head_dim=8,
                                sample_size=64)


def sd15_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                         sample_size=512)


def build(size: str):
    if size == "sd15":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):  # initialise the 1.1 B parameters where they will run
            return sd15_pipeline()
    from addp_agent.models.build import build_tiny_latent_pipeline

    return build_tiny_latent_pipeline()


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, steps: int, repeats: int, warmup: int) -> list[float]:
    """Seconds per call of ``fn``: the mean of ``steps`` calls, for each of ``repeats`` repeats, after ``warmup``."""
    for _ in range(warmup):
        fn()
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        synchronize()
        times.append((time.perf_counter() - start) / steps)
    return times


def span(times: list[float]) -> str:
    return f"{min(times):.3f}–{max(times):.3f} s (median {statistics.median(times):.3f})"


def measure(args: argparse.Namespace) -> dict:
    from addp_agent.train import loop
    from addp_agent.train.recipe import recipe_config

    with tempfile.TemporaryDirectory() as scratch:
        config = recipe_config("paper-refcoco", out=Path(scratch) / "run", data="shapes", init_from=None,
                               n_train=max(64, 2 * args.batch_size), resolution=args.resolution,
                               batch_size=args.batch_size, gradient_accumulation_steps=args.accumulation,
                               steps=args.warmup + args.repeats * args.steps, mixed_precision=args.mixed_precision,
                               gradient_checkpointing=not args.no_checkpointing, val_every=0)
        accelerator = loop.make_accelerator(config)
        run = loop.prepare_run(config, accelerator, pipe=build(args.size))
        generator = torch.Generator().manual_seed(0)
        step_times = timed(lambda: loop.optimisation_step(run, generator, 0), args.steps, args.repeats, args.warmup)
        pipe, device = run.pipe, accelerator.device
        images = torch.rand(args.batch_size, 3, args.resolution, args.resolution, device=device) * 2 - 1

        def encodes() -> None:
            with torch.no_grad(), accelerator.autocast():
                pipe.target_latents(images), pipe.target_latents(images), pipe.condition_latents(images)

        with torch.no_grad():
            latents = pipe.target_latents(images)
            embeds = run.text_encoder(run.data.null_ids.to(device).expand(args.batch_size, -1))[0]
        t = torch.randint(0, 1000, (args.batch_size,), device=device)

        def unet_step() -> None:
            with accelerator.autocast():
                out = run.unet(torch.cat([latents, latents], dim=1), t, encoder_hidden_states=embeds).sample
                loss = out.float().pow(2).mean()
            accelerator.backward(loss)
            run.optimizer.zero_grad(set_to_none=True)

        vae_times = timed(encodes, args.steps, args.repeats, 1)
        unet_times = timed(unet_step, args.steps, args.repeats, 1)
    per_micro = min(step_times) / args.accumulation
    effective = args.batch_size * args.accumulation
    epoch_s = [t * args.objects / effective for t in step_times]
    return {
        "size": args.size, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "batch_size": args.batch_size, "resolution": args.resolution, "accumulation": args.accumulation,
        "mixed_precision": args.mixed_precision, "gradient_checkpointing": not args.no_checkpointing,
        "repeats": args.repeats, "steps_per_repeat": args.steps,
        "step_s": step_times, "micro_batch_s": per_micro, "vae_3_encodes_s": vae_times, "unet_fwd_bwd_s": unet_times,
        "samples_per_s": effective / min(step_times), "objects": args.objects, "epoch_s": epoch_s,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def count_flops(args: argparse.Namespace) -> dict:
    """FLOPs of one micro-batch: UNet forward + backward and the three VAE encodes (meta tensors: no memory)."""
    from torch.utils.flop_counter import FlopCounterMode

    if args.size == "sd15":
        with torch.device("meta"):
            unet, vae = sd15_unet(), sd15_vae()
        device = "meta"
    else:
        pipe = build("toy")
        unet, vae, device = pipe.unet, pipe.vae, "cpu"
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    side, b = args.resolution // factor, args.batch_size
    x = torch.randn(b, 2 * vae.config.latent_channels, side, side, device=device)
    t = torch.full((b,), 500, device=device, dtype=torch.long)
    e = torch.randn(b, 77, unet.config.cross_attention_dim, device=device)
    images = torch.randn(b, 3, args.resolution, args.resolution, device=device)

    def flops(fn) -> float:
        with FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    forward = flops(lambda: unet(x, t, encoder_hidden_states=e).sample)
    both = flops(lambda: unet(x, t, encoder_hidden_states=e).sample.float().pow(2).mean().backward())
    with torch.no_grad():
        encode = flops(lambda: vae.encode(images).latent_dist.mode())
    return {"batch_size": b, "resolution": args.resolution, "unet_forward_tflop": forward / 1e12,
            "unet_forward_backward_tflop": both / 1e12, "vae_encode_tflop": encode / 1e12,
            "micro_batch_tflop": (both + 3 * encode) / 1e12}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("sd15", "toy"), default="sd15")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--accumulation", type=int, default=8, help="micro-batches per step (recipe on 1 GPU: 8)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no")
    parser.add_argument("--no-checkpointing", action="store_true", help="keep UNet activations (the recipe recomputes "
                                                                         "them: less memory, more compute)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="optimisation steps timed per repeat")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--objects", type=int, default=REFCOCO_TRAIN_OBJECTS, help="referred objects per epoch")
    parser.add_argument("--flops", action="store_true", help="count FLOPs instead of timing")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be ≥ 3")
    if args.flops:
        result = count_flops(args)
        print(f"one micro-batch of {result['batch_size']} at {result['resolution']} px (TFLOP): UNet forward "
              f"{result['unet_forward_tflop']:.4g}, forward + backward {result['unet_forward_backward_tflop']:.4g}, "
              f"VAE encode {result['vae_encode_tflop']:.4g} (× 3 per step), total {result['micro_batch_tflop']:.4g}")
    else:
        result = measure(args)
        print(f"{result['size']} on {result['device']}, batch {args.batch_size} × {args.accumulation} accumulated, "
              f"{args.resolution} px, mixed precision {args.mixed_precision}, gradient checkpointing "
              f"{'off' if args.no_checkpointing else 'on'}")
        print(f"optimisation step: {span(result['step_s'])}; {result['samples_per_s']:.1f} samples/s")
        print(f"alone, per micro-batch: 3 VAE encodes {span(result['vae_3_encodes_s'])}, UNet forward + backward "
              f"{span(result['unet_fwd_bwd_s'])}")
        peak = result["peak_gpu_gib"]
        memory = "n/a" if peak is None else f"{peak:.1f} GiB"
        print(f"epoch of {args.objects} referred objects: {min(result['epoch_s']) / 60:.1f}–"
              f"{max(result['epoch_s']) / 60:.1f} min; peak GPU memory {memory}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
