"""The stock pipeline's loaders and helpers on ADDPPipeline: LoRA, textual inversion, IP-Adapter, FreeU, fused QKV,
attention and VAE slicing, offload, ``cross_attention_kwargs``. Each is checked against diffusers'
StableDiffusionInstructPix2PixPipeline on the very same tiny components (within 1e-5), and for doing something."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from PIL import Image

from addp_agent.engine import ADDPPipeline

PROMPT = "the large green circle"
BASE = dict(num_inference_steps=2, guidance_scale=6.0, image_guidance_scale=1.5, output_type="np")
TOLERANCE = 1e-5


@pytest.fixture()
def fresh(one_thread):
    """Fresh tiny components (loaders change the modules in place)."""
    from addp_agent.models.build import build_tiny_latent_pipeline

    return dict(build_tiny_latent_pipeline(seed=0).components)


def picture(seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def run(pipe, prompt=PROMPT, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe(prompt, picture(), generator=torch.Generator().manual_seed(0), **{**BASE, **kwargs}).images


def stock_of(pipe: ADDPPipeline) -> StableDiffusionInstructPix2PixPipeline:
    """The stock pipeline on the same (already modified) modules."""
    parts = {k: v for k, v in pipe.components.items()}
    return StableDiffusionInstructPix2PixPipeline(**parts, requires_safety_checker=False)


def difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def test_textual_inversion_multi_vector_token_matches_stock(fresh):
    ours = ADDPPipeline(**fresh)
    plain = run(ours, "the thing on the left")
    ours.load_textual_inversion({"<shape>": torch.randn(2, 32, generator=torch.Generator().manual_seed(1))},
                                token="<shape>")
    assert ours.maybe_convert_prompt("a <shape>", ours.tokenizer) == "a <shape> <shape>_1"
    ours_out = run(ours, "the <shape> on the left")
    assert difference(ours_out, run(stock_of(ours), "the <shape> on the left")) <= TOLERANCE
    assert difference(ours_out, plain) > 1e-4
    corrected = run(ours, corrections=["the <shape>"], correction_scale=2.0)  # corrections take tokens too
    assert difference(corrected, run(ours)) > 1e-4


def save_tiny_lora(unet, folder) -> None:
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(3)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionInstructPix2PixPipeline.save_lora_weights(folder, unet_lora_layers=layers)


def test_lora_weights_load_like_stock_and_scale_with_cross_attention_kwargs(fresh, tmp_path):
    pytest.importorskip("peft")
    from addp_agent.models.build import build_tiny_latent_pipeline

    save_tiny_lora(build_tiny_latent_pipeline(seed=0).unet, tmp_path)
    ours = ADDPPipeline(**fresh)
    without = run(ours)
    ours.load_lora_weights(tmp_path, weight_name="pytorch_lora_weights.safetensors", adapter_name="tiny")
    with_lora = run(ours)
    assert difference(with_lora, without) > 1e-3
    assert difference(with_lora, run(stock_of(ours))) <= TOLERANCE
    halved = run(ours, cross_attention_kwargs={"scale": 0.5})
    assert difference(halved, run(stock_of(ours), cross_attention_kwargs={"scale": 0.5})) <= TOLERANCE
    assert difference(run(ours, cross_attention_kwargs={"scale": 0.0}), without) <= TOLERANCE
    ours.unload_lora_weights()
    assert difference(run(ours), without) <= TOLERANCE


def tiny_ip_adapter(unet, image_embed_dim: int) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter state dict for ``unet`` in the original layout: an image projection to 4 tokens, and key/value
    projections of those tokens for each cross-attention (numbered 1, 3, 5, … in attention-processor order)."""
    generator = torch.Generator().manual_seed(7)
    cross = int(unet.config.cross_attention_dim)
    adapter: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
            adapter[f"{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross, generator=generator) * 0.3
            adapter[f"{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross, generator=generator) * 0.3
            key_id += 2
    projection = {"proj.weight": torch.randn(4 * cross, image_embed_dim, generator=generator) * 0.3,
                  "proj.bias": torch.zeros(4 * cross), "norm.weight": torch.ones(cross),
                  "norm.bias": torch.zeros(cross)}
    return {"image_proj": projection, "ip_adapter": adapter}


def test_ip_adapter_image_matches_stock(fresh):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=24)).eval()
    ours = ADDPPipeline(**{**fresh, "image_encoder": encoder,
                           "feature_extractor": CLIPImageProcessor(size=32, crop_size=32)})
    without = run(ours)
    ours.load_ip_adapter(tiny_ip_adapter(ours.unet, 24), subfolder="", weight_name="", image_encoder_folder=None)
    reference = picture(seed=9)
    with_image = run(ours, ip_adapter_image=reference)
    assert difference(with_image, run(stock_of(ours), ip_adapter_image=reference)) <= TOLERANCE
    assert difference(with_image, without) > 1e-3
    ours.set_ip_adapter_scale(0.0)
    assert difference(run(ours, ip_adapter_image=reference), without) <= TOLERANCE
    ours.set_ip_adapter_scale(1.0)
    embeds = ours.encode_ip_adapter(reference, None)[0]
    rows = torch.cat([embeds[0], embeds[1], embeds[1]])  # the stock layout [image, negative, negative]
    assert difference(run(ours, ip_adapter_image_embeds=[rows]), with_image) <= TOLERANCE
    corrected = run(ours, ip_adapter_image=reference, corrections=["the blue star"])  # correction rows get it too
    assert np.isfinite(corrected).all() and difference(corrected, with_image) > 1e-4


def test_freeu_fused_qkv_and_slicing_match_stock(fresh):
    ours = ADDPPipeline(**fresh)
    stock = stock_of(ours)  # shares the modules: a helper switched on one is on for both
    base = run(ours)
    ours.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    freeu = run(ours)
    assert difference(freeu, base) > 1e-3 and difference(freeu, run(stock)) <= TOLERANCE
    ours.disable_freeu()
    assert difference(run(ours), base) <= TOLERANCE
    ours.fuse_qkv_projections()
    assert difference(run(ours), base) <= 1e-4 and difference(run(ours), run(stock)) <= TOLERANCE
    ours.unfuse_qkv_projections()
    ours.enable_attention_slicing(1)
    assert difference(run(ours), base) <= 1e-4
    ours.disable_attention_slicing()
    ours.vae.enable_slicing()
    ours.vae.enable_tiling()
    batch = ours([PROMPT] * 2, picture(), generator=[torch.Generator().manual_seed(s) for s in (0, 1)], **BASE).images
    assert difference(batch[:1], base) <= 1e-4
    ours.vae.disable_tiling()
    ours.vae.disable_slicing()


def test_model_offload_hooks_keep_the_result(fresh):
    ours = ADDPPipeline(**fresh)
    base = run(ours)
    ours.enable_model_cpu_offload(device="cpu")
    assert difference(run(ours), base) <= TOLERANCE
    ours.remove_all_hooks()
