"""Pieces shared by the DDPM and Progressive Distillation UNets.

* :func:`timestep_embedding` - the sinusoidal embedding of DDPM (sin half, then cos half).
* :class:`AttnBlock` - self-attention over all positions, dense in every mode, with its GroupNorm
  statistics frozen per ``cache_id`` in the full pass (the original DDPM port stored them without the
  cache id, so sparse passes normalised with a wrong statistic; here they are keyed like every norm).
* :func:`check_input_size` - a clear error for inputs a UNet of ``levels`` resolutions cannot take.

MAC counting follows the original models: under a JIT trace (torchprofile) attention is written as
``bmm -> * scale -> softmax -> bmm`` so the profiler counts both matmuls and the scale multiply; outside
a trace the fused ``scaled_dot_product_attention`` runs (same result, less memory traffic).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn import SIGEModel
from sige.nn.blocks import FrozenStats
from sige.nn.norm import group_norm_with_stats


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of (float) timesteps ``t`` of shape ``[B]``."""
    if t.dim() != 1:
        raise ValueError(f"timesteps must be a 1-D tensor [B], got shape {tuple(t.shape)}")
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1))).to(t.device)
    emb = t.float()[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head self-attention of a ``[B, 3C, H, W]`` q|k|v map; returns ``[B, C, H, W]``.

    Channel ``c`` of each of q, k, v belongs to head ``c // (C / heads)`` (the original layout).
    """
    B, C3, H, W = (int(s) for s in qkv.shape)  # python ints: no traced shape arithmetic (torchprofile counts it)
    C = C3 // 3
    d = C // heads
    L = H * W
    if torch.jit.is_tracing():  # the original's ops, so torchprofile counts what the paper counted
        q = qkv[:, :C].reshape(B * heads, d, L).permute(0, 2, 1)
        k = qkv[:, C : 2 * C].reshape(B * heads, d, L)
        v = qkv[:, 2 * C :].reshape(B * heads, d, L)
        w = torch.bmm(q, k) * (d**-0.5)
        w = F.softmax(w, dim=2).permute(0, 2, 1)
        return torch.bmm(v, w).reshape(B, C, H, W)
    q, k, v = qkv.reshape(B, 3, heads, d, L).transpose(-1, -2).unbind(1)  # [B, heads, L, d] each
    out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, d]
    return out.transpose(-1, -2).reshape(B, C, H, W)


class AttnBlock(FrozenStats):
    """``x + proj_out(attention(qkv(GroupNorm(x))))``; dense in every mode.

    State-dict keys ``norm``, ``qkv``, ``proj_out`` (the fused layout; the checkpoint loader maps the
    unfused ``q``/``k``/``v`` convs onto ``qkv``). In sparse mode the input is normalised with the
    statistics frozen in the full pass for the current ``cache_id``.
    """

    def __init__(self, channels: int, head_dim: int | None = None, num_groups: int = 32, eps: float = 1e-6):
        super().__init__()
        head_dim = head_dim or channels
        if channels % head_dim:
            raise ValueError(f"{channels} channels do not split into heads of {head_dim}")
        self.channels, self.heads = channels, channels // head_dim
        self.norm = nn.GroupNorm(num_groups, channels, eps=eps)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "full":
            h, scale, shift = group_norm_with_stats(x, self.norm)
            self.stats[self.cache_id] = (scale, shift)
        else:
            scale, shift = self.frozen()
            h = x * scale + shift
        return x + self.proj_out(attention(self.qkv(h), self.heads))


def check_input_size(x: torch.Tensor, levels: int, in_channels: int, name: str) -> None:
    """Raise a clear error unless ``x`` is ``[B, in_channels, H, W]`` with H, W divisible by 2**(levels-1)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects images [B, {in_channels}, H, W], got shape {tuple(x.shape)}")
    f = 2 ** (levels - 1)
    if x.shape[2] % f or x.shape[3] % f:
        raise ValueError(
            f"{name} has {levels} resolutions, so H and W must be multiples of {f}; got {tuple(x.shape[2:])} "
            f"(resize or crop the image, e.g. to {max(f, x.shape[2] // f * f)}x{max(f, x.shape[3] // f * f)})"
        )


def check_timesteps(t: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Timesteps as a float tensor ``[B]`` (a scalar or a ``[1]`` tensor is broadcast to the batch)."""
    t = torch.as_tensor(t, device=device, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timesteps must be a scalar or a [B] tensor with B={batch}, got shape {tuple(t.shape)}")
    return t.expand(batch) if t.shape[0] != batch else t


def same_conditioning(recorded: dict, cache_id: object, t: torch.Tensor, name: str) -> None:
    """In sparse mode the time embedding is folded into frozen statistics: insist on the full pass's t."""
    if torch.jit.is_tracing():
        return
    ref = recorded.get(cache_id)
    if ref is None:
        raise RuntimeError(f"{name}: no full pass recorded for cache_id={cache_id!r}; run one before sparse passes")
    if ref.shape != t.shape or not torch.equal(ref, t.to(ref.device)):
        raise ValueError(
            f"{name}: a sparse pass reuses the time embedding folded into the statistics of the full pass of "
            f"cache_id={cache_id!r} (t={ref.tolist()}), but got t={t.tolist()}; run a full pass with this t first "
            "(or select its cache slot with model.set_cache_id)"
        )


class PyramidUNet(SIGEModel):
    """Base of the church UNets: ``num_resolutions`` levels halving a ``resolution``-sized input."""

    num_resolutions: int
    resolution: int

    def min_resolution(self, size: int | tuple[int, int] | None = None) -> int | tuple[int, int]:
        """Smallest feature resolution (the pyramid's ``min_res``) for an image side or ``(H, W)`` size."""
        f = 2 ** (self.num_resolutions - 1)
        if isinstance(size, tuple | list):
            return int(size[0]) // f, int(size[1]) // f
        return (size or self.resolution) // f
