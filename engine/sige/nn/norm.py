"""Frozen normalisation: statistics of the original activation as a per-sample scale/shift.

In sparse mode a norm cannot see the whole edited map, so the statistics computed in the full pass
on the original input are reused; folded into ``x*scale + shift`` they fuse into Gather or
ScatterGather.
"""

from __future__ import annotations

import torch
from torch import nn


def group_norm_scale_shift(
    x: torch.Tensor,
    norm: nn.GroupNorm | nn.InstanceNorm2d | None = None,
    num_groups: int | None = None,
    eps: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of shape ``[B, C, 1, 1]`` with ``norm(x) == x*scale + shift`` for this ``x``.

    ``norm`` may be an ``nn.GroupNorm`` or an ``nn.InstanceNorm2d`` (affine or not); without one give
    ``num_groups`` (and ``eps``) for a parameter-free group norm.
    """
    if x.dim() != 4:
        raise ValueError(f"expected [B, C, H, W], got {tuple(x.shape)}")
    B, C = x.shape[:2]
    weight = bias = None
    if isinstance(norm, nn.GroupNorm):
        groups, eps = norm.num_groups, norm.eps
        weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    elif isinstance(norm, nn.InstanceNorm2d):
        groups, eps = C, norm.eps
        weight, bias = (norm.weight, norm.bias) if norm.affine else (None, None)
    elif norm is None and num_groups is not None:
        groups, eps = num_groups, 1e-5 if eps is None else eps
    else:
        raise TypeError(
            f"unsupported norm {type(norm).__name__}; give an nn.GroupNorm, nn.InstanceNorm2d or num_groups"
        )
    if C % groups:
        raise ValueError(f"{C} channels do not split into {groups} groups")
    xf = x.float().reshape(B, groups, -1)
    var, mean = torch.var_mean(xf, dim=2, unbiased=False)
    inv = torch.rsqrt(var + eps)  # [B, G]
    inv = inv.repeat_interleave(C // groups, dim=1)
    mean = mean.repeat_interleave(C // groups, dim=1)
    scale = inv if weight is None else inv * weight.float()
    shift = -mean * scale if bias is None else bias.float() - mean * scale
    return scale.to(x.dtype).view(B, C, 1, 1), shift.to(x.dtype).view(B, C, 1, 1)


def batch_norm_scale_shift(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``[1, C, 1, 1]`` scale/shift of an eval-mode BatchNorm (running statistics)."""
    if norm.running_var is None or norm.running_mean is None:
        raise ValueError("BatchNorm without running statistics cannot be folded; construct it with track_running_stats")
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.affine:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.affine:
        shift = shift + norm.bias
    C = scale.numel()
    return scale.view(1, C, 1, 1), shift.view(1, C, 1, 1)
