"""Reusable blocks written once, running in full, sparse and profile mode: the residual block family
(:class:`ResBlock`), the resamplers (:class:`Downsample`, :class:`Upsample`) and the sinusoidal
:func:`timestep_embedding` of denoising UNets.

Parameter names follow the DDPM (ermongroup/ddim) UNet: ``norm1, conv1, temb_proj, norm2, conv2,
nin_shortcut`` for ResBlock and ``conv`` for the samplers; checkpoints of other layouts (ldm's
``in_layers / emb_layers / out_layers / skip_connection``, diffusers' ``time_emb_proj / conv_shortcut``) are
mapped by their loaders.

Normalisation statistics are frozen per ``cache_id`` in the full pass and folded (with the time
embedding) into per-sample scale/shift that Gather / ScatterGather apply on the tiles. A block built
with ``sparse=False`` runs densely in sparse mode too, with the same frozen statistics (or, with
``frozen_stats=False``, recomputes them on every call).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn.base import SIGEConv2d, SIGEModule
from sige.nn.gather import Gather
from sige.nn.norm import group_norm_with_stats
from sige.nn.scatter import Scatter, ScatterWithBlockResidual
from sige.nn.scatter_gather import ScatterGather

SWISH = ("mul", "silu")


def swish(x: torch.Tensor, counted: bool = True) -> torch.Tensor:
    """x * sigmoid(x). Under a JIT trace (MAC counting) it is written out as a multiply when ``counted`` (the
    DDPM / VAE ports wrote it so and torchprofile counts the multiply) and as ``F.silu`` otherwise (ldm's
    ``nn.SiLU``, counted 0); outside a trace always the fused ``F.silu`` (half the memory traffic)."""
    return x * torch.sigmoid(x) if counted and torch.jit.is_tracing() else F.silu(x)


def timestep_embedding(
    t: torch.Tensor,
    dim: int,
    flip_sin_to_cos: bool = False,
    downscale_freq_shift: float = 1.0,
    max_period: float = 10000.0,
) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of (float) timesteps ``t [B]``: frequencies
    ``exp(-log(max_period) * i / (dim/2 - downscale_freq_shift))``, ``[sin | cos]`` (``[cos | sin]`` with
    ``flip_sin_to_cos``). DDPM: shift 1, sin first; ldm and sgm UNets: shift 0, cos first."""
    if t.dim() != 1:
        raise ValueError(f"timesteps must be a 1-D tensor [B], got shape {tuple(t.shape)}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - downscale_freq_shift))
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)], 1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class FrozenStats(SIGEModule):
    """Per-``cache_id`` storage of frozen (scale, shift) pairs (nested tuples of tensors)."""

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


def _conv(sparse: bool, *args: Any, **kwargs: Any) -> nn.Conv2d:
    """A SIGEConv2d (no padding on gathered blocks) in sparse blocks, a plain conv elsewhere (same keys)."""
    return SIGEConv2d(*args, **kwargs) if sparse else nn.Conv2d(*args, **kwargs)


