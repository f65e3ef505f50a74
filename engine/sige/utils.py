"""The original engine's mask utilities under their original names (``sige.utils``).

They default to the original's cross-shaped dilation so that code written for the original
engine computes the same masks, with the original's traps fixed (see :mod:`sige.mask`).
"""

from __future__ import annotations

import numpy as np
import torch

from sige import mask as _mask
from sige.mask import PairLike, compute_difference_mask, reduce_mask

__all__ = ["compute_difference_mask", "dilate_mask", "downsample_mask", "reduce_mask"]


def dilate_mask(mask: torch.Tensor | np.ndarray, dilation: PairLike) -> torch.Tensor | np.ndarray:
    """Cross-shaped dilation, as in the original engine (2-D and 3-D masks)."""
    return _mask.dilate_mask(mask, dilation, shape="cross")


def downsample_mask(
    mask: torch.Tensor | np.ndarray,
    min_res: PairLike = 4,
    dilation: PairLike = 1,
    threshold: float = 0.3,
    eps: float = 1e-3,
) -> _mask.MaskPyramid:
    """Resolution pyramid with the original's cross-shaped per-level dilation."""
    return _mask.downsample_mask(mask, min_res, dilation, threshold, eps, shape="cross")
