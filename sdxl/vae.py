"""The KL autoencoder of SD / SDXL: Encoder and Decoder (each a SIGEModel), written once, dense or sparse.

Parameter names follow the CompVis ``AutoencoderKL`` (``conv_in``, ``down.I.block.J``, ``down.I.downsample``,
``mid.block_1``, ``mid.attn_1``, ``mid.block_2``, ``up.I.block.J``, ``up.I.upsample``, ``norm_out``,
``conv_out``; ``quant_conv``, ``post_quant_conv``), so ``first_stage_model.*`` keys load directly.

Sparse placement as in the SIGE reference: every ResBlock and resampler at every resolution (up to the full
image resolution) and the mid attention (queries of the active tiles, keys/values scattered into cached
maps); ``conv_in``, ``norm_out`` (fresh statistics), ``conv_out`` and the quant convs stay dense.
"""

from __future__ import annotations

import torch
from torch import nn

from sige.nn import SIGEModel
from sige.nn.attention import AttnBlock
from sige.nn.blocks import Downsample, ResBlock, Upsample, swish

from .config import VAEConfig


def _res(cfg: VAEConfig, cin: int, cout: int) -> ResBlock:
    return ResBlock(
        cin, cout, temb_channels=0, num_groups=cfg.num_groups, eps=1e-6, sparse=cfg.sparse,
        main_block_size=cfg.blocks.main, shortcut_block_size=cfg.blocks.shortcut,
    )  # fmt: skip


def _mid(cfg: VAEConfig, ch: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = _res(cfg, ch, ch)
    mid.attn_1 = AttnBlock(
        ch, cfg.num_groups, 1e-6, sparse=cfg.sparse, block_size=cfg.blocks.attention, impl=cfg.attn_impl,
        sparse_impl=cfg.attn_sparse_impl,
    )  # fmt: skip
    mid.block_2 = _res(cfg, ch, ch)
    return mid


class Encoder(SIGEModel):
    """``forward(image [B, 3, H, W] in [-1, 1]) -> moments [B, 2*z, H/f, W/f]`` (before ``quant_conv``)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for i, mult in enumerate(cfg.ch_mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            block_in, block_out = cfg.ch * in_mult[i], cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                level.block.append(_res(cfg, block_in, block_out))
                block_in = block_out
            if i != len(cfg.ch_mult) - 1:
                level.downsample = Downsample(block_in, sparse=cfg.sparse, block_size=cfg.blocks.down)
            self.down.append(level)
        self.mid = _mid(cfg, block_in)
        self.norm_out = nn.GroupNorm(cfg.num_groups, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels if cfg.double_z else cfg.z_channels, 3, padding=1)

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.cfg.ch_mult) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.downsampling
        if x.dim() != 4 or int(x.shape[1]) != self.cfg.in_channels or int(x.shape[2]) % f or int(x.shape[3]) % f:
            raise ValueError(
                f"Encoder expects [B, {self.cfg.in_channels}, H, W] images with H, W multiples of {f}, "
                f"got {tuple(x.shape)}"
            )
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            for blk in level.block:
                h = blk(h)
            if i != len(self.down) - 1:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(SIGEModel):
    """``forward(z [B, z, h, w]) -> image [B, 3, h*f, w*f]`` (after ``post_quant_conv``)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _mid(cfg, block_in)
        ups: list[nn.Module] = []
        for i in reversed(range(len(cfg.ch_mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            block_out = cfg.ch * cfg.ch_mult[i]
            for _ in range(cfg.num_res_blocks + 1):
                level.block.append(_res(cfg, block_in, block_out))
                block_in = block_out
            if i != 0:
                level.upsample = Upsample(block_in, sparse=cfg.sparse, block_size=cfg.blocks.up)
            ups.insert(0, level)
        self.up = nn.ModuleList(ups)
        self.norm_out = nn.GroupNorm(cfg.num_groups, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or int(z.shape[1]) != self.cfg.z_channels:
            raise ValueError(f"Decoder expects [B, {self.cfg.z_channels}, h, w] latents, got {tuple(z.shape)}")
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(len(self.up))):
            for blk in self.up[i].block:
                h = blk(h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """Encoder + decoder + quant convs; ``encode`` returns the posterior mean and log-variance."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, logvar)`` of the posterior (the pipelines use the mean, so init and edit share no noise)."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))