def dense_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on a whole map with its own padding, whatever the mode (a SIGEConv2d drops it in sparse mode)."""
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class ResBlock(FrozenStats):
    """GroupNorm -> swish -> [resample] -> conv3x3 -> (+ emb) -> GroupNorm [* (1 + s) + b] -> swish -> (dropout)
    -> conv3x3, plus the (resampled, 1x1 when the channels change) shortcut.

    * ``temb_channels``: width of the time embedding (0: none, as in the VAE); ``temb_proj(swish(emb))`` is
      added before the second norm, or with ``scale_shift_norm`` (Progressive Distillation) gives ``(s, b)``
      applied after it;
    * ``resample``: ``"down"`` (2x2 average pooling) or ``"up"`` (nearest x2) of the block input and of the
      first normalised activation (PD's resampling blocks); in a sparse resampling block the first norm,
      swish and resampling run densely and the main Gather cuts blocks of the resampled map;
    * ``sparse``: Gather / ScatterGather / Scatter around the convs; ``frozen_stats=False`` (dense blocks only)
      recomputes the statistics on every call, as ldm's middle ResBlocks;
    * ``swish``: ``"mul"`` (counted like the DDPM / VAE ports) or ``"silu"`` (counted 0, as ldm's ``nn.SiLU``).
    """

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
        scale_shift_norm: bool = False,
        resample: str | None = None,
        frozen_stats: bool = True,
        swish: str = "mul",
    ):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        if swish not in SWISH:
            raise ValueError(f"swish must be one of {SWISH}, got {swish!r}")
        if sparse and not frozen_stats:
            raise ValueError("a sparse ResBlock needs frozen statistics")
        if scale_shift_norm and not temb_channels:
            raise ValueError("scale_shift_norm needs a time embedding (temb_channels > 0)")
        out_channels = out_channels or in_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.sparse, self.frozen_stats, self.resample = sparse, frozen_stats, resample
        self.scale_shift_norm, self.count_swish = scale_shift_norm, swish == "mul"
        if resample == "down":
            self.pooling = nn.AvgPool2d(2)
        self.norm1 = nn.GroupNorm(num_groups, in_channels, eps=eps)
        self.conv1 = _conv(sparse, in_channels, out_channels, 3, padding=1)
        proj = 2 * out_channels if scale_shift_norm else out_channels
        self.temb_proj = nn.Linear(temb_channels, proj) if temb_channels else None
        self.norm2 = nn.GroupNorm(num_groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _conv(sparse, out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = _conv(sparse, in_channels, out_channels, 1) if in_channels != out_channels else None
        if sparse:
            act = "swish" if resample is None else "identity"  # resampling blocks apply norm + swish densely
            self.main_gather = Gather(self.conv1, main_block_size, activation_name=act)
            self.scatter_gather = ScatterGather(self.main_gather, activation_name="swish")
            if self.nin_shortcut is not None:
                self.shortcut_gather = Gather(self.nin_shortcut, shortcut_block_size)
                self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
            else:
                self.scatter = Scatter(self.main_gather)

    def _swish(self, x: torch.Tensor) -> torch.Tensor:
        return swish(x, self.count_swish)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return self.pooling(x)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.nin_shortcut is None:
            return x
        return self.nin_shortcut(self.shortcut_gather(x)) if self.sparse else dense_conv(self.nin_shortcut, x)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "full" or not self.frozen_stats:
            return self._full(x, temb)
        (s1, b1), (s2, b2) = self.frozen()
        sc = self._shortcut(self._resample(x))
        if not self.sparse:  # dense in sparse mode, with the original's statistics
            h = dense_conv(self.conv1, self._resample(self._swish(x * s1 + b1)))
            return dense_conv(self.conv2, self._swish(h * s2 + b2)) + sc
        if self.resample is None:
            h = self.main_gather(x, s1, b1)  # norm + swish fused into the gather
        else:
            h = self.main_gather(self._resample(self._swish(x * s1 + b1)))
        h = self.conv2(self.scatter_gather(self.conv1(h), s2, b2))
        return self.scatter(h, sc)

    def _full(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        if self.temb_proj is not None and temb is None:
            raise ValueError(f"{self._label()}: the full pass needs the time embedding")
        sc = self._shortcut(self._resample(x))
        if self.sparse and self.resample is None:
            x = self.main_gather(x)  # records the input size (a full-mode Gather returns its input)
        h, *s1 = group_norm_with_stats(x, self.norm1)
        h = self._resample(self._swish(h))
        if self.sparse and self.resample is not None:
            h = self.main_gather(h)
        h = self.conv1(h)
        if self.sparse:
            h = self.scatter_gather(h)  # caches conv1's output before the time embedding is applied
        e = self.temb_proj(self._swish(temb))[:, :, None, None] if self.temb_proj is not None else None
        if self.scale_shift_norm:
            h, s2, b2 = group_norm_with_stats(h, self.norm2)
            es, eb = e[:, : self.out_channels], e[:, self.out_channels :]
            h = h * (1 + es) + eb
            stats2 = (s2 * (1 + es), b2 * (1 + es) + eb)
        else:
            h, s2, b2 = group_norm_with_stats(h if e is None else h + e, self.norm2)
            # norm(h + e) = h*s + (b + e*s): fold the embedding into the frozen shift
            stats2 = (s2, b2 if e is None else b2 + e * s2)
        if self.frozen_stats:
            self.stats[self.cache_id] = (tuple(s1), stats2)
        h = self.conv2(self.dropout(self._swish(h)))
        return self.scatter(h, sc) if self.sparse else h + sc


class Downsample(SIGEModule):
    """3x3 stride-2 conv (parameter ``conv``) after an asymmetric ``(0, 1, 0, 1)`` zero pad (``padding=
    "asymmetric"``: the DDPM / VAE downsampler) or with symmetric padding 1 (``"symmetric"``: ldm's UNet)."""

    def __init__(self, channels: int, sparse: bool = True, block_size: int = 5, padding: str = "asymmetric"):
        super().__init__()
        if padding not in ("asymmetric", "symmetric"):
            raise ValueError(f"padding must be 'asymmetric' or 'symmetric', got {padding!r}")
        self.asymmetric = padding == "asymmetric"
        self.conv = _conv(sparse, channels, channels, 3, stride=2, padding=0 if self.asymmetric else 1)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.conv, block_size, offset=0 if self.asymmetric else None)
            self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sparse:
            return dense_conv(self.conv, F.pad(x, (0, 1, 0, 1)) if self.asymmetric else x)
        h = self.gather(x)
        if self.mode == "full" and self.asymmetric:
            h = F.pad(h, (0, 1, 0, 1))
        return self.scatter(self.conv(h))


class Upsample(SIGEModule):
    """Nearest x2 upsampling (dense) then a 3x3 conv (sparse)."""

    def __init__(self, channels: int, sparse: bool = True, block_size: int = 6):
        super().__init__()
        self.conv = _conv(sparse, channels, channels, 3, padding=1)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.conv, block_size)
            self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if not self.sparse:
            return dense_conv(self.conv, x)
        return self.scatter(self.conv(self.gather(x)))
