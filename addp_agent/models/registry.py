"""Find and load models: the bundled default, local diffusers folders, and known hub checkpoints."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from addp_agent.errors import ModelLoadError

DEFAULT_MODEL_DIR = Path(__file__).parent / "shapes_ref_small"
REQUIRED_COMPONENTS = ("unet", "scheduler", "text_encoder", "tokenizer")

# Known InstructPix2Pix-format checkpoints (users download them at home; nothing here fetches them).
KNOWN_CHECKPOINTS: dict[str, str] = {
    "timbrooks/instruct-pix2pix": "InstructPix2Pix (SD-1.5, 512 px, ε-prediction): the stock editing model",
}


def default_model_path() -> Path:
    """The model shipped in the package; a clear error if this install has none."""
    if not (DEFAULT_MODEL_DIR / "model_index.json").exists():
        raise ModelLoadError(f"no bundled default model found at {DEFAULT_MODEL_DIR}; pass --model PATH_OR_HUB_ID")
    return DEFAULT_MODEL_DIR


def _check_folder(folder: Path) -> None:
    index = folder / "model_index.json"
    if not index.exists():
        raise ModelLoadError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        components = json.loads(index.read_text())
    except json.JSONDecodeError as error:
        raise ModelLoadError(f"{index}: malformed JSON ({error})") from None
    for name in REQUIRED_COMPONENTS:
        entry = components.get(name)
        if not entry or entry[0] is None or not (folder / name).is_dir():
            raise ModelLoadError(f"{folder}: component '{name}' is missing; an InstructPix2Pix-format model needs "
                                 f"{', '.join(REQUIRED_COMPONENTS)} (+ vae for latent models)")
    vae = components.get("vae")
    if vae and vae[0] is not None and not (folder / "vae").is_dir():
        raise ModelLoadError(f"{folder}: model_index.json names a vae but the vae/ folder is missing")


@contextmanager
def _loading_bars(show: bool) -> Iterator[None]:
    """Show or hide diffusers'/transformers' loading bars for the block, then restore their setting."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    before = [(lib, lib.is_progress_bar_enabled()) for lib in (diffusers_logging, transformers_logging)]
    for lib, _ in before:
        lib.enable_progress_bar() if show else lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in before:
            lib.enable_progress_bar() if enabled else lib.disable_progress_bar()


def load_pipeline(model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, progress: bool = True):
    """Load an ADDPPipeline from a folder, a hub id (cache or download at home), or the bundled default.

    Default device: CUDA when available else CPU; default dtype: fp32 on CPU, fp16 on CUDA.
    ``progress=False`` silences the libraries' loading bars.
    """
    from addp_agent.engine.pipeline import ADDPPipeline

    source = default_model_path() if model is None else model
    path = Path(source)
    hub_id = not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None
    if not hub_id:
        path = path.expanduser()
        if not path.exists():
            raise ModelLoadError(f"{path}: model path does not exist")
        _check_folder(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        with _loading_bars(progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = ADDPPipeline.from_pretrained(str(source if hub_id else path), torch_dtype=dtype)
    except (OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = ""
        if hub_id:
            known = "; ".join(f"{name}: {what}" for name, what in KNOWN_CHECKPOINTS.items())
            hint = f"; hub ids need the model in the local cache or network access (known: {known})"
        raise ModelLoadError(f"{source}: cannot load as an InstructPix2Pix-format model ({message}){hint}") from None
    pipe.check_unet_channels()
    return pipe.to(device)
