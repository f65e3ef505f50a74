"""Block geometry of a tiled convolution.

A conv with kernel k, stride s and a requested input block size B processes input blocks of
``b = n*s + k`` pixels (``n = max(B - k, 0) // s``) that produce output tiles of ``n + 1`` pixels;
consecutive blocks start ``(n + 1) * s`` apart, so their output tiles abut without overlap.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from sige.mask import PairLike, _pair


@dataclass(frozen=True)
class BlockGeometry:
    """Geometry of the blocks a Gather cuts for one conv (all pairs are (height, width))."""

    block_size: tuple[int, int]  # input block, halo included
    block_stride: tuple[int, int]  # distance between consecutive blocks (input pixels)
    kernel_size: tuple[int, int]
    conv_stride: tuple[int, int]
    offset: tuple[int, int]  # block (0, 0) starts at input coordinate -offset

    @property
    def tile_size(self) -> tuple[int, int]:
        """Output tile produced by one block."""
        return (
            (self.block_size[0] - self.kernel_size[0]) // self.conv_stride[0] + 1,
            (self.block_size[1] - self.kernel_size[1]) // self.conv_stride[1] + 1,
        )

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, block_size: PairLike, offset: PairLike | None = None, warn: bool = True
    ) -> BlockGeometry:
        """Geometry for ``conv`` with the requested ``block_size`` (adjusted, with a warning, if needed)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"Gather needs the nn.Conv2d it feeds, got {type(conv).__name__}")
        if tuple(conv.dilation) != (1, 1):
            raise ValueError(f"sparse convs need dilation 1, got {tuple(conv.dilation)}")
        if isinstance(conv.padding, str):
            raise ValueError(f"string padding ({conv.padding!r}) is not supported; give explicit integer padding")
        req = _pair(block_size, "block_size")
        if min(req) <= 0:
            raise ValueError(f"block_size must be positive, got {req}")
        k, s = tuple(conv.kernel_size), tuple(conv.stride)
        n = tuple(max(req[i] - k[i], 0) // s[i] for i in range(2))
        b = tuple(n[i] * s[i] + k[i] for i in range(2))
        if b != req and warn:
            warnings.warn(f"Change the block size from {req} to {b} for a {k} kernel with stride {s}", stacklevel=3)
        off = tuple(conv.padding) if offset is None else _pair(offset, "offset")
        return cls(
            block_size=b,  # type: ignore[arg-type]
            block_stride=tuple((n[i] + 1) * s[i] for i in range(2)),  # type: ignore[arg-type]
            kernel_size=k,  # type: ignore[arg-type]
            conv_stride=s,  # type: ignore[arg-type]
            offset=off,  # type: ignore[arg-type]
        )
