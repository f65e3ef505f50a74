"""State-dict key maps from this project's UNet / VAE to the diffusers layout (``{our key: diffusers key}``).

Derived from our built model (its blocks, in order), so every configuration maps without a table per model:

* UNet: ``input_blocks.0.0`` -> ``conv_in``; ``input_blocks.N.{0,1}`` -> ``down_blocks.L.{resnets,attentions}.J``
  (a downsampler: ``down_blocks.L.downsamplers.0``); ``middle_block.{0,1,2}`` -> ``mid_block.{resnets.0,
  attentions.0, resnets.1}``; ``output_blocks.N.*`` -> ``up_blocks.U.{resnets,attentions}.I`` and
  ``up_blocks.U.upsamplers.0``; ``time_embed.{0,2}`` / ``label_emb.0.{0,2}`` -> ``time_embedding`` /
  ``add_embedding.linear_{1,2}``; ``out.{0,2}`` -> ``conv_norm_out`` / ``conv_out``. Transformers have the same
  inner names in both (``norm, proj_in, transformer_blocks.K..., proj_out``).
* VAE: ``down.I.block.J`` -> ``down_blocks.I.resnets.J``; ``up.I`` -> ``up_blocks.{n-1-I}`` (diffusers counts
  decoder levels from the lowest resolution); ``mid.{block_1, attn_1, block_2}`` -> ``mid_block.{resnets.0,
  attentions.0, resnets.1}``; ``norm_out`` -> ``conv_norm_out``; attention ``norm, q, k, v, proj_out`` ->
  ``group_norm, to_q, to_k, to_v, to_out.0`` (before diffusers 0.14: ``query, key, value, proj_attn``).
* ResBlocks: ``temb_proj`` -> ``time_emb_proj``, ``nin_shortcut`` -> ``conv_shortcut`` (the rest agree).

Diffusers stores transformer projections (``use_linear_projection``) and the VAE attention as linear layers;
the loaders view them as the 1x1 convs our blocks use.
"""

from __future__ import annotations

from torch import nn

from sige.nn.attention import AttnBlock, SpatialTransformer
from sige.nn.blocks import Downsample, ResBlock, Upsample

RESNET_KEYS = {"temb_proj": "time_emb_proj", "nin_shortcut": "conv_shortcut"}
VAE_ATTENTION_KEYS = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
# the VAE attention's names in files written by diffusers before 0.14 (still on the Hub, e.g. SD 1.4's VAE)
LEGACY_VAE_ATTENTION_KEYS = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def _map(model: nn.Module, roots: dict[str, str]) -> dict[str, str]:
    """``{our key: diffusers key}`` of every state-dict entry, through ``roots`` (our module -> diffusers module)."""
    modules = dict(model.named_modules())
    out = {}
    for key in model.state_dict():
        parts = key.split(".")
        for i in range(len(parts) - 1, 0, -1):
            root = ".".join(parts[:i])
            if root in roots:
                break
        else:
            raise KeyError(f"no diffusers name for {key!r} (a block this key map does not know)")
        rest = parts[i:]
        owner = modules[root]
        renames = (
            RESNET_KEYS if isinstance(owner, ResBlock) else VAE_ATTENTION_KEYS if isinstance(owner, AttnBlock) else {}
        )
        if len(rest) > 1:
            rest[0] = renames.get(rest[0], rest[0])
        out[key] = ".".join(p for p in (roots[root], *rest) if p)
    return out


