"""Shared fixtures: tiny models built locally and saved through the real save_pretrained path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*torchvision.*")
torch.set_num_threads(min(2, torch.get_num_threads()))

TINY_PIXEL_KWARGS = dict(
    resolution=32, patch_size=2, block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, norm_num_groups=8,
)


def build_tiny_pixel():
    from addp_agent.models.build import PixelModelConfig, TextEncoderConfig, build_pixel_pipeline

    config = PixelModelConfig(**TINY_PIXEL_KWARGS, text=TextEncoderConfig(hidden_size=32, layers=1, heads=2))
    return build_pixel_pipeline(config, seed=0)


@pytest.fixture(scope="session")
def tiny_pixel_dir(tmp_path_factory) -> Path:
    """A tiny pixel-space ADDPPipeline folder (random weights, 32 px, DDIM, x₀-prediction)."""
    folder = tmp_path_factory.mktemp("tiny-pixel")
    build_tiny_pixel().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_latent_dir(tmp_path_factory) -> Path:
    """A tiny SD-shaped InstructPix2Pix folder with a VAE (EulerAncestral, ε-prediction)."""
    from addp_agent.models.build import build_tiny_latent_pipeline

    folder = tmp_path_factory.mktemp("tiny-latent")
    build_tiny_latent_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny_pixel(tiny_pixel_dir):
    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(tiny_pixel_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def tiny_latent(tiny_latent_dir):
    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(tiny_latent_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture()
def tiny_train_config(tmp_path):
    """Factory of TrainConfigs for a tiny 32-px pixel model on 16 Shapes-Ref samples (no validation)."""
    from addp_agent.models.build import PixelModelConfig, TextEncoderConfig
    from addp_agent.train.config import TrainConfig

    model = PixelModelConfig(**TINY_PIXEL_KWARGS, text=TextEncoderConfig(hidden_size=32, layers=1, heads=2))

    def make(**overrides):
        settings = dict(out=tmp_path / "run", n_train=16, model=model, steps=4, batch_size=2, warmup_steps=1,
                        val_every=0, checkpoint_every=2, log_every=1, val_steps=2)
        return TrainConfig(**(settings | overrides))

    return make


@pytest.fixture()
def tiny_model_json(tmp_path) -> Path:
    """The tiny pixel model's PixelModelConfig as a JSON file (``addp train --model-config``)."""
    from addp_agent.models.build import PixelModelConfig, TextEncoderConfig

    path = tmp_path / "tiny-model.json"
    config = PixelModelConfig(**TINY_PIXEL_KWARGS, text=TextEncoderConfig(hidden_size=32, layers=1, heads=2))
    path.write_text(config.model_dump_json())
    return path


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: on a busy 2-core machine, 2 threads make tiny convolutions far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pipe(tiny_pixel_dir):
    """The tiny pixel pipeline, shared by the tests of one module."""
    from addp_agent.engine import ADDPPipeline

    return ADDPPipeline.from_pretrained(tiny_pixel_dir)


def redden(source: Path, folder: Path) -> Path:
    """The tiny random model with a red-leaning output bias, so masks are non-empty and corrections matter."""
    from addp_agent.engine import ADDPPipeline

    pipe = ADDPPipeline.from_pretrained(source)
    with torch.no_grad():
        pipe.unet.conv_out.weight.mul_(3.0)
        pipe.unet.conv_out.bias.copy_(torch.tensor([1.0] * 4 + [-1.0] * 8))  # R up, G and B down (2x2 patches)
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def red_dir(tiny_pixel_dir, tmp_path_factory) -> Path:
    return redden(tiny_pixel_dir, tmp_path_factory.mktemp("red-pixel"))


@pytest.fixture(scope="module")
def red_pipe(red_dir):
    from addp_agent.models.registry import load_pipeline

    pipe = load_pipeline(str(red_dir), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


TINY_DEPTH_KWARGS = dict(
    resolution=32, patch_size=2, block_out_channels=(16, 32), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, norm_num_groups=8, default_steps=2,
)


@pytest.fixture(scope="session")
def tiny_marigold_dir(tmp_path_factory) -> Path:
    """A tiny Marigold-format folder written by the stock MarigoldDepthPipeline (random weights, DDIM trailing,
    v-prediction, 4 default steps at 32 px)."""
    from diffusers import MarigoldDepthPipeline

    from addp_agent.models.depth_build import tiny_marigold_components

    folder = tmp_path_factory.mktemp("tiny-marigold")
    MarigoldDepthPipeline(**tiny_marigold_components(), prediction_type="depth", default_denoising_steps=4,
                          default_processing_resolution=32).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_depth_dir(tmp_path_factory) -> Path:
    """A tiny pixel-space depth folder (random weights, 32 px, patch 2, v-prediction, 2 default steps)."""
    from addp_agent.models.depth_build import PixelDepthModelConfig, build_pixel_depth_pipeline

    folder = tmp_path_factory.mktemp("tiny-depth")
    build_pixel_depth_pipeline(PixelDepthModelConfig(**TINY_DEPTH_KWARGS), seed=0).save_pretrained(folder)
    return folder


def noisy_photo(height: int, width: int, seed: int = 0):
    """The worst case for PNG: smooth gradients under strong per-pixel noise (like a high-ISO photo)."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    noise = np.random.default_rng(seed).integers(-60, 60, (height, width, 3))
    return (base + noise).clip(0, 255).astype(np.uint8)


MCP_MAX_SESSIONS = 4  # per client in the shared HTTP server: small, so one client's burst would evict another's


@dataclass
class McpServer:
    url: str
    folder: Path
    process: subprocess.Popen


@contextmanager
def mcp_http_server(model_dir: Path, folder: Path, *options: str):
    """``addp mcp --http`` on a free loopback port serving ``folder``; yields a :class:`McpServer` once it listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "addp_agent", "mcp", "--model", str(model_dir), "--allow-dir", str(folder),
         "--http", f"127.0.0.1:{port}", *options], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "ADDP_CRITIC_MODEL": ""})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode()[-2000:]
                time.sleep(0.2)
        yield McpServer(f"http://127.0.0.1:{port}/mcp", folder, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def serve_folder(folder: Path) -> Path:
    """``scene.png`` (64 px Shapes-Ref), ``photo.png`` (320×240 noise), ``large.jpg`` (2000×1500 noise)."""
    from PIL import Image

    from addp_agent.data.shapes import generate_sample

    Image.fromarray(generate_sample("val", 5).image).save(folder / "scene.png")
    Image.fromarray(noisy_photo(240, 320)).save(folder / "photo.png")
    Image.fromarray(noisy_photo(1500, 2000)).save(folder / "large.jpg", quality=95)
    return folder


@pytest.fixture(scope="session")
def mcp_http(tiny_pixel_dir, tmp_path_factory):
    """One real ``addp mcp --http`` server with the tiny model for the whole run, serving :func:`serve_folder`."""
    with mcp_http_server(tiny_pixel_dir, serve_folder(tmp_path_factory.mktemp("served")), "--max-sessions",
                         str(MCP_MAX_SESSIONS)) as server:
        yield server


@pytest.fixture(scope="module")
def depth_pipe(tiny_depth_dir):
    """The tiny pixel depth model loaded through the registry (as the tools load it), shared by one module."""
    from addp_agent.models.registry import load_depth_pipeline

    pipe = load_depth_pipeline(str(tiny_depth_dir), device="cpu", progress=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
