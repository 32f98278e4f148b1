"""Depth engine against stock diffusers: ``python -m benchmarks.marigold [--device cuda] [--size sd2|tiny]``.

Both pipelines share one set of Marigold-format modules with random weights: SD-2 size (UNet 8 → 4 channels,
320–1280 widths, 1024-d cross-attention; the SD VAE; a 23-layer 1024-d CLIP text encoder) or the tests' tiny
shapes. One 480 × 640 image (tiny: 40 × 56), the same steps, processing resolution and seed, at ensemble 1 and
ensemble E (default 10): the stock ``MarigoldDepthPipeline`` at its default ``batch_size=1`` and with all members in
one batch, and :class:`~addp_agent.engine.depth_pipeline.DepthPipeline` (all members in one UNet batch). Round-robin
repeats; paired ratios; max |Δ| against stock of the denoised latents and of the predictions. (With random weights
the ensemble's affine alignment is ill-conditioned: stock at batch_size=1 and stock with one batch, whose latents
differ by ~1e-6, can give predictions that differ by 0.2. The latents are the like-for-like check.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.concurrency import paired_ratio
from benchmarks.measure import time_cases


def sd2_marigold_components(seed: int = 0) -> dict[str, Any]:
    """SD-2-size Marigold modules with random weights (what prs-eth/marigold-depth-v1-0 is shaped like)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from addp_agent.models.depth_build import depth_scheduler
    from addp_agent.models.tokenizer import build_tokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=96, in_channels=8, out_channels=4, cross_attention_dim=1024,
                                attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=768)
    tokenizer = build_tokenizer(model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", projection_dim=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    return {"unet": unet, "vae": vae, "scheduler": depth_scheduler("v_prediction", "trailing"),
            "text_encoder": text_encoder, "tokenizer": tokenizer}


def build(size: str, device: torch.device, dtype: torch.dtype, steps: int, resolution: int) -> tuple[Any, Any, str]:
    """(stock, engine, description): the same modules in both pipelines."""
    from diffusers import MarigoldDepthPipeline

    from addp_agent.engine.depth_pipeline import DepthPipeline
    from addp_agent.models.depth_build import tiny_marigold_components

    if size == "sd2":
        parts, source = sd2_marigold_components(), "SD-2-size Marigold-format modules, random weights"
    else:
        parts, source = tiny_marigold_components(), "tiny Marigold-format modules (the tests' shapes), random weights"
    for name in ("unet", "vae", "text_encoder"):
        parts[name] = parts[name].to(device=device, dtype=dtype)
    config = dict(prediction_type="depth", scale_invariant=True, shift_invariant=True,
                  default_denoising_steps=steps, default_processing_resolution=resolution)
    stock = MarigoldDepthPipeline(**parts, **config)
    engine = DepthPipeline(**parts, **config)
    for pipe in (stock, engine):
        pipe.set_progress_bar_config(disable=True)
    return stock, engine, source


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=["sd2", "tiny"], default=None, help="default: sd2 on CUDA, tiny on CPU")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps (Marigold v1-1's default: 4)")
    parser.add_argument("--ensemble", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=None, help="processing resolution (sd2: 768, tiny: 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    size = args.size or ("sd2" if cuda else "tiny")
    resolution = args.resolution or (768 if size == "sd2" else 32)
    stock, engine, source = build(size, device, dtype, args.steps, resolution)
    height, width = (480, 640) if size == "sd2" else (40, 56)
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    e = args.ensemble

    def outputs(pipe: Any, ensemble: int, **kwargs: Any) -> Any:
        return pipe(image, num_inference_steps=args.steps, ensemble_size=ensemble, processing_resolution=resolution,
                    generator=torch.Generator().manual_seed(0), **kwargs)

    def call(pipe: Any, ensemble: int, **kwargs: Any) -> np.ndarray:
        return outputs(pipe, ensemble, **kwargs).prediction

    cases = {"stock_ensemble1": lambda: call(stock, 1), "engine_ensemble1": lambda: call(engine, 1),
             f"stock_ensemble{e}": lambda: call(stock, e),  # diffusers' default batch_size=1
             f"stock_ensemble{e}_one_batch": lambda: call(stock, e, batch_size=e),
             f"engine_ensemble{e}": lambda: call(engine, e)}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    timings = time_cases(cases, device, args.repeats, lambda line: print(line, flush=True))
    checks = {}
    for name, ensemble, kwargs in (("ensemble1", 1, {}), (f"ensemble{e}_vs_stock_one_batch", e, {"batch_size": e}),
                                   (f"ensemble{e}_vs_stock_default", e, {})):
        ours = outputs(engine, ensemble, output_latent=True)
        theirs = outputs(stock, ensemble, output_latent=True, **kwargs)
        checks[f"{name}_latent_max_abs"] = float((ours.latent - theirs.latent).abs().max())
        checks[f"{name}_prediction_max_abs"] = float(np.abs(ours.prediction - theirs.prediction).max())
    samples = {name: t.samples for name, t in timings.items()}
    report = {
        "model": source, "device": torch.cuda.get_device_name(device) if cuda else "cpu", "dtype": str(dtype),
        "time_utc": started, "image": [height, width], "processing_resolution": resolution, "steps": args.steps,
        "ensemble": e, "repeats": args.repeats,
        "unet_parameters_m": round(sum(p.numel() for p in engine.unet.parameters()) / 1e6, 1),
        "cases": {name: t.as_dict() for name, t in timings.items()}, "checks": checks,
        "ratios": {"ensemble1_speedup": paired_ratio(samples["stock_ensemble1"], samples["engine_ensemble1"]),
                   f"ensemble{e}_speedup": paired_ratio(samples[f"stock_ensemble{e}"], samples[f"engine_ensemble{e}"]),
                   f"ensemble{e}_speedup_vs_stock_one_batch": paired_ratio(samples[f"stock_ensemble{e}_one_batch"],
                                                                          samples[f"engine_ensemble{e}"])},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    for name, t in timings.items():
        print(f"{name:>28}: median {t.median:.4f} s [{t.min:.4f}–{t.max:.4f}]")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio['median']:.2f}× [{ratio['min']:.2f}–{ratio['max']:.2f}]")
    print("checks: " + ", ".join(f"{k}={v:.2e}" for k, v in checks.items()))
    return report


if __name__ == "__main__":
    main()
