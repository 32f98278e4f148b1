"""Single-file checkpoints (``.ckpt`` / ``.safetensors`` in the original ldm layout) of InstructPix2Pix-format models:
the released InstructPix2Pix weights, the checkpoints the official ADDP RIS code writes, and the package's tiny twin.

Loading goes through diffusers' single-file loading (each component's ``from_single_file`` with a diffusers-format
config) with the configs shipped in ``models/configs/`` (small JSON files): nothing is fetched from the hub. The file's
keys and shapes pick the config; a file of another architecture gets one clear line, and a file that almost fits
names the key that does not. A single file holds no tokenizer: it is taken from the config, a ``tokenizer/`` folder
next to the checkpoint, or the local Hugging Face cache (the CLIP ViT-L/14 tokenizer of SD-1.x models).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from addp_agent.errors import ModelLoadError

CONFIGS_DIR = Path(__file__).parent / "configs"
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors")
UNET = "model.diffusion_model."
VAE = "first_stage_model."
TEXT = "cond_stage_model.transformer."
EMA = "model_ema."
CONV_IN = UNET + "input_blocks.0.0.weight"
CONTEXT = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
# where an SD-1.x text encoder's tokenizer may already be on this machine (read from the cache only, never fetched)
CLIP_L_TOKENIZERS: tuple[tuple[str, str], ...] = (
    ("openai/clip-vit-large-patch14", ""), ("timbrooks/instruct-pix2pix", "tokenizer"),
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", "tokenizer"), ("runwayml/stable-diffusion-v1-5", "tokenizer"))
FAMILIES = {"v1": "Stable Diffusion 1.x", "v2": "Stable Diffusion 2.x", "inpainting": "Stable Diffusion inpainting",
            "inpainting_v2": "Stable Diffusion 2 inpainting", "xl_base": "Stable Diffusion XL",
            "xl_refiner": "Stable Diffusion XL refiner", "xl_inpaint": "Stable Diffusion XL inpainting",
            "upscale": "Stable Diffusion x4 upscaler", "playground-v2-5": "Playground v2.5"}
Checkpoint = dict[str, torch.Tensor]


def is_single_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES


def read_checkpoint(path: Path) -> Checkpoint:
    """The file's tensors (a ``state_dict`` inside a training checkpoint is unwrapped; ``.ckpt`` files are read with
    ``weights_only``: no pickled code runs)."""
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    try:
        checkpoint = load_single_file_checkpoint(str(path), local_files_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        cause = error.__cause__ or error
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        hint = (" (it holds pickled Python objects: convert it to .safetensors on a machine you trust)"
                if "weights_only" in str(cause) or "Unsupported global" in str(cause) else "")
        raise ModelLoadError(f"{path}: cannot read the checkpoint: {detail[:160]}{hint}") from None
    tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)} if isinstance(checkpoint, dict) \
        else {}
    if not tensors:
        raise ModelLoadError(f"{path}: holds no tensors; not a model checkpoint")
    return tensors


def check_architecture(checkpoint: Checkpoint, path: Path) -> None:
    """One clear line when the file is not an InstructPix2Pix-format model in the original layout."""
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    conv_in = checkpoint.get(CONV_IN)
    if conv_in is None:
        family = infer_diffusers_model_type(checkpoint)
        if family != "v1":  # diffusers' fallback name when nothing matched
            raise ModelLoadError(f"{path}: a {FAMILIES.get(family, family)} checkpoint, not InstructPix2Pix")
        first = ", ".join(sorted({k.split(".")[0] for k in checkpoint})[:4])
        raise ModelLoadError(f"{path}: not an InstructPix2Pix checkpoint in the original (ldm) layout: no "
                             f"'{CONV_IN}' (its keys start with {first})")
    if conv_in.ndim != 4 or conv_in.shape[1] != 8:
        family = FAMILIES.get(infer_diffusers_model_type(checkpoint), "diffusion")
        channels = conv_in.shape[1] if conv_in.ndim == 4 else "?"
        raise ModelLoadError(f"{path}: a {family} checkpoint whose UNet takes {channels} input channels, not "
                             "InstructPix2Pix (8: noisy + image latents)")
    if not any(k.startswith(TEXT + "text_model.") for k in checkpoint):
        other = "an OpenCLIP (SD-2 family)" if any(k.startswith("cond_stage_model.model.") for k in checkpoint) \
            else "no"
        raise ModelLoadError(f"{path}: an InstructPix2Pix UNet with {other} text encoder; only CLIP text encoders "
                             f"('{TEXT}text_model.*', SD-1.x) are supported")
    if not any(k.startswith(VAE) for k in checkpoint):
        raise ModelLoadError(f"{path}: an InstructPix2Pix UNet without its VAE ('{VAE}*' keys)")


def has_ema(checkpoint: Checkpoint) -> bool:
    """EMA weights present (the official code keeps them beside the trained ones; inference uses them)."""
    return sum(k.startswith(EMA) for k in checkpoint) > 100


# ------------------------------------------------------------------------------------------------ configs
def shipped_configs() -> list[Path]:
    return sorted(p for p in CONFIGS_DIR.iterdir() if (p / "model_index.json").is_file())


def text_config(folder: Path, checkpoint: Checkpoint) -> Any:
    """The text encoder's config, with the vocabulary and positions the file has (data sizes, not architecture:
    a fine-tuned file may carry added tokens)."""
    from transformers import CLIPTextConfig

    config = CLIPTextConfig.from_pretrained(folder / "text_encoder")
    tokens = checkpoint.get(TEXT + "text_model.embeddings.token_embedding.weight")
    positions = checkpoint.get(TEXT + "text_model.embeddings.position_embedding.weight")
    if tokens is not None:
        config.vocab_size = int(tokens.shape[0])
    if positions is not None:
        config.max_position_embeddings = int(positions.shape[0])
    return config


def _text_state(checkpoint: Checkpoint, flat: bool) -> Checkpoint:
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    state = convert_ldm_clip_checkpoint(checkpoint)
    state = {k: v for k, v in state.items() if not k.endswith("position_ids")}  # a buffer, not a weight
    return {k.removeprefix("text_model."): v for k, v in state.items()} if flat else state


Component = tuple[str, str, Any, Callable[[], Checkpoint]]


def _components(folder: Path, checkpoint: Checkpoint, ema: bool) -> list[Component]:
    """(name, the file's key prefix, an empty (meta) model, the file's weights converted to it) per component."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextModel

    unet_config = UNet2DConditionModel.load_config(folder / "unet")
    vae_config = AutoencoderKL.load_config(folder / "vae")
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel.from_config(unet_config), AutoencoderKL.from_config(vae_config)
        text = CLIPTextModel(text_config(folder, checkpoint))
    flat = not hasattr(text, "text_model")
    return [("unet", EMA if ema else UNET, unet, lambda: convert_ldm_unet_checkpoint(checkpoint, unet_config,
                                                                                      extract_ema=ema)),
            ("vae", VAE, vae, lambda: convert_ldm_vae_checkpoint(checkpoint, vae_config)),
            ("text_encoder", TEXT, text, lambda: _text_state(checkpoint, flat))]


