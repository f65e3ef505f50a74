"""The latent-diffusion UNet (SD 1.4, SDXL base / turbo / refiner), written once, dense or sparse.

Parameter names are the CompVis / Stability ones (``time_embed.0``, ``label_emb.0.0``, ``input_blocks.N.M``,
``middle_block.M``, ``output_blocks.N.M``, ``out.0``; ResBlocks ``in_layers.0/2``, ``emb_layers.1``,
``out_layers.0/3``, ``skip_connection``), so the original checkpoints load by key (see sdxl.checkpoint).

Sparse placement follows the SIGE reference: every input/output ResBlock, down- and up-sampler and
transformer is sparse at every latent resolution; the middle ResBlocks are plain dense blocks that
recompute their statistics; the middle transformer is dense with frozen statistics (SD 1.4) or sparse
(SDXL, ``sparse_middle_transformer``). Statistics are frozen per sample (the CFG pair) and per cache_id.

Counting conventions (MACs must equal the published figures): SiLU counts 0 (``nn.SiLU`` in the original);
the fused Gather/ScatterGather count the scale multiply and the swish multiply of the tiles, as the original
engine's profile mode did.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn import Gather, Scatter, ScatterGather, ScatterWithBlockResidual, SIGEConv2d, SIGEModel, SIGEModule
from sige.nn.attention import SpatialTransformer, group_norm_frozen
from sige.nn.blocks import FrozenStats, Upsample

from .config import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos | sin]`` of ``t`` (any float values), ``[B] -> [B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(FrozenStats):
    """GroupNorm -> SiLU -> conv3x3 -> (+ emb) -> GroupNorm -> SiLU -> conv3x3, plus skip (1x1 when channels change).

    ``sparse``: Gather/ScatterGather/Scatter around the convs, statistics frozen in the full pass.
    ``frozen=False`` (with ``sparse=False``): a plain dense block that recomputes its statistics on every
    call, as the reference's middle ResBlocks do.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        num_groups: int = 32,
        sparse: bool = True,
        frozen: bool = True,
        dropout: float = 0.0,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
    ):
        super().__init__()
        if sparse and not frozen:
            raise ValueError("a sparse ResBlock needs frozen statistics")
        out = out_channels or channels
        self.channels, self.out_channels = channels, out
        conv = SIGEConv2d if sparse else nn.Conv2d
        self.in_layers = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(), conv(channels, out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out))
        self.out_layers = nn.Sequential(
            nn.GroupNorm(num_groups, out), nn.SiLU(), nn.Dropout(dropout), conv(out, out, 3, padding=1)
        )
        self.skip_connection = nn.Identity() if out == channels else conv(channels, out, 1)
        self.sparse, self.frozen_stats = sparse, frozen
        if sparse:
            self.main_gather = Gather(self.in_layers[2], main_block_size, activation_name="swish")
            self.scatter_gather = ScatterGather(self.main_gather, activation_name="swish")
            if out != channels:
                self.shortcut_gather = Gather(self.skip_connection, shortcut_block_size)
                self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
            else:
                self.scatter = Scatter(self.main_gather)

    def cache_nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.stats.values() for st in pair for t in st)

    def _skip(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_channels == self.channels:
            return x
        return self.skip_connection(self.shortcut_gather(x) if self.sparse else x)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.mode == "full" or not self.frozen_stats:
            return self._full(x, emb)
        (s1, b1), (s2, b2) = self.frozen()
        if not self.sparse:  # dense with the original's statistics
            h = self.in_layers[2](F.silu(x * s1 + b1))
            h = self.out_layers[3](F.silu(h * s2 + b2))
            return h + self._skip(x)
        h = self.in_layers[2](self.main_gather(x, s1, b1))
        h = self.out_layers[3](self.scatter_gather(h, s2, b2))
        return self.scatter(h, self._skip(x))

    def _full(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.main_gather(x) if self.sparse else x
        h, st1 = group_norm_frozen(h, self.in_layers[0])
        h = self.in_layers[2](F.silu(h))
        if self.sparse:
            h = self.scatter_gather(h)  # caches conv1's output (before the embedding is added)
        e = self.emb_layers(emb)[:, :, None, None]
        h, st2 = group_norm_frozen(h + e, self.out_layers[0])
        if self.frozen_stats:
            if st1 is None or st2 is None:
                self.stats.pop(self.cache_id, None)
            else:  # norm(h + e) = h*s + (b + e*s): fold the embedding into the frozen shift
                self.stats[self.cache_id] = (st1, (st2[0], st2[1] + e * st2[0]))
        h = self.out_layers[3](self.out_layers[2](F.silu(h)))
        skip = self._skip(x)
        return self.scatter(h, skip) if self.sparse else h + skip


class Downsample(SIGEModule):
    """3x3 stride-2 conv with symmetric padding 1 (the UNet downsampler, parameter ``op``)."""

    def __init__(self, channels: int, sparse: bool = True, block_size: int = 5):
        super().__init__()
        self.op = (SIGEConv2d if sparse else nn.Conv2d)(channels, channels, 3, stride=2, padding=1)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.op, block_size)
            self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sparse:
            return self.op(x)
        return self.scatter(self.op(self.gather(x)))


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
            return ResBlock(cin, emb_dim, cout, cfg.num_groups, sp, True, 0.0, bs.main, bs.shortcut)

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
                self.input_blocks.append(TimestepSequential([Downsample(ch, sp, bs.down)]))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepSequential(
            [
                ResBlock(ch, emb_dim, ch, cfg.num_groups, sparse=False, frozen=False),
                transformer(ch, cfg.middle_depth, sp and cfg.sparse_middle_transformer),
                ResBlock(ch, emb_dim, ch, cfg.num_groups, sparse=False, frozen=False),
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
        emb = self.time_embed(timestep_embedding(timesteps, self.cfg.model_channels))
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
