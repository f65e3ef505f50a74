"""Diffusers configs (``UNet2DConditionModel.config``, ``AutoencoderKL.config``) as this project's
:class:`~sdxl.config.UNetConfig` / :class:`~sdxl.config.VAEConfig`.

Only the config fields' names and meanings are read (they have been stable across diffusers releases), never
diffusers' module internals, so the same code serves every release that writes these fields. What our
architecture cannot express is refused with an error naming the field: other block types, class or
image-hint embeddings, LCM's ``time_cond_proj_dim``, other activations, norms or kernel sizes. A field this
module does not know is accepted only when it is off (``None`` / ``False``): new diffusers options are opt-in,
and one that is switched on may change the network.

Diffusers' ``attention_head_dim`` is the number of heads per level (a historical misnomer): SD 1.x has 8 heads
everywhere, SD 2.x and SDXL heads of width 64 (``[5, 10, 20, 20]`` for 320 / 640 / 1280 channels).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from .config import UNetConfig, VAEConfig, unet_config, vae_config

EMBEDDED = Path(__file__).with_name("diffusers_configs")

# Settings that change how the engine runs or counts a model, never its weights: taken from the model config
# (or the caller), not from diffusers.
UNET_ENGINE_FIELDS = ("sparse", "sparse_middle_transformer", "self_attn_impl", "cross_attn_impl",
                      "cross_attn_sparse_impl", "blocks")  # fmt: skip
VAE_ENGINE_FIELDS = ("sparse", "attn_impl", "attn_sparse_impl", "blocks")
# Engine defaults per family, as the project's own sd14 / sdxl_* configs set them (same MAC convention).
SD_ENGINE = dict(sparse_middle_transformer=False, self_attn_impl="bmm", cross_attn_impl="bmm",
                 cross_attn_sparse_impl="bmm")  # fmt: skip
SDXL_ENGINE = dict(sparse_middle_transformer=True, self_attn_impl="sdpa", cross_attn_impl="sdpa",
                   cross_attn_sparse_impl="bmm")  # fmt: skip
SDXL_VAE_ENGINE = dict(attn_impl="sdpa", attn_sparse_impl="bmm")

# field -> the value our UNet implements (the diffusers default; an absent field takes it)
UNET_FIXED: dict[str, Any] = {
    "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0, "mid_block_type": "UNetMidBlock2DCrossAttn",
    "downsample_padding": 1, "mid_block_scale_factor": 1, "act_fn": "silu", "norm_eps": 1e-5,
    "dual_cross_attention": False, "class_embed_type": None, "num_class_embeds": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "resnet_time_scale_shift": "default", "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0, "time_embedding_type": "positional", "time_embedding_act_fn": None,
    "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "attention_type": "default", "class_embeddings_concat": False, "cross_attention_norm": None,
    "num_attention_heads": None,
}  # fmt: skip
# fields read below, or without effect on an inference forward of this architecture
UNET_READ = {
    "in_channels", "out_channels", "block_out_channels", "down_block_types", "up_block_types", "layers_per_block",
    "transformer_layers_per_block", "reverse_transformer_layers_per_block", "attention_head_dim",
    "cross_attention_dim", "norm_num_groups", "projection_class_embeddings_input_dim", "addition_time_embed_dim",
    "only_cross_attention", "mid_block_only_cross_attention", "addition_embed_type", "time_embedding_dim",
    "sample_size", "dropout", "use_linear_projection", "upcast_attention", "addition_embed_type_num_heads",
}  # fmt: skip
VAE_FIXED: dict[str, Any] = {
    "act_fn": "silu", "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True,
}  # fmt: skip
VAE_READ = {
    "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels", "layers_per_block",
    "latent_channels", "norm_num_groups",
    # used by the pipelines (latent scaling), not by the networks
    "sample_size", "scaling_factor", "shift_factor", "latents_mean", "latents_std", "force_upcast",
}  # fmt: skip


class DiffusersConfigError(ValueError):
    """A diffusers config this project's UNet / VAE cannot express; the message names the field."""


