"""The latent-diffusion UNet (SD 1.4, SDXL base / turbo / refiner), written once, dense or sparse.

Module names are the CompVis / Stability ones (``time_embed.0``, ``label_emb.0.0``, ``input_blocks.N.M``,
``middle_block.M``, ``output_blocks.N.M``, ``out.0``). ResBlocks and downsamplers are the engine's
(:mod:`sige.nn.blocks`); :mod:`sdxl.checkpoint` maps their ldm keys (``in_layers.0/2``, ``emb_layers.1``,
``out_layers.0/3``, ``skip_connection``, ``op``) onto them, so the original checkpoints load unchanged.

Sparse placement follows the SIGE reference: every input/output ResBlock, down- and up-sampler and
transformer is sparse at every latent resolution; the middle ResBlocks are plain dense blocks that
recompute their statistics; the middle transformer is dense with frozen statistics (SD 1.4) or sparse
(SDXL, ``sparse_middle_transformer``). Statistics are frozen per sample (the CFG pair) and per cache_id.

Counting conventions (MACs must equal the published figures): SiLU counts 0 (``nn.SiLU`` in the original);
the fused Gather/ScatterGather count the scale multiply and the swish multiply of the tiles, as the original
engine's profile mode did.
"""

from __future__ import annotations

import torch
from torch import nn

from sige.nn import SIGEModel
from sige.nn.attention import SpatialTransformer
from sige.nn.blocks import Downsample, ResBlock, Upsample, timestep_embedding

from .config import UNetConfig


def res_block(cin: int, cout: int, emb: int, cfg: UNetConfig, sparse: bool, frozen: bool = True) -> ResBlock:
    """ldm's ResBlock as the engine's: GroupNorm eps 1e-5, SiLU counted 0 (``nn.SiLU``); its ``in_layers`` /
    ``emb_layers`` / ``out_layers`` / ``skip_connection`` keys are mapped by :mod:`sdxl.checkpoint`."""
    return ResBlock(cin, cout, emb, cfg.num_groups, 1e-5, sparse, cfg.blocks.main, cfg.blocks.shortcut,
                    frozen_stats=frozen, swish="silu")  # fmt: skip


class TimestepSequential(nn.ModuleList):
    """One UNet stage (``input_blocks.N``): passes the embedding to ResBlocks and the context to transformers."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context)
            else:
                h = layer(h)
        return h


class UNet(SIGEModel):
    """``forward(x [B, 4, h, w], timesteps [B], context [B, T, D], y [B, adm] | None) -> eps [B, 4, h, w]``."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc, bs, sp = cfg.model_channels, cfg.blocks, cfg.sparse
        emb_dim = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = None
        if cfg.adm_in_channels:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(cfg.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            )

        def res(cin: int, cout: int) -> ResBlock:
            return res_block(cin, cout, emb_dim, cfg, sp)

        def transformer(ch: int, depth: int, sparse: bool) -> SpatialTransformer:
            heads, dim_head = cfg.heads(ch)
            return SpatialTransformer(
                ch, heads, dim_head, depth, cfg.context_dim, sparse=sparse, block_size=bs.attention,
                num_groups=cfg.num_groups, self_impl=cfg.self_attn_impl, cross_impl=cfg.cross_attn_impl,
                cross_sparse_impl=cfg.cross_attn_sparse_impl,
            )  # fmt: skip

        self.input_blocks = nn.ModuleList([TimestepSequential([nn.Conv2d(cfg.in_channels, mc, 3, padding=1)])])
        chans, ch, ds = [mc], mc, 1
        levels = len(cfg.channel_mult)
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in cfg.attention_resolutions and cfg.transformer_depth[level] > 0:
                    layers.append(transformer(ch, cfg.transformer_depth[level], sp))
                self.input_blocks.append(TimestepSequential(layers))
                chans.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepSequential([Downsample(ch, sp, bs.down, padding="symmetric")]))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(
            [
                res_block(ch, ch, emb_dim, cfg, sparse=False, frozen=False),
                transformer(ch, cfg.middle_depth, sp and cfg.sparse_middle_transformer),
                res_block(ch, ch, emb_dim, cfg, sparse=False, frozen=False),
            ]
        )
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + chans.pop(), mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_resolutions and cfg.transformer_depth[level] > 0:
                    layers.append(transformer(ch, cfg.transformer_depth[level], sp))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch, sparse=sp, block_size=bs.up))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(layers))
        self.out = nn.Sequential(
            nn.GroupNorm(cfg.num_groups, ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1)
        )

    @property
    def latent_downsampling(self) -> int:
        return 2 ** (len(self.cfg.channel_mult) - 1)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if x.dim() != 4 or int(x.shape[1]) != self.cfg.in_channels:
            raise ValueError(f"UNet expects [B, {self.cfg.in_channels}, h, w] latents, got {tuple(x.shape)}")
        f = self.latent_downsampling
        if int(x.shape[2]) % f or int(x.shape[3]) % f:
            raise ValueError(f"latent size {tuple(x.shape[2:])} must be a multiple of {f} for this UNet")
        if context is None or context.dim() != 3 or int(context.shape[-1]) != self.cfg.context_dim:
            got = None if context is None else tuple(context.shape)
            raise ValueError(f"UNet expects a text context [B, T, {self.cfg.context_dim}], got {got}")
        if (self.label_emb is None) != (y is None):
            need = f"a vector y [B, {self.cfg.adm_in_channels}]" if self.label_emb is not None else "no vector y"
            raise ValueError(f"this UNet takes {need}")
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(int(x.shape[0]))
        t_emb = timestep_embedding(timesteps, self.cfg.model_channels, True, 0.0)  # float32, as ldm computes it
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        if self.label_emb is not None:
            emb = emb + self.label_emb(y)
        hs = []
        h = x
        for blk in self.input_blocks:
            h = blk(h, emb, context)
            hs.append(h)
        h = self.middle_block(h, emb, context)
        for blk in self.output_blocks:
            h = blk(torch.cat([h, hs.pop()], dim=1), emb, context)
        return self.out(h)