def _where(tensor: torch.Tensor) -> tuple[int, ...]:
    """Where a tensor's data lives, so a converted tensor (the same data, maybe reshaped) finds its file key."""
    if tensor.device.type == "meta":
        return (id(tensor),)
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset()


def _missing(key: str, component: str, prefix: str, converted: Checkpoint, origin: dict[tuple[int, ...], str]) -> str:
    """The file key a missing weight would have had: a sibling parameter's module (``….weight`` found, ``….bias``
    missing), diffusers' table of the UNet's outer layers, else the component's own name for it."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    module, _, parameter = key.rpartition(".")
    for other, tensor in converted.items():
        found = origin.get(_where(tensor)) if tensor is not None else None
        if other.rpartition(".")[0] == module and found is not None:
            return f"'{found.rpartition('.')[0]}.{parameter}'"
    if component == "unet" and key in DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]:
        return f"'{UNET}{DIFFUSERS_TO_LDM_MAPPING['unet']['layers'][key]}'"
    return f"the weight for the {component}'s '{key}'"


def first_mismatch(folder: Path, checkpoint: Checkpoint, ema: bool) -> str | None:
    """Why the file does not fit the config in ``folder``, naming the file's key; None when every weight fits."""
    origin = {_where(t): k for k, t in checkpoint.items()}
    name = folder.name
    for component, prefix, model, convert in _components(folder, checkpoint, ema):
        try:
            converted = convert()
        except KeyError as error:
            key = str(error.args[0]) if error.args else "?"
            return f"'{key if key.startswith(prefix) else prefix + key}' is missing (the {name} {component})"
        except (IndexError, TypeError, AttributeError, RuntimeError, ValueError) as error:
            return f"its {component} weights do not map onto the {name} {component} ({type(error).__name__}: {error})"
        expected = {k: v.shape for k, v in model.state_dict().items()}
        used = set()
        for key, shape in expected.items():
            tensor = converted.get(key)
            if tensor is None:
                return f"{_missing(key, component, prefix, converted, origin)} is missing (the {name} {component})"
            where = origin.get(_where(tensor), f"{component}.{key}")
            used.add(where)
            if tensor.shape != shape:
                return (f"'{where}' has shape {tuple(tensor.shape)} in the file, but the {name} {component} needs "
                        f"{tuple(shape)}")
        skip = ("position_ids", "model_ema.decay", "model_ema.num_updates")
        extra = sorted(k for k in checkpoint if k.startswith(prefix) and k not in used and not k.endswith(skip))
        if extra:
            return f"'{extra[0]}' has no place in the {name} {component} ({len(extra)} such keys)"
    return None


