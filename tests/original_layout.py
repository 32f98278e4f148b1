"""Write a diffusers InstructPix2Pix-format model in the original (CompVis ldm) single-file layout.

The key mapping is written here from the two layouts themselves (ldm's ``openaimodel.UNetModel``, its autoencoder and
``FrozenCLIPEmbedder``; diffusers' ``UNet2DConditionModel``, ``AutoencoderKL`` and transformers' ``CLIPTextModel``),
so that the loader under test (diffusers' conversion) is checked against an independent writer.
"""

from __future__ import annotations

import torch

RESNET_UNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
RESNET_VAE = {"conv_shortcut": "nin_shortcut"}
ATTENTION_VAE = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _unet_prefixes(config) -> list[tuple[str, str, dict[str, str]]]:
    """(diffusers prefix, ldm prefix, renames of the first name after the prefix) for a UNet2DConditionModel."""
    levels, n = len(config.block_out_channels), int(config.layers_per_block)
    has_attention = ["CrossAttn" in t for t in config.down_block_types]
    up_attention = ["CrossAttn" in t for t in config.up_block_types]
    table = [("time_embedding.linear_1.", "time_embed.0.", {}), ("time_embedding.linear_2.", "time_embed.2.", {}),
             ("conv_in.", "input_blocks.0.0.", {}), ("conv_norm_out.", "out.0.", {}), ("conv_out.", "out.2.", {}),
             ("mid_block.resnets.0.", "middle_block.0.", RESNET_UNET),
             ("mid_block.attentions.0.", "middle_block.1.", {}),
             ("mid_block.resnets.1.", "middle_block.2.", RESNET_UNET)]
    block = 1
    for i in range(levels):
        for j in range(n):
            table.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{block}.0.", RESNET_UNET))
            if has_attention[i]:
                table.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{block}.1.", {}))
            block += 1
        if i < levels - 1:
            table.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{block}.0.op.", {}))
            block += 1
    block = 0
    for i in range(levels):
        for j in range(n + 1):
            table.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{block}.0.", RESNET_UNET))
            if up_attention[i]:
                table.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{block}.1.", {}))
            if j == n and i < levels - 1:
                slot = 2 if up_attention[i] else 1
                table.append((f"up_blocks.{i}.upsamplers.0.conv.", f"output_blocks.{block}.{slot}.conv.", {}))
            block += 1
    return table


def _vae_prefixes(config) -> list[tuple[str, str, dict[str, str]]]:
    levels, n = len(config.block_out_channels), int(config.layers_per_block)
    table = [("quant_conv.", "quant_conv.", {}), ("post_quant_conv.", "post_quant_conv.", {})]
    for side in ("encoder", "decoder"):
        table += [(f"{side}.conv_in.", f"{side}.conv_in.", {}), (f"{side}.conv_out.", f"{side}.conv_out.", {}),
                  (f"{side}.conv_norm_out.", f"{side}.norm_out.", {}),
                  (f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.", RESNET_VAE),
                  (f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.", RESNET_VAE),
                  (f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.", ATTENTION_VAE)]
    for i in range(levels):
        for j in range(n):
            table.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.", RESNET_VAE))
        table.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", f"encoder.down.{i}.downsample.conv.", {}))
        up = levels - 1 - i  # ldm numbers the decoder's levels from the lowest resolution up
        for j in range(n + 1):
            table.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{up}.block.{j}.", RESNET_VAE))
        table.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{up}.upsample.conv.", {}))
    return table


def _rename(state: dict[str, torch.Tensor], table, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    ordered = sorted(table, key=lambda row: -len(row[0]))  # longest prefix first
    for key, tensor in state.items():
        for source, target, renames in ordered:
            if key.startswith(source):
                rest = key[len(source):]
                for old, new in renames.items():
                    if rest.startswith(old + "."):
                        rest = new + rest[len(old):]
                        break
                out[prefix + target + rest] = tensor
                break
        else:
            raise KeyError(f"no original name for {key}")
    return out


def original_state_dict(pipe, ema_offset: float | None = None) -> dict[str, torch.Tensor]:
    """The pipeline's UNet, VAE and CLIP text encoder under their original keys (contiguous fp32 copies).

    ``ema_offset``: also write ``model_ema.*`` (the UNet's weights, as ldm stores them: dots removed) and shift the
    trained ``model.diffusion_model.*`` weights by this much, so a loader that picks the wrong set is caught.
    """
    unet = _rename(pipe.unet.state_dict(), _unet_prefixes(pipe.unet.config), "model.diffusion_model.")
    vae = _rename(pipe.vae.state_dict(), _vae_prefixes(pipe.vae.config), "first_stage_model.")
    for key, tensor in vae.items():  # the autoencoder's mid attention is 1×1 convolutions in ldm
        if ".mid.attn_1." in key and key.endswith(".weight") and tensor.ndim == 2:
            vae[key] = tensor[:, :, None, None]
    text_state = pipe.text_encoder.state_dict()
    flat = not hasattr(pipe.text_encoder, "text_model")
    text = {"cond_stage_model.transformer." + ("text_model." if flat else "") + k: v for k, v in text_state.items()}
    state = {**unet, **vae, **text}
    if ema_offset is not None:
        for key in list(unet):
            state["model_ema." + "".join(key.split(".")[1:])] = unet[key]
            state[key] = unet[key] + ema_offset
        state["model_ema.num_updates"] = torch.tensor(7)
    return {k: v.detach().float().contiguous().clone() for k, v in state.items()}
