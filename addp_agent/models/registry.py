"""Find and load models: the bundled models (by name), local diffusers folders, and known hub checkpoints."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from huggingface_hub.errors import StrictDataclassError

from addp_agent.devices import resolve_device
from addp_agent.errors import ModelLoadError, UserError
from addp_agent.models.defaults import check_defaults

MODELS_DIR = Path(__file__).parent
DEFAULT_MODEL_DIR = MODELS_DIR / "shapes_ref_small"
DEFAULT_DEPTH_MODEL_DIR = MODELS_DIR / "depth_small"

# The models shipped in the package, by the name `--model` / `model=` accepts: name → (folder, what it is).
BUNDLED_MODELS: dict[str, tuple[Path, str]] = {
    "shapes-ref-small": (DEFAULT_MODEL_DIR, "RIS on Shapes-Ref, 64 px; the default RIS model"),
    "scenes3d-ris-small": (MODELS_DIR / "scenes3d_ris_small", "generalized RIS on Scenes-3D, 128 px; a CPU-trained "
                                                              "preview below its quality targets (docs/scenes-3d.md)"),
    "depth-small": (DEFAULT_DEPTH_MODEL_DIR, "relative depth on Scenes-3D, 128 px; the default depth model"),
}
REQUIRED_COMPONENTS = ("unet", "scheduler", "text_encoder", "tokenizer")
# What diffusers, transformers and torch raise on a damaged folder: a file that does not parse, or a config value no
# component can be built from (a negative width, zero training timesteps, a wrong type, a head size of 0 dividing
# by zero, a config failing huggingface_hub's strict dataclass checks).
_LOAD_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError, ArithmeticError,
                StrictDataclassError)

# Known InstructPix2Pix-format checkpoints (users download them at home; nothing here fetches them).
KNOWN_CHECKPOINTS: dict[str, str] = {
    "timbrooks/instruct-pix2pix": "InstructPix2Pix (SD-1.5, 512 px, ε-prediction): the stock editing model",
}


def default_model_path() -> Path:
    """The model shipped in the package; a clear error if this install has none."""
    if not (DEFAULT_MODEL_DIR / "model_index.json").exists():
        raise ModelLoadError(f"no bundled default model found at {DEFAULT_MODEL_DIR}; pass --model PATH_OR_HUB_ID")
    return DEFAULT_MODEL_DIR


def read_index(folder: Path) -> dict[str, Any]:
    """A pipeline folder's parsed ``model_index.json``; a :class:`ModelLoadError` when it is missing, unreadable,
    malformed or not a JSON object."""
    index = folder / "model_index.json"
    if not index.exists():
        raise ModelLoadError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    try:
        components = json.loads(index.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelLoadError(f"{index}: cannot read it ({error.strerror or error})") from None
    except ValueError as error:  # malformed JSON, or not UTF-8
        raise ModelLoadError(f"{index}: malformed JSON ({error})") from None
    if not isinstance(components, dict):
        raise ModelLoadError(f"{index}: malformed, a JSON object of components expected, got "
                             f"{type(components).__name__}")
    return components


def _named(entry: Any) -> bool:
    """Whether a ``model_index.json`` entry names a component: ``[library, class]`` with a class."""
    return isinstance(entry, (list, tuple)) and len(entry) > 0 and entry[0] is not None


def bundled_model_path(name: str) -> Path:
    """The folder of the bundled model called ``name`` (:data:`BUNDLED_MODELS`); a clear error if this install
    lacks it."""
    folder = BUNDLED_MODELS[name][0]
    if not (folder / "model_index.json").is_file():
        raise ModelLoadError(f"bundled model {name!r} is not in this install ({folder}); pass --model PATH_OR_HUB_ID")
    return folder


def resolve_source(source: str | os.PathLike) -> tuple[Path, bool]:
    """(path, is a hub id): an existing local path first, then a bundled model's name, then a name like
    ``owner/model`` as a hub id; anything else must be an existing local path."""
    path = Path(source)
    if not path.exists() and str(source) in BUNDLED_MODELS:
        return bundled_model_path(str(source)), False
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", str(source)) is not None:
        return path, True
    path = path.expanduser()
    if not path.exists():
        raise ModelLoadError(f"{path}: model path does not exist (bundled models: {', '.join(BUNDLED_MODELS)})")
    return path, False


def _placement(device: str | torch.device | None, dtype: torch.dtype | None) -> tuple[torch.device, torch.dtype]:
    """The checked device (default: CUDA when available) and dtype (default: fp16 on CUDA, fp32 on CPU)."""
    resolved = resolve_device(device)
    return resolved, dtype or (torch.float16 if resolved.type == "cuda" else torch.float32)


def _check_folder(folder: Path) -> None:
    components = read_index(folder)
    for name in REQUIRED_COMPONENTS:
        if not _named(components.get(name)) or not (folder / name).is_dir():
            raise ModelLoadError(f"{folder}: component '{name}' is missing; an InstructPix2Pix-format model needs "
                                 f"{', '.join(REQUIRED_COMPONENTS)} (+ vae for latent models)")
    if _named(components.get("vae")) and not (folder / "vae").is_dir():
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


def _check_tokenizer(pipe: Any, source: str | os.PathLike) -> None:
    """A tokenizer folder without its vocabulary still loads (two special tokens, an unbounded max length) and only
    fails at the first prompt; refuse it at load time instead."""
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    if tokenizer is None:
        return
    positions = getattr(getattr(encoder, "config", None), "max_position_embeddings", None)
    limit = positions if isinstance(positions, int) else 4096
    if len(tokenizer) < 3 or not 0 < tokenizer.model_max_length <= limit:
        raise ModelLoadError(f"{source}: the tokenizer is empty or damaged ({len(tokenizer)} tokens, max length "
                             f"{tokenizer.model_max_length}, the text encoder takes {limit}); restore its tokenizer/ "
                             "folder")


def load_pipeline(model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                  dtype: torch.dtype | None = None, progress: bool = True):
    """Load an ADDPPipeline from a folder, a single-file checkpoint (``.ckpt`` / ``.safetensors`` in the original
    layout, see ``single_file.py``), a hub id (cache or download at home), a bundled model's name
    (:data:`BUNDLED_MODELS`), or the bundled default.

    Default device: CUDA when available else CPU; default dtype: fp32 on CPU, fp16 on CUDA.
    ``progress=False`` silences the libraries' loading bars. A stock folder's NSFW safety checker is not loaded: the
    engine paints masks, not pictures to publish (``ADDPPipeline.from_pretrained`` keeps it). A folder's
    ``calibration.json`` (:mod:`addp_agent.models.calibration`) sets the decoder's found rule, the confidence map
    and the domain check; without one (and for hub ids) the model's domain is ``open``.
    """
    from addp_agent.engine.pipeline import ADDPPipeline
    from addp_agent.models.single_file import SINGLE_FILE_SUFFIXES, is_single_file, load_single_file

    source = default_model_path() if model is None else model
    path, hub_id = resolve_source(source)
    if not hub_id:
        if path.is_file() and not is_single_file(path):
            raise ModelLoadError(f"{path}: not a model folder or a single-file checkpoint "
                                 f"({' / '.join(SINGLE_FILE_SUFFIXES)})")
        if not path.is_file():
            _check_folder(path)
    device, dtype = _placement(device, dtype)
    if not hub_id and path.is_file():
        with _loading_bars(progress):
            pipe = load_single_file(path, dtype=dtype)
        return pipe.to(device)
    try:
        with _loading_bars(progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = ADDPPipeline.from_pretrained(str(source if hub_id else path), torch_dtype=dtype,
                                                safety_checker=None, feature_extractor=None,
                                                requires_safety_checker=False)
    except _LOAD_ERRORS as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = ""
        if hub_id:
            known = "; ".join(f"{name}: {what}" for name, what in KNOWN_CHECKPOINTS.items())
            hint = f"; hub ids need the model in the local cache or network access (known: {known})"
        raise ModelLoadError(f"{source}: cannot load as an InstructPix2Pix-format model ({message}){hint}") from None
    check_defaults(source, pipe.config, pipe.scheduler.config)
    pipe.check_unet_channels()
    _check_tokenizer(pipe, source)
    if not hub_id:
        from addp_agent.models.calibration import Calibration

        calibration = Calibration.load(path)
        if calibration is not None:
            pipe.found_rule, pipe.confidence_map = calibration.found_rule(), calibration.confidence_map()
            pipe.domain_check = calibration.domain
    return pipe.to(device)


# ------------------------------------------------------------------------------------------------- depth models

# Known Marigold-format depth checkpoints: download at home (`huggingface-cli download prs-eth/marigold-depth-v1-1`);
# they load from the local Hugging Face cache only, nothing here fetches them.
KNOWN_DEPTH_CHECKPOINTS: dict[str, str] = {
    "prs-eth/marigold-depth-v1-1": "Marigold depth v1-1 (SD-2, DDIM trailing, 4 steps, 768 px)",
    "prs-eth/marigold-depth-v1-0": "Marigold depth v1-0 (SD-2, DDIM; its model_index names no defaults: 10 steps, "
                                   "768 px here)",
    "prs-eth/marigold-depth-lcm-v1-0": "Marigold depth LCM v1-0 (SD-2, LCM, 1–4 steps, 768 px)",
    "prs-eth/marigold-v1-0": "the former name of prs-eth/marigold-depth-v1-0",
}
DEPTH_PIPELINE_CLASSES = ("DepthPipeline", "MarigoldDepthPipeline", "MarigoldPipeline")


def default_depth_model_path() -> Path:
    """The depth model shipped in the package; a clear error while there is none."""
    if not (DEFAULT_DEPTH_MODEL_DIR / "model_index.json").exists():
        raise ModelLoadError("no bundled depth model in this install yet; pass --model with a depth model folder or "
                             f"a Marigold hub id in your cache ({', '.join(KNOWN_DEPTH_CHECKPOINTS)})")
    return DEFAULT_DEPTH_MODEL_DIR


def _check_depth_folder(folder: Path) -> None:
    components = read_index(folder)
    if components.get("_class_name") not in DEPTH_PIPELINE_CLASSES:
        raise ModelLoadError(f"{folder}: a {components.get('_class_name') or 'unknown'} folder is not a depth model "
                             f"(expected {' / '.join(DEPTH_PIPELINE_CLASSES)})")
    for name in ("unet", "scheduler", "vae", "text_encoder", "tokenizer"):
        named = _named(components.get(name))
        if name in ("unet", "scheduler") and not named:
            raise ModelLoadError(f"{folder}: component '{name}' is missing from model_index.json")
        if named and not (folder / name).is_dir():
            raise ModelLoadError(f"{folder}: model_index.json names '{name}' but the {name}/ folder is missing")


def load_depth_pipeline(model: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, progress: bool = True,
                        timestep_spacing: str | None = "trailing"):
    """Load a :class:`~addp_agent.engine.depth_pipeline.DepthPipeline`: a folder (Marigold format or the project's
    pixel models), a known hub id from the local cache, a bundled model's name, or the bundled depth model.

    A folder's ``calibration.json`` sets the domain check (its ``domain`` section; without one: ``open``).
    ``timestep_spacing="trailing"`` (default) re-spaces a DDIM scheduler so few-step sampling starts at t = T − 1
    (Marigold v1-0 files use "leading"); ``None`` keeps the file's. Device and dtype defaults as
    :func:`load_pipeline`.
    """
    from addp_agent.engine.depth_pipeline import DepthPipeline

    source = default_depth_model_path() if model is None else model
    path, hub_id = resolve_source(source)
    if not hub_id:
        _check_depth_folder(path)
    device, dtype = _placement(device, dtype)
    try:
        with _loading_bars(progress), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = DepthPipeline.from_pretrained(str(source if hub_id else path), torch_dtype=dtype,
                                                 local_files_only=hub_id)
    except _LOAD_ERRORS as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = ""
        if hub_id:
            known = "; ".join(f"{name}: {what}" for name, what in KNOWN_DEPTH_CHECKPOINTS.items())
            hint = (f"; hub ids load from the local cache only: download it at home with `huggingface-cli download "
                    f"{source}` (known: {known})")
        raise ModelLoadError(f"{source}: cannot load as a depth model ({message}){hint}") from None
    check_defaults(source, pipe.config, pipe.scheduler.config, depth=True)
    if timestep_spacing is not None and pipe.scheduler.config.get("timestep_spacing") != timestep_spacing \
            and "timestep_spacing" in pipe.scheduler.config:
        pipe.register_modules(scheduler=type(pipe.scheduler).from_config(pipe.scheduler.config,
                                                                         timestep_spacing=timestep_spacing))
    try:
        pipe.check_model()
    except UserError as error:
        raise ModelLoadError(f"{source}: {error}") from None
    if not hub_id:
        from addp_agent.models.calibration import Calibration

        calibration = Calibration.load(path)
        pipe.domain_check = calibration.domain if calibration is not None else None
    return pipe.to(device)
