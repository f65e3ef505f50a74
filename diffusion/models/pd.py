"""The Progressive Distillation UNet (LSUN Church: ch 64, temb 768, 3 res blocks, multi-head attention with
head_dim 64 at 8/16/32, output = x prediction | eps prediction), written once for full, sparse and profile mode.

Its ResBlocks use scale-shift normalisation (``GN(h) * (1 + s) + b`` with ``s, b`` from the time
embedding) and do the resampling themselves (``resample="down"``: 2x2 average pooling, ``"up"``: nearest
x2, applied to the block input and to the normalised activation before ``conv1``). Sparse placement
follows the SIGE port: every ResBlock (resampling ones included) whose input resolution is >=
``sparse_resolution_threshold`` is sparse; attention, the middle and lower levels are dense with
frozen statistics. In a sparse resampling block the norm, swish and resampling run densely and the
main Gather (identity activation) cuts blocks from the resampled map.

Module names follow the original checkpoint (``church128-pd-unet.pth``): ``temb.dense.{0,1}``,
``conv_in``, ``down.{i}.block.{j}``, ``down.{i}.attn.{j}.{norm,qkv,proj_out}``, ``down.{i}.downsample``,
``mid.{block_1,attn_1,block_2}``, ``up.{i}.{block,attn,upsample}``, ``norm_out``, ``conv_out``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.models.common import AttnBlock, PyramidUNet, timestep_embedding
from sige.nn import Gather, Scatter, ScatterGather, ScatterWithBlockResidual, SIGEConv2d
from sige.nn.blocks import FrozenStats, swish
from sige.nn.norm import group_norm_with_stats


def _dense_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)


class PDResBlock(FrozenStats):
    """GN -> swish -> [resample] -> conv3x3 -> GN * (1 + s) + b -> swish -> conv3x3, plus [resampled] shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        resample: str | None = None,
        sparse: bool = False,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
        num_groups: int = 32,
        dropout: float = 0.0,
    ):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        self.in_channels, self.out_channels, self.resample, self.sparse = in_channels, out_channels, resample, sparse
        if resample == "down":
            self.pooling = nn.AvgPool2d(2)
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=1e-6)
        self.conv1 = SIGEConv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, 2 * out_channels)
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = SIGEConv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = SIGEConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        if sparse:
            act = "swish" if resample is None else "identity"  # resampling blocks apply norm + swish densely
            self.main_gather = Gather(self.conv1, main_block_size, activation_name=act)
            self.scatter_gather = ScatterGather(self.main_gather, activation_name="swish")
            if self.nin_shortcut is not None:
                self.shortcut_gather = Gather(self.nin_shortcut, shortcut_block_size)
                self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
            else:
                self.scatter = Scatter(self.main_gather)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return self.pooling(x)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.nin_shortcut is None:
            return x
        if self.sparse:
            return self.nin_shortcut(self.shortcut_gather(x))
        return _dense_conv(self.nin_shortcut, x)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "full":
            return self._full(x, temb)
        (s1, b1), (s2, b2) = self.frozen()
        sc = self._shortcut(self._resample(x))
        if not self.sparse:
            h = _dense_conv(self.conv1, self._resample(swish(x * s1 + b1)))
            h = _dense_conv(self.conv2, swish(h * s2 + b2))
            return h + sc
        if self.resample is None:
            h = self.main_gather(x, s1, b1)  # norm + swish fused into the gather
        else:
            h = self.main_gather(self._resample(swish(x * s1 + b1)))
        h = self.conv2(self.scatter_gather(self.conv1(h), s2, b2))
        return self.scatter(h, sc)

    def _full(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        if temb is None:
            raise ValueError(f"{self._label()}: the full pass needs the time embedding")
        sc = self._shortcut(self._resample(x))
        h, *st1 = group_norm_with_stats(x, self.norm1)
        h = self._resample(swish(h))
        if self.sparse:
            h = self.main_gather(h)
        h = self.conv1(h)
        if self.sparse:
            h = self.scatter_gather(h)
        h, s2, b2 = group_norm_with_stats(h, self.norm2)
        e = self.temb_proj(swish(temb))[:, :, None, None]
        es, eb = e[:, : self.out_channels], e[:, self.out_channels :]
        h = h * (1 + es) + eb
        self.stats[self.cache_id] = (tuple(st1), (s2 * (1 + es), b2 * (1 + es) + eb))
        h = self.conv2(self.dropout(swish(h)))
        return self.scatter(h, sc) if self.sparse else h + sc


def logsnr_input(logsnr: torch.Tensor) -> torch.Tensor:
    """The ``inv_cos`` conditioning of the PD model: ``atan(exp(-logsnr / 2)) / (pi / 2)`` in [0, 1]."""
    return torch.arctan(torch.exp(-0.5 * torch.clip(logsnr, -20.0, 20.0))) / (0.5 * math.pi)


class PDUNet(PyramidUNet):
    """``out = model(z, logsnr)`` with ``z: [B, in_ch, H, W]`` and ``logsnr: [B]``; ``out[:, :3]`` predicts x,
    ``out[:, 3:]`` predicts eps. ``resolution`` is the nominal size that decides the sparse levels."""

    def __init__(
        self,
        ch: int = 64,
        ch_mult: Sequence[int] = (1, 2, 4, 6, 8),
        num_res_blocks: int = 3,
        attn_resolutions: Sequence[int] = (8, 16, 32),
        head_dim: int = 64,
        temb_ch: int = 768,
        in_ch: int = 3,
        out_ch: int = 6,
        resolution: int = 128,
        dropout: float = 0.0,
        sparse_resolution_threshold: int | None = 64,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
        num_groups: int = 32,
    ):
        super().__init__()
        self.config = dict(
            ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
            head_dim=head_dim, temb_ch=temb_ch, in_ch=in_ch, out_ch=out_ch, resolution=resolution, dropout=dropout,
            sparse_resolution_threshold=sparse_resolution_threshold, main_block_size=main_block_size,
            shortcut_block_size=shortcut_block_size, num_groups=num_groups,
        )  # fmt: skip
        threshold = float("inf") if sparse_resolution_threshold is None else sparse_resolution_threshold

        def block(cin: int, cout: int, res: int, resample: str | None = None) -> PDResBlock:
            return PDResBlock(cin, cout, temb_ch, resample, res >= threshold, main_block_size, shortcut_block_size,
                              num_groups, dropout)  # fmt: skip

        self._build(
            ch, ch_mult, num_res_blocks, attn_resolutions, resolution, temb_ch, in_ch, out_ch, num_groups,
            block=block,
            attn=lambda c: AttnBlock(c, head_dim=head_dim, num_groups=num_groups),
            downsample=lambda c, res: block(c, c, res, "down"),
            upsample=lambda cin, cout, res: block(cin, cout, res, "up"),
        )  # fmt: skip

    def embed(self, logsnr: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(logsnr_input(logsnr) * 1000, self.ch)

    def _resample(self, module: nn.Module, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return module(h, temb)  # the samplers are ResBlocks