def unet_key_map(unet: nn.Module) -> dict[str, str]:
    """``{our key: diffusers key}`` of a :class:`sdxl.unet.UNet` (any configuration)."""
    roots = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
             "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out",
             "middle_block.0": "mid_block.resnets.0", "middle_block.1": "mid_block.attentions.0",
             "middle_block.2": "mid_block.resnets.1"}  # fmt: skip
    if unet.label_emb is not None:
        roots.update({"label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2"})
    level, j = 0, 0
    for n in range(1, len(unet.input_blocks)):
        for m, layer in enumerate(unet.input_blocks[n]):
            if isinstance(layer, Downsample):
                roots[f"input_blocks.{n}.{m}"] = f"down_blocks.{level}.downsamplers.0"
                level, j = level + 1, -1
            elif isinstance(layer, ResBlock):
                roots[f"input_blocks.{n}.{m}"] = f"down_blocks.{level}.resnets.{j}"
            elif isinstance(layer, SpatialTransformer):
                roots[f"input_blocks.{n}.{m}"] = f"down_blocks.{level}.attentions.{j}"
        j += 1
    per_level = unet.cfg.num_res_blocks + 1
    for n, stage in enumerate(unet.output_blocks):
        u, i = divmod(n, per_level)
        for m, layer in enumerate(stage):
            kind = {ResBlock: f"resnets.{i}", SpatialTransformer: f"attentions.{i}", Upsample: "upsamplers.0"}
            roots[f"output_blocks.{n}.{m}"] = f"up_blocks.{u}.{kind[type(layer)]}"
    return _map(unet, roots)


def _coder_roots(coder: nn.Module, ours: str, theirs: str, decoder: bool) -> dict[str, str]:
    roots = {f"{ours}{name}": f"{theirs}{name}" for name in ("conv_in", "conv_out")}
    roots[f"{ours}norm_out"] = f"{theirs}conv_norm_out"
    for name, target in (("block_1", "resnets.0"), ("attn_1", "attentions.0"), ("block_2", "resnets.1")):
        roots[f"{ours}mid.{name}"] = f"{theirs}mid_block.{target}"
    levels = coder.up if decoder else coder.down
    n = len(levels)
    for i, level in enumerate(levels):
        d = n - 1 - i if decoder else i
        group = "up_blocks" if decoder else "down_blocks"
        for j in range(len(level.block)):
            roots[f"{ours}{'up' if decoder else 'down'}.{i}.block.{j}"] = f"{theirs}{group}.{d}.resnets.{j}"
        if decoder and hasattr(level, "upsample"):
            roots[f"{ours}up.{i}.upsample"] = f"{theirs}{group}.{d}.upsamplers.0"
        if not decoder and hasattr(level, "downsample"):
            roots[f"{ours}down.{i}.downsample"] = f"{theirs}{group}.{d}.downsamplers.0"
    return roots


def vae_key_map(model: nn.Module) -> dict[str, str]:
    """``{our key: diffusers key}`` of our ``AutoencoderKL`` (keys of diffusers' ``AutoencoderKL``), or of an
    ``Encoder`` / ``Decoder`` alone (keys relative to diffusers' ``encoder.`` / ``decoder.``)."""
    from .vae import AutoencoderKL, Decoder, Encoder

    if isinstance(model, AutoencoderKL):
        roots = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
        roots.update(_coder_roots(model.encoder, "encoder.", "encoder.", decoder=False))
        roots.update(_coder_roots(model.decoder, "decoder.", "decoder.", decoder=True))
    elif isinstance(model, (Encoder, Decoder)):
        roots = _coder_roots(model, "", "", decoder=isinstance(model, Decoder))
    else:
        raise TypeError(f"vae_key_map takes our AutoencoderKL, Encoder or Decoder, got {type(model).__name__}")
    return _map(model, roots)


def legacy_vae_names(key_map: dict[str, str]) -> dict[str, str]:
    """The same map with the VAE attention's pre-0.14 diffusers names (``query`` ... ``proj_attn``)."""
    out = {}
    for ours, theirs in key_map.items():
        for new, old in LEGACY_VAE_ATTENTION_KEYS.items():
            marker = f"mid_block.attentions.0.{new}."
            if marker in theirs:
                theirs = theirs.replace(marker, f"mid_block.attentions.0.{old}.")
        out[ours] = theirs
    return out