def read_config(path: str | Path) -> dict[str, Any]:
    """A diffusers ``config.json`` (or the name of an embedded one, e.g. ``sd14_unet``) as a dict."""
    p = Path(path)
    if not p.is_file() and (EMBEDDED / f"{p.name}.json").is_file():
        p = EMBEDDED / f"{p.name}.json"
    if not p.is_file():
        known = ", ".join(sorted(f.stem for f in EMBEDDED.glob("*.json")))
        raise FileNotFoundError(f"diffusers config {path} does not exist (a config.json path, or one of: {known})")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DiffusersConfigError(f"{p} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise DiffusersConfigError(f"{p} holds a {type(cfg).__name__}, not a config object")
    return cfg


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Config fields without diffusers' bookkeeping (``_class_name``, ``_diffusers_version``, ...)."""
    return {k: v for k, v in dict(cfg).items() if not str(k).startswith("_")}


def _check_fields(cfg: Mapping[str, Any], fixed: Mapping[str, Any], read: set[str], what: str) -> None:
    for key, want in fixed.items():
        got = cfg.get(key, want)
        same = math.isclose(got, want, rel_tol=1e-6) if isinstance(want, float) and got is not None else got == want
        if not same:
            raise DiffusersConfigError(
                f"{what} config field {key}={got!r} is not supported (this project's architecture implements "
                f"{key}={want!r})"
            )
    unknown = sorted(k for k in cfg if k not in fixed and k not in read and cfg[k] not in (None, False))
    if unknown:
        raise DiffusersConfigError(
            f"{what} config field(s) {', '.join(f'{k}={cfg[k]!r}' for k in unknown)} are unknown to this converter "
            "(switched on, they may change the network); supported: the SD 1.x / 2.x / SDXL fields"
        )


def _per_level(value: Any, levels: int, key: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise DiffusersConfigError(f"{key} has {len(value)} entries for {levels} levels")
        return list(value)
    return [value] * levels


def _same(values: list, key: str) -> Any:
    if len(set(map(str, values))) != 1:
        raise DiffusersConfigError(f"{key}={values} differs between levels; this UNet uses one value for all")
    return values[0]


def unet_config_from_diffusers(cfg: Mapping[str, Any], **engine: Any) -> UNetConfig:
    """Our :class:`UNetConfig` of a ``UNet2DConditionModel`` config; ``engine`` overrides the engine settings
    (:data:`UNET_ENGINE_FIELDS`; defaults as the project's sd14 / sdxl configs, by the added conditioning)."""
    c = _plain(cfg)
    _check_fields(c, UNET_FIXED, UNET_READ, "UNet2DConditionModel")
    for key in ("only_cross_attention", "mid_block_only_cross_attention"):
        value = c.get(key)
        if any(value) if isinstance(value, (list, tuple)) else value:
            raise DiffusersConfigError(f"UNet2DConditionModel config field {key}={value!r} is not supported")
    if c.get("addition_embed_type") not in (None, "text_time"):
        raise DiffusersConfigError(
            f"addition_embed_type={c['addition_embed_type']!r} is not supported (None, or SDXL's 'text_time')"
        )
    boc = [int(b) for b in c.get("block_out_channels", (320, 640, 1280, 1280))]
    levels, mc = len(boc), boc[0]
    if any(b % mc for b in boc):
        raise DiffusersConfigError(f"block_out_channels={boc}: every level must be a multiple of the first")
    down = list(c.get("down_block_types", ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)))
    up = list(c.get("up_block_types", ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
    if len(down) != levels or len(up) != levels:
        raise DiffusersConfigError(f"down/up_block_types need {levels} entries (one per block_out_channels level)")
    attn = []
    for i, t in enumerate(down):
        if t not in ("CrossAttnDownBlock2D", "DownBlock2D"):
            raise DiffusersConfigError(
                f"down_block_types[{i}]={t!r} is not supported (CrossAttnDownBlock2D, DownBlock2D)"
            )
        attn.append(t == "CrossAttnDownBlock2D")
    mirror = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    if up != mirror:
        raise DiffusersConfigError(f"up_block_types={up} must mirror down_block_types ({mirror})")
    nrb = int(_same(_per_level(c.get("layers_per_block", 2), levels, "layers_per_block"), "layers_per_block"))
    depths = _per_level(c.get("transformer_layers_per_block", 1), levels, "transformer_layers_per_block")
    if any(not isinstance(d, int) for d in depths):
        raise DiffusersConfigError("transformer_layers_per_block with a depth per layer (nested) is not supported")
    reverse = c.get("reverse_transformer_layers_per_block")
    if reverse is not None and [list(r) for r in reverse] != [[d] * (nrb + 1) for d in reversed(depths)]:
        raise DiffusersConfigError("reverse_transformer_layers_per_block (an asymmetric UNet) is not supported")
    heads = [int(h) for h in _per_level(c.get("attention_head_dim", 8), levels, "attention_head_dim")]
    used = [(boc[i], heads[i]) for i in range(levels) if attn[i]] + [(boc[-1], heads[-1])]  # + the middle block
    for ch, h in used:
        if ch % h:
            raise DiffusersConfigError(f"{ch} channels do not split into attention_head_dim={h} heads")
    if len({h for _, h in used}) == 1:
        head_kw: dict[str, Any] = dict(num_heads=used[0][1], num_head_channels=None)
    elif len({ch // h for ch, h in used}) == 1:
        head_kw = dict(num_heads=None, num_head_channels=used[0][0] // used[0][1])
    else:
        raise DiffusersConfigError(
            f"attention_head_dim={heads}: neither the head count nor the head width is the same at every level"
        )
    ctx = _per_level(c.get("cross_attention_dim", 1280), levels, "cross_attention_dim")
    adm = None
    if c.get("addition_embed_type") == "text_time":
        adm = c.get("projection_class_embeddings_input_dim")
        if not isinstance(adm, int) or not c.get("addition_time_embed_dim"):
            raise DiffusersConfigError(
                "addition_embed_type='text_time' needs projection_class_embeddings_input_dim and "
                "addition_time_embed_dim"
            )
    if c.get("time_embedding_dim") not in (None, 4 * mc):
        raise DiffusersConfigError(f"time_embedding_dim={c['time_embedding_dim']} (this UNet uses 4 x {mc})")
    groups = c.get("norm_num_groups", 32)
    if groups is None:
        raise DiffusersConfigError("norm_num_groups=None (no GroupNorm) is not supported")
    defaults = SDXL_ENGINE if adm else SD_ENGINE
    bad = sorted(set(engine) - set(UNET_ENGINE_FIELDS))
    if bad:
        raise DiffusersConfigError(f"unknown engine setting(s) {bad}; known: {', '.join(UNET_ENGINE_FIELDS)}")
    return unet_config(
        dict(
            in_channels=int(c.get("in_channels", 4)), out_channels=int(c.get("out_channels", 4)), model_channels=mc,
            channel_mult=[b // mc for b in boc], num_res_blocks=nrb,
            attention_resolutions=[2**i for i in reversed(range(levels)) if attn[i]],  # ldm's order: 4, 2, 1
            transformer_depth=[int(d) for d in depths],
            transformer_depth_middle=None, context_dim=int(_same(ctx, "cross_attention_dim")), adm_in_channels=adm,
            num_groups=int(groups), **head_kw, **{**defaults, **engine},
        )
    )  # fmt: skip


def vae_config_from_diffusers(cfg: Mapping[str, Any], **engine: Any) -> VAEConfig:
    """Our :class:`VAEConfig` of an ``AutoencoderKL`` config; ``engine`` overrides the engine settings
    (:data:`VAE_ENGINE_FIELDS`; default: counted as the project's sd14 VAE)."""
    c = _plain(cfg)
    _check_fields(c, VAE_FIXED, VAE_READ, "AutoencoderKL")
    boc = [int(b) for b in c.get("block_out_channels", (64,))]
    ch = boc[0]
    if any(b % ch for b in boc):
        raise DiffusersConfigError(f"block_out_channels={boc}: every level must be a multiple of the first")
    for key, want in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
        types = list(c.get(key, (want,)))
        if types != [want] * len(boc):
            raise DiffusersConfigError(f"{key}={types} is not supported ({len(boc)} x {want})")
    bad = sorted(set(engine) - set(VAE_ENGINE_FIELDS))
    if bad:
        raise DiffusersConfigError(f"unknown engine setting(s) {bad}; known: {', '.join(VAE_ENGINE_FIELDS)}")
    z = int(c.get("latent_channels", 4))
    return vae_config(
        dict(ch=ch, ch_mult=[b // ch for b in boc], num_res_blocks=int(c.get("layers_per_block", 1)),
             in_channels=int(c.get("in_channels", 3)), out_ch=int(c.get("out_channels", 3)), z_channels=z,
             embed_dim=z, double_z=True, num_groups=int(c.get("norm_num_groups", 32)), **engine)
    )  # fmt: skip


def unet_signature(cfg: UNetConfig) -> dict[str, Any]:
    """What determines a UNet's weights and output (the engine settings left out), however it is written:
    per level its channels and its transformer (depth, heads, head width) or none; the same for the middle."""
    levels = []
    for level, mult in enumerate(cfg.channel_mult):
        ch = cfg.model_channels * mult
        has = 2**level in cfg.attention_resolutions and cfg.transformer_depth[level] > 0
        levels.append((ch, (cfg.transformer_depth[level], *cfg.heads(ch)) if has else None))
    top = cfg.model_channels * cfg.channel_mult[-1]
    return {
        "in/out channels": (cfg.in_channels, cfg.out_channels),
        "levels (channels, (transformer depth, heads, head width))": levels,
        "middle transformer (depth, heads, head width)": (cfg.middle_depth, *cfg.heads(top)),
        "res blocks per level": cfg.num_res_blocks,
        "text context width": cfg.context_dim,
        "added conditioning width": cfg.adm_in_channels,
        "GroupNorm groups": cfg.num_groups,
    }


def vae_signature(cfg: VAEConfig) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in VAE_ENGINE_FIELDS}


def check_same_architecture(
    ours: UNetConfig | VAEConfig, theirs: UNetConfig | VAEConfig, where: str, source: str
) -> None:
    """Raise :class:`DiffusersConfigError` listing what differs between ``where`` (our config) and ``source``."""
    sig = unet_signature if isinstance(ours, UNetConfig) else vae_signature
    a, b = sig(ours), sig(theirs)
    diff = [f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b[k]]
    if diff:
        raise DiffusersConfigError(
            f"{where} and {source} describe different networks ({where} vs {source}): " + "; ".join(diff)
        )


def with_engine(cfg: UNetConfig | VAEConfig, settings: Mapping[str, Any]) -> UNetConfig | VAEConfig:
    """``cfg`` with the engine settings of a model config's ``unet:`` / ``vae:`` section (architecture kept)."""
    names = UNET_ENGINE_FIELDS if isinstance(cfg, UNetConfig) else VAE_ENGINE_FIELDS
    picked = {k: settings[k] for k in names if k in settings}
    if isinstance(picked.get("blocks"), Mapping):
        from .config import BlockSizes

        picked["blocks"] = BlockSizes(**picked["blocks"])
    return replace(cfg, **picked)