def select_config(checkpoint: Checkpoint, path: Path, ema: bool) -> Path:
    """The shipped config every weight of the file fits; else the nearest one's first mismatch as the error."""
    width, context = int(checkpoint[CONV_IN].shape[0]), checkpoint.get(CONTEXT)
    near: tuple[Path, str] | None = None
    shipped = []
    for folder in shipped_configs():
        problem = first_mismatch(folder, checkpoint, ema)
        if problem is None:
            return folder
        unet = json.loads((folder / "unet" / "config.json").read_text())
        shipped.append(f"{folder.name} ({unet['block_out_channels'][0]}, {unet['cross_attention_dim']})")
        same_family = unet["block_out_channels"][0] == width and (
            context is None or unet["cross_attention_dim"] == context.shape[-1])
        if same_family and near is None:
            near = (folder, problem)
    if near is not None:
        raise ModelLoadError(f"{path}: does not fit the {near[0].name} architecture: {near[1]}")
    raise ModelLoadError(f"{path}: no shipped configuration fits an InstructPix2Pix UNet {width} channels wide with "
                         f"context {None if context is None else context.shape[-1]} (shipped, as (width, context): "
                         f"{', '.join(shipped)})")


# ---------------------------------------------------------------------------------------------- tokenizer
def find_tokenizer(path: Path, folder: Path, vocab_size: int) -> Any:
    """The tokenizer of the config, else a ``tokenizer/`` folder next to the file, else (a 49408-token CLIP text
    encoder) the CLIP ViT-L/14 tokenizer from the local Hugging Face cache."""
    from transformers import CLIPTokenizer

    for candidate in (folder / "tokenizer", path.parent / "tokenizer"):
        if candidate.is_dir():
            try:
                tokenizer = CLIPTokenizer.from_pretrained(candidate, local_files_only=True)
            except (OSError, ValueError) as error:
                raise ModelLoadError(f"{candidate}: not a CLIP tokenizer ({str(error).splitlines()[0]})") from None
            break
    else:
        tokenizer = _cached_clip_l() if vocab_size == 49408 else None
    if tokenizer is None:
        raise ModelLoadError(
            f"{path}: a single file holds no tokenizer; put the text encoder's tokenizer files in {path.parent}/"
            "tokenizer/ (for SD-1.x models, CLIP ViT-L/14's: `huggingface-cli download openai/clip-vit-large-patch14 "
            "vocab.json merges.txt tokenizer_config.json special_tokens_map.json --local-dir tokenizer`)")
    if len(tokenizer) > vocab_size:
        raise ModelLoadError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the file's text encoder only "
                             f"{vocab_size}; it is not this model's tokenizer")
    return tokenizer


def _cached_clip_l() -> Any:
    from transformers import CLIPTokenizer

    for repo, subfolder in CLIP_L_TOKENIZERS:
        try:
            return CLIPTokenizer.from_pretrained(repo, subfolder=subfolder, local_files_only=True)
        except (OSError, ValueError):
            continue
    return None


# ------------------------------------------------------------------------------------------------- loading
def load_single_file(path: str | os.PathLike, dtype: torch.dtype | None = None,
                     config: str | os.PathLike | None = None):
    """An :class:`~addp_agent.engine.pipeline.ADDPPipeline` from one ``.ckpt`` / ``.safetensors`` file (EMA weights
    when the file has them). ``config``: a diffusers-format config folder to use instead of the shipped ones."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from addp_agent.engine.pipeline import ADDPPipeline

    path = Path(path)
    checkpoint = read_checkpoint(path)
    check_architecture(checkpoint, path)
    ema = has_ema(checkpoint)
    if config is not None:
        folder = Path(config)
        problem = first_mismatch(folder, checkpoint, ema)
        if problem is not None:
            raise ModelLoadError(f"{path}: does not fit the config in {folder}: {problem}")
    else:
        folder = select_config(checkpoint, path, ema)
    options = dict(config=str(folder), local_files_only=True, torch_dtype=dtype)
    unet = UNet2DConditionModel.from_single_file(checkpoint, subfolder="unet", extract_ema=ema, **options)
    vae = AutoencoderKL.from_single_file(checkpoint, subfolder="vae", **options)
    text_encoder = CLIPTextModel(text_config(folder, checkpoint))
    text_encoder.load_state_dict(_text_state(checkpoint, not hasattr(text_encoder, "text_model")))
    text_encoder = text_encoder.to(dtype=dtype).eval() if dtype is not None else text_encoder.eval()
    index = json.loads((folder / "model_index.json").read_text())
    scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(folder, subfolder="scheduler")
    _, optional = ADDPPipeline._get_signature_keys(ADDPPipeline)
    settings = {k: v for k, v in index.items() if k in optional}
    tokenizer = find_tokenizer(path, folder, text_encoder.config.vocab_size)
    return ADDPPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                        **settings)
