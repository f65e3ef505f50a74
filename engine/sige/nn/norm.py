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


def group_norm_with_stats(x: torch.Tensor, norm: nn.GroupNorm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(norm(x), scale, shift)`` in one pass: the output and its ``[B, C, 1, 1]`` frozen scale/shift.

    Uses the fused native kernel, which returns the per-group mean and inverse std it computed. Under a
    JIT trace (MAC counting) it runs ``F.group_norm`` so the profiler sees the op it counts.
    """
    B, C = x.shape[:2]
    G = norm.num_groups
    if torch.jit.is_tracing() or x.dtype != torch.float32:
        scale, shift = group_norm_scale_shift(x, norm)
        return torch.nn.functional.group_norm(x, G, norm.weight, norm.bias, norm.eps), scale, shift
    y, mean, rstd = torch.native_group_norm(x.contiguous(), norm.weight, norm.bias, B, C, x[0, 0].numel(), G, norm.eps)
    rstd = rstd.view(B, G, 1).expand(B, G, C // G).reshape(B, C)
    mean = mean.view(B, G, 1).expand(B, G, C // G).reshape(B, C)
    scale = rstd if norm.weight is None else rstd * norm.weight
    shift = -mean * scale if norm.bias is None else norm.bias - mean * scale
    return y, scale.view(B, C, 1, 1), shift.view(B, C, 1, 1)
