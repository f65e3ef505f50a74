"""Architecture settings of the latent-diffusion UNet and the KL autoencoder, built from plain dicts.

The model configs (``configs/model/{sd14,sdxl_base,sdxl_refiner,sdxl_turbo}.yaml``) hold these settings
under ``unet:`` and ``vae:``; :func:`unet_config` / :func:`vae_config` validate them with errors that name
the bad key. Tests build tiny configurations of the same classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sige.nn.attention import check_impl


@dataclass(frozen=True)
class BlockSizes:
    """Gather block sizes (input blocks, halo included) of the paper's configuration."""

    main: int = 6  # 3x3 convs of ResBlocks and upsamplers
    shortcut: int = 4  # 1x1 nin/skip convs
    down: int = 5  # 3x3 stride-2 convs (the original asked for 6 and got 5)
    up: int = 6
    attention: int = 4  # 1x1 tiles of transformers and the VAE attention


@dataclass(frozen=True)
class UNetConfig:
    """The UNet of SD 1.x (``num_heads``, legacy head width ch // heads) and of SDXL (``num_head_channels``)."""

    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsampling factors with a transformer
    transformer_depth: tuple[int, ...] = (1, 1, 1, 1)  # per level
    transformer_depth_middle: int | None = None  # default: the last level's depth
    num_heads: int | None = 8
    num_head_channels: int | None = None
    context_dim: int = 768
    adm_in_channels: int | None = None  # SDXL's added (pooled text + size/crop/aesthetic) conditioning
    num_groups: int = 32
    sparse: bool = True  # False: every block dense (with frozen statistics in sparse mode)
    sparse_middle_transformer: bool = False  # SD 1.4: dense; SDXL: sparse
    self_attn_impl: str = "bmm"  # how attention products are counted (see sige.nn.attention)
    cross_attn_impl: str = "bmm"
    cross_attn_sparse_impl: str = "bmm"
    blocks: BlockSizes = field(default_factory=BlockSizes)

    def __post_init__(self) -> None:
        levels = len(self.channel_mult)
        if levels < 1:
            raise ValueError("unet.channel_mult needs at least one level")
        if len(self.transformer_depth) != levels:
            raise ValueError(
                f"unet.transformer_depth has {len(self.transformer_depth)} entries but channel_mult has {levels} "
                "levels; give one depth per level"
            )
        if (self.num_heads is None) == (self.num_head_channels is None):
            raise ValueError("give exactly one of unet.num_heads (SD 1.x) and unet.num_head_channels (SDXL)")
        for name in ("self_attn_impl", "cross_attn_impl", "cross_attn_sparse_impl"):
            check_impl(getattr(self, name))

    @property
    def middle_depth(self) -> int:
        return self.transformer_depth[-1] if self.transformer_depth_middle is None else self.transformer_depth_middle

    def heads(self, channels: int) -> tuple[int, int]:
        """(heads, head width) of a transformer with ``channels`` channels."""
        if self.num_head_channels is not None:
            if channels % self.num_head_channels:
                raise ValueError(f"{channels} channels do not split into heads of {self.num_head_channels}")
            return channels // self.num_head_channels, self.num_head_channels
        return self.num_heads, channels // self.num_heads


@dataclass(frozen=True)
class VAEConfig:
    """The KL autoencoder (``AutoencoderKL`` of SD / SDXL): encoder, decoder, quant convs."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 4
    embed_dim: int = 4
    double_z: bool = True
    num_groups: int = 32
    sparse: bool = True
    attn_impl: str = "bmm"  # mid attention, full mode
    attn_sparse_impl: str = "bmm"
    blocks: BlockSizes = field(default_factory=BlockSizes)

    def __post_init__(self) -> None:
        check_impl(self.attn_impl)
        check_impl(self.attn_sparse_impl)


def _build(cls: type, cfg: Mapping[str, Any] | None, what: str, **overrides: Any):
    cfg = dict(cfg or {})
    cfg.update(overrides)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown {what} setting(s) {unknown}; known: {sorted(known)}")
    if isinstance(cfg.get("blocks"), Mapping):
        bad = sorted(set(cfg["blocks"]) - {f.name for f in fields(BlockSizes)})
        if bad:
            raise ValueError(f"unknown {what}.blocks setting(s) {bad}")
        cfg["blocks"] = BlockSizes(**cfg["blocks"])
    for k, v in list(cfg.items()):
        if isinstance(v, list):
            cfg[k] = tuple(v)
    return cls(**cfg)


def unet_config(cfg: Mapping[str, Any] | None = None, **overrides: Any) -> UNetConfig:
    return _build(UNetConfig, cfg, "unet", **overrides)


def vae_config(cfg: Mapping[str, Any] | None = None, **overrides: Any) -> VAEConfig:
    return _build(VAEConfig, cfg, "vae", **overrides)
