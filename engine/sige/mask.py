"""Difference masks, dilation, the resolution pyramid and the reduction to active blocks.

Semantics follow the original engine (``sige.utils``) with its traps fixed:

* an empty mask stays empty at every pyramid level and reduces to **zero** active blocks
  (the original turned an all-zero mask into a fully dense one);
* blocks whose output tile lies entirely outside the feature map are not returned
  (``block_grid="trimmed"``, the default); ``block_grid="original"`` keeps the original's
  candidate grid so that published MAC counts can be reproduced exactly;
* 3-D (per-sample) masks work everywhere; dilation is a square by default, the original's
  cross-shaped element is available with ``shape="cross"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

PairLike = int | Sequence[int]
BlockGrid = Literal["trimmed", "original"]


def _pair(v: PairLike, name: str = "value") -> tuple[int, int]:
    if isinstance(v, int | np.integer):
        return int(v), int(v)
    if isinstance(v, torch.Size | tuple | list) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")


def _as_tensor(mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(mask))
    if isinstance(mask, torch.Tensor):
        return mask
    raise TypeError(f"mask must be a torch.Tensor or numpy.ndarray, got {type(mask).__name__}")


def compute_difference_mask(
    original: torch.Tensor | np.ndarray, edited: torch.Tensor | np.ndarray, eps: float = 2e-2
) -> torch.Tensor:
    """Boolean mask of pixels where ``|original - edited| > eps`` in any channel.

    Accepts ``[H, W]``, ``[C, H, W]`` or ``[B, C, H, W]`` inputs of identical shape. Returns ``[H, W]``
    for 2-D/3-D inputs and for batch 1, and a per-sample ``[B, H, W]`` mask for batch > 1. Non-finite values
    (NaN, inf) are refused: a dense pass would spread them (through normalisation statistics and attention)
    where a sparse pass cannot, so no mask could make the two agree.
    """
    a, b = _as_tensor(original), _as_tensor(edited)
    if a.shape != b.shape:
        raise ValueError(f"original and edited must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() not in (2, 3, 4):
        raise ValueError(f"expected a [H,W], [C,H,W] or [B,C,H,W] input, got shape {tuple(a.shape)}")
    for name, t in (("original", a), ("edited", b)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"the {name} input has {n} non-finite value(s) (NaN or inf); sparse passes cannot reproduce what a "
                "dense pass does with them - replace them (torch.nan_to_num) before computing the difference mask"
            )
    diff = (a.float() - b.float()).abs() > eps
    if a.dim() == 2:
        return diff
    if a.dim() == 3:
        return diff.any(dim=0)
    diff = diff.any(dim=1)
    return diff[0] if diff.shape[0] == 1 else diff


def dilate_mask(
    mask: torch.Tensor | np.ndarray, dilation: PairLike, shape: Literal["square", "cross"] = "square"
) -> torch.Tensor | np.ndarray:
    """Dilate a boolean mask ``[H, W]`` or ``[B, H, W]`` by ``dilation`` pixels (int or (dh, dw)).

    ``shape="square"`` uses a (2dh+1) x (2dw+1) rectangle; ``shape="cross"`` reproduces the original
    engine's plus-shaped element (row shifts and column shifts of the undilated mask). Returns the
    same type (tensor or ndarray) as the input.
    """
    dh, dw = _pair(dilation, "dilation")
    if dh < 0 or dw < 0:
        raise ValueError(f"dilation must be >= 0, got {(dh, dw)}")
    is_numpy = isinstance(mask, np.ndarray)
    m = _as_tensor(mask)
    if m.dim() not in (2, 3):
        raise ValueError(f"mask must be [H,W] or [B,H,W], got shape {tuple(m.shape)}")
    if dh == 0 and dw == 0:
        return mask
    x = m.bool().float().reshape(-1, 1, *m.shape[-2:])
    if shape == "square":
        out = F.max_pool2d(x, kernel_size=(2 * dh + 1, 2 * dw + 1), stride=1, padding=(dh, dw))
    elif shape == "cross":
        rows = F.max_pool2d(x, kernel_size=(2 * dh + 1, 1), stride=1, padding=(dh, 0))
        cols = F.max_pool2d(x, kernel_size=(1, 2 * dw + 1), stride=1, padding=(0, dw))
        out = torch.maximum(rows, cols)
    else:
        raise ValueError(f"shape must be 'square' or 'cross', got {shape!r}")
    out = out.reshape(m.shape) > 0.5
    return out.numpy() if is_numpy else out


class MaskPyramid(dict):
    """``{(h, w): bool mask}`` of :func:`downsample_mask`, remembering the per-level ``dilation`` it applied
    (what :meth:`sige.nn.SIGEModel.set_masks` checks for exactness)."""

    def __init__(self, levels: dict, dilation: tuple[int, int]):
        super().__init__(levels)
        self.dilation = dilation

    def to(self, *args, **kwargs) -> MaskPyramid:
        """Every level moved (``tensor.to`` arguments); the dilation is kept."""
        return MaskPyramid({k: v.to(*args, **kwargs) for k, v in self.items()}, self.dilation)


def downsample_mask(
    mask: torch.Tensor | np.ndarray,
    min_res: PairLike = 4,
    dilation: PairLike = 1,
    threshold: float = 0.3,
    eps: float = 1e-3,
    shape: Literal["square", "cross"] = "square",
    sizes: Sequence[PairLike] | None = None,
) -> MaskPyramid:
    """The resolution pyramid ``{(h, w): bool mask}`` of a ``[H, W]`` (or per-sample ``[B, H, W]``) mask.

    Level by level: binarise the float mask at ``min(threshold, max - eps)`` (so a tiny edit never
    vanishes), dilate it, store it; halve (floor) the size and stop once both sides are below
    ``min_res``; otherwise interpolate the *float* mask bilinearly to the new size. ``sizes`` instead
    gives the levels themselves, e.g. the resolutions a model really runs at (stride-2 convs round up:
    ``model.mask_resolutions()`` after a full pass), for inputs whose sides are not powers of two.
    An all-zero mask yields all-zero masks (the original engine made it fully dense). Pass
    ``shape="cross"`` for the original's dilation element (``sige.utils.downsample_mask`` does).

    Exactness: a sparse pass equals the dense one when every level covers the edit dilated by the
    receptive field of the sparse convs that share its blocks (``dilation=1`` for 3x3 convs chained
    through a ScatterGather, as in a ResBlock); ``dilation=0`` gives approximate results.
    """
    m = _as_tensor(mask)
    if m.dim() not in (2, 3):
        raise ValueError(f"mask must be [H,W] or [B,H,W], got shape {tuple(m.shape)}")
    x = m.float().reshape(-1, 1, *m.shape[-2:])
    if sizes is not None:
        levels = sorted({_pair(s, "sizes entry") for s in sizes}, key=lambda hw: hw[0] * hw[1], reverse=True)
        if not levels or min(min(hw) for hw in levels) < 1:
            raise ValueError(f"sizes must be a non-empty list of positive (h, w) sizes, got {sizes!r}")
    else:
        min_h, min_w = _pair(min_res, "min_res")
        levels, (h, w) = [], tuple(x.shape[-2:])
        while True:
            levels.append((h, w))
            h, w = h // 2, w // 2
            if (h < min_h and w < min_w) or h == 0 or w == 0:
                break
    masks: dict[tuple[int, int], torch.Tensor] = {}
    for h, w in levels:
        if (h, w) != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        # Per-sample threshold: each sample keeps at least its own strongest pixel.
        peak = x.amax(dim=(1, 2, 3), keepdim=True)
        t = torch.clamp(peak - eps, max=threshold)
        binary = (x > t) & (peak > 0)
        binary = binary.reshape(*m.shape[:-2], h, w)
        masks[(h, w)] = dilate_mask(binary, dilation, shape=shape)
    return MaskPyramid(masks, _pair(dilation, "dilation"))


def num_blocks(
    size: int, block: int, block_stride: int, offset: int, conv_stride: int, out_size: int, grid: BlockGrid
) -> int:
    """Number of candidate blocks along one axis."""
    if grid == "original":
        # The original pads by `block` on the far side, which adds blocks whose output is outside the map.
        return (size + offset) // block_stride + 1
    tile = block_stride // conv_stride
    return -(-out_size // tile)


def reduce_mask(
    mask: torch.Tensor | np.ndarray | None,
    block_size: PairLike | None,
    stride: PairLike | None,
    padding: PairLike | None,
    verbose: bool = False,
    *,
    conv_stride: PairLike = 1,
    out_size: Sequence[int] | None = None,
    block_grid: BlockGrid = "trimmed",
) -> torch.Tensor | None:
    """Active blocks of a ``[H, W]`` or ``[B, H, W]`` mask as ``int32 [N, 2]`` top-left *input* coordinates.

    A block is active when any mask pixel inside its input window (block_size, starting at
    ``stride * i - padding``) is set; for per-sample masks the union over samples is used (extra
    blocks are exact, merely wasted work). Blocks are in row-major order. With the default
    ``block_grid="trimmed"`` only blocks whose output tile overlaps the output map (``out_size``,
    derived from ``conv_stride`` when omitted) are candidates; ``"original"`` keeps the original
    engine's grid. An empty mask yields ``N = 0``. Returns None if any geometry argument is None.
    """
    if mask is None or block_size is None or stride is None or padding is None:
        return None
    m = _as_tensor(mask)
    if m.dim() == 3:
        m = m.bool().any(dim=0)
    if m.dim() != 2:
        raise ValueError(f"mask must be [H,W] or [B,H,W], got shape {tuple(m.shape)}")
    bh, bw = _pair(block_size, "block_size")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    ch, cw = _pair(conv_stride, "conv_stride")
    H, W = m.shape
    if out_size is None:
        kh, kw = bh - (sh // ch - 1) * ch, bw - (sw // cw - 1) * cw  # kernel implied by the geometry
        out_size = ((H + 2 * ph - kh) // ch + 1, (W + 2 * pw - kw) // cw + 1)
    nh = num_blocks(H, bh, sh, ph, ch, out_size[0], block_grid)
    nw = num_blocks(W, bw, sw, pw, cw, out_size[1], block_grid)
    # Pad so that every candidate window lies inside the padded mask, then max-pool over windows.
    need_h = max(0, (nh - 1) * sh + bh - (H + ph))
    need_w = max(0, (nw - 1) * sw + bw - (W + pw))
    x = F.pad(m.float()[None, None], (pw, need_w, ph, need_h))
    pooled = F.max_pool2d(x, kernel_size=(bh, bw), stride=(sh, sw))[0, 0, :nh, :nw] > 0.5
    idx = pooled.nonzero()
    idx[:, 0] = idx[:, 0] * sh - ph
    idx[:, 1] = idx[:, 1] * sw - pw
    if verbose:
        print(f"Block Sparsity: {idx.shape[0]}/{nh * nw} ({idx.shape[0] / max(nh * nw, 1):.2%})")
    return idx.to(device=m.device, dtype=torch.int32).contiguous()


def edited_fraction(mask: torch.Tensor | np.ndarray) -> float:
    """Fraction of set pixels of a boolean mask."""
    m = _as_tensor(mask)
    return float(m.bool().float().mean().item()) if m.numel() else 0.0
