"""Reusable blocks written once, running in full, sparse and profile mode.

Parameter names follow the DDPM (ermongroup/ddim) UNet, so its checkpoints load by key:
``norm1, conv1, temb_proj, norm2, conv2, nin_shortcut`` for ResBlock and ``conv`` for the samplers.

Normalisation statistics are frozen per ``cache_id`` in the full pass and folded (with the time
embedding) into per-sample scale/shift that Gather / ScatterGather apply on the tiles. A block built
with ``sparse=False`` runs densely in sparse mode too, with the same frozen statistics.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn.base import SIGEConv2d, SIGEModule
from sige.nn.gather import Gather
from sige.nn.norm import group_norm_with_stats
from sige.nn.scatter import Scatter, ScatterWithBlockResidual
from sige.nn.scatter_gather import ScatterGather


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x). Under a JIT trace it is written out, so MAC counts match the original models'
    (torchprofile counts the multiply); otherwise the fused ``F.silu`` (half the memory traffic)."""
    return x * torch.sigmoid(x) if torch.jit.is_tracing() else F.silu(x)


class FrozenStats(SIGEModule):
    """Per-``cache_id`` storage of frozen (scale, shift) pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[Any, tuple[torch.Tensor, ...]] = {}

    def clear_cache(self) -> None:
        self.stats.clear()

    def cache_nbytes(self) -> int:
        def nbytes(x: object) -> int:
            if isinstance(x, torch.Tensor):
                return x.numel() * x.element_size()
            return sum(nbytes(v) for v in x) if isinstance(x, tuple | list) else 0

        return sum(nbytes(v) for v in self.stats.values())

    def frozen(self) -> tuple[torch.Tensor, ...]:
        try:
            return self.stats[self.cache_id]
        except KeyError:
            raise RuntimeError(
                f"{self._label()}: no frozen normalisation statistics for cache_id={self.cache_id!r}; "
                "run a full pass with this cache id first"
            ) from None


class ResBlock(FrozenStats):
    """GroupNorm -> swish -> conv3x3 (-> + temb) -> GroupNorm -> swish -> (dropout) -> conv3x3, plus shortcut."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int = 0,
        num_groups: int = 32,
        eps: float = 1e-6,
        sparse: bool = True,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=eps)
        self.conv1 = SIGEConv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels) if temb_channels else None
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = SIGEConv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = SIGEConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.sparse = sparse
        if sparse:
            self.main_gather = Gather(self.conv1, main_block_size, activation_name="swish")
            self.scatter_gather = ScatterGather(self.main_gather, activation_name="swish")
            if self.nin_shortcut is not None:
                self.shortcut_gather = Gather(self.nin_shortcut, shortcut_block_size)
                self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
            else:
                self.scatter = Scatter(self.main_gather)

    def _temb(self, temb: torch.Tensor | None) -> torch.Tensor | None:
        if self.temb_proj is None or temb is None:
            return None
        return self.temb_proj(swish(temb))[:, :, None, None]

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "full":
            return self._full(x, temb)
        (s1, b1), (s2, b2) = self.frozen()
        if not self.sparse:  # dense in sparse mode, with the original's statistics
            h = self._dense_conv(self.conv1, swish(x * s1 + b1))
            h = self._dense_conv(self.conv2, swish(h * s2 + b2))
            sc = x if self.nin_shortcut is None else self._dense_conv(self.nin_shortcut, x)
            return h + sc
        h = self.conv1(self.main_gather(x, s1, b1))
        h = self.conv2(self.scatter_gather(h, s2, b2))
        if self.nin_shortcut is None:
            return self.scatter(h, x)
        return self.scatter(h, self.nin_shortcut(self.shortcut_gather(x)))

    @staticmethod
    def _dense_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)

    def _full(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.main_gather(x) if self.sparse else x
        h, *s1 = group_norm_with_stats(h, self.norm1)
        h = self.conv1(swish(h))
        if self.sparse:
            h = self.scatter_gather(h)  # caches conv1's output before the time embedding is added
        e = self._temb(temb)
        h, *s2 = group_norm_with_stats(h if e is None else h + e, self.norm2)
        if e is not None:  # fold the embedding into the frozen shift: norm(h + e) = h*s + (b + e*s)
            s2 = [s2[0], s2[1] + e * s2[0]]
        self.stats[self.cache_id] = (tuple(s1), tuple(s2))
        h = self.conv2(self.dropout(swish(h)))
        if self.nin_shortcut is None:
            return self.scatter(h, x) if self.sparse else h + x
        if not self.sparse:
            return h + self.nin_shortcut(x)
        return self.scatter(h, self.nin_shortcut(self.shortcut_gather(x)))


class Downsample(SIGEModule):
    """3x3 stride-2 conv after an asymmetric (0, 1, 0, 1) zero pad (the DDPM/VAE downsampler)."""

    def __init__(self, channels: int, sparse: bool = True, block_size: int = 5):
        super().__init__()
        self.conv = SIGEConv2d(channels, channels, 3, stride=2, padding=0)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.conv, block_size, offset=0)
            self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sparse:
            return F.conv2d(F.pad(x, (0, 1, 0, 1)), self.conv.weight, self.conv.bias, stride=2)
        if self.mode == "full":
            return self.scatter(self.conv(F.pad(self.gather(x), (0, 1, 0, 1))))
        return self.scatter(self.conv(self.gather(x)))


class Upsample(SIGEModule):
    """Nearest x2 upsampling (dense) then a 3x3 conv (sparse)."""

    def __init__(self, channels: int, sparse: bool = True, block_size: int = 6):
        super().__init__()
        self.conv = SIGEConv2d(channels, channels, 3, padding=1)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.conv, block_size)
            self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if not self.sparse:
            return F.conv2d(x, self.conv.weight, self.conv.bias, padding=1)
        return self.scatter(self.conv(self.gather(x)))
