"""SIGEModule, SIGEModel and SIGEConv2d: the original engine's public API, with its modes and caches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sige.ops import SUPPORTED_DTYPES

MODES = ("full", "sparse", "profile")


def tensor_version(t: torch.Tensor) -> int | None:
    """In-place modification counter of ``t`` (None for inference-mode tensors, which have none, and while
    torch.compile traces: the counter is not traceable, so compiled passes skip the stale-cache checks)."""
    if torch.compiler.is_compiling():
        return None
    try:
        return t._version
    except RuntimeError:
        return None


class SIGEModule(nn.Module):
    """Base of every mode-aware module. ``call_super=False`` supports cooperative multiple inheritance."""

    def __init__(self, call_super: bool = True):
        if call_super:
            super().__init__()
        self.supported_dtypes = list(SUPPORTED_DTYPES)
        self.mode: str = "full"
        self.mask: torch.Tensor | None = None
        self.timestamp: int | None = None
        self.cache_id: Any = 0
        self.sparse_update = False

    def set_mask(self, masks: Mapping[tuple[int, int], torch.Tensor], cache: dict, timestamp: int) -> None:
        self.timestamp = timestamp

    def set_cache_id(self, cache_id: Any) -> None:
        self.cache_id = cache_id

    def clear_cache(self) -> None:
        pass

    def set_sparse_update(self, sparse_update: bool) -> None:
        self.sparse_update = bool(sparse_update)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode

    def cache_nbytes(self) -> int:
        """Bytes held by this module's caches (cached outputs, working buffers, frozen statistics)."""
        return 0

    def check_dtype(self, *args: torch.Tensor | None) -> None:
        for x in args:
            if x is not None and x.dtype not in self.supported_dtypes:
                raise TypeError(
                    f"{type(self).__name__} does not support dtype {x.dtype}; supported: "
                    + ", ".join(str(d).replace("torch.", "") for d in self.supported_dtypes)
                )

    def check_dim(self, *args: torch.Tensor | None) -> None:
        for x in args:
            if x is not None and x.dim() != 4:
                raise ValueError(f"{type(self).__name__} expects 4-D [B, C, H, W] tensors, got shape {tuple(x.shape)}")

    def _label(self) -> str:
        return getattr(self, "_sige_name", None) or type(self).__name__


class SIGEModuleWrapper:
    """Holds a module without registering it as a submodule (no duplicate modules or state-dict keys)."""

    def __init__(self, module: SIGEModule):
        self.module = module


class SIGEConv2d(nn.Conv2d, SIGEModule):
    """``nn.Conv2d`` with identical parameters and state-dict keys; no padding on gathered blocks."""

    def __init__(self, *args: Any, **kwargs: Any):
        nn.Conv2d.__init__(self, *args, **kwargs)
        SIGEModule.__init__(self, call_super=False)
        # how sparse mode computes the blocks: see sige.nn.conv_algorithms (set_conv_algorithm)
        self.algorithm = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "full":
            return super().forward(x)
        if self.mode == "sparse" and self.algorithm != "conv":
            from sige.nn import conv_algorithms

            return conv_algorithms.run(self, x, self.algorithm)
        if self.mode in ("sparse", "profile"):  # profile always convolves: MACs are counted on F.conv2d
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        raise ValueError(f"unknown mode {self.mode!r}")


def _normalise_masks(masks: Mapping) -> dict[tuple[int, int], torch.Tensor]:
    if not isinstance(masks, Mapping) or not masks:
        raise TypeError("set_masks expects a non-empty dict {(h, w): mask}, e.g. from sige.mask.downsample_mask")
    out: dict[tuple[int, int], torch.Tensor] = {}
    for key, m in masks.items():
        if not (isinstance(key, tuple | list | torch.Size) and len(key) == 2):
            raise TypeError(f"mask keys must be (h, w) resolutions, got {key!r}")
        if isinstance(m, np.ndarray):
            m = torch.from_numpy(np.ascontiguousarray(m))
        if not isinstance(m, torch.Tensor):
            raise TypeError(f"mask for {tuple(key)} must be a tensor or ndarray, got {type(m).__name__}")
        if m.dim() not in (2, 3) or tuple(m.shape[-2:]) != (int(key[0]), int(key[1])):
            raise ValueError(f"mask for resolution {tuple(key)} must be [h, w] or [B, h, w], got {tuple(m.shape)}")
        out[(int(key[0]), int(key[1]))] = m.bool()
    return out


class SIGEModel(nn.Module):
    """Top-level wrapper that broadcasts masks, mode, cache id and sparse-update to its SIGEModules.

    Order of use: one ``full`` forward on the original input (fills caches, records shapes) ->
    ``set_masks`` -> ``set_mode("sparse")`` (or ``"profile"``) forwards on edited inputs.
    """

    def __init__(self, call_super: bool = True):
        if call_super:
            super().__init__()
        self.mode = "full"
        self.timestamp = 0

    def sige_modules(self) -> list[SIGEModule]:
        return [m for m in self.modules() if isinstance(m, SIGEModule)]

    def set_masks(self, masks: Mapping[tuple[int, int], torch.Tensor], block_grid: str = "trimmed") -> None:
        """Set the per-resolution masks (one per resolution a sparse module runs at: see
        :meth:`mask_resolutions`). ``block_grid="original"`` keeps the original engine's block grid (blocks whose
        output lies outside the map included) so that published MAC counts reproduce.

        Exactness: a sparse pass equals the dense one (with the frozen statistics) when every level covers the
        edit dilated by the receptive field of the sparse convs that share its blocks; masks of
        :func:`sige.mask.downsample_mask` with ``dilation >= 1`` do for 3x3 ResBlocks. A pyramid built with
        ``dilation=0`` for a model with chained sparse convs gets a warning (once per model).
        """
        if block_grid not in ("trimmed", "original"):
            raise ValueError(f"block_grid must be 'trimmed' or 'original', got {block_grid!r}")
        dilation = getattr(masks, "dilation", None)
        masks = _normalise_masks(masks)
        device = next((p.device for p in self.parameters()), None)
        for key, m in masks.items():
            if device is not None and m.device.type != device.type:
                raise ValueError(
                    f"the mask for {key} is on {m.device} but the model is on {device}; move the masks first "
                    f"({{k: v.to({str(device)!r}) for k, v in masks.items()}})"
                )
        if dilation is not None and min(dilation) == 0 and not getattr(self, "_warned_dilation", False):
            from sige.nn.scatter_gather import ScatterGather

            if any(isinstance(m, ScatterGather) for m in self.modules()):
                import warnings

                self._warned_dilation = True
                warnings.warn(
                    f"{type(self).__name__}: the mask pyramid was built with dilation 0, but chained sparse convs "
                    "(ScatterGather) need the edit dilated by their receptive field for sparse passes to equal "
                    "dense ones; build it with sige.mask.downsample_mask(..., dilation=1) or larger",
                    RuntimeWarning,
                    stacklevel=2,
                )
        self.timestamp += 1
        cache: dict = {"block_grid": block_grid}
        for name, module in self.named_modules():
            if isinstance(module, SIGEModule):
                module._sige_name = name or type(module).__name__
                module.set_mask(masks, cache, self.timestamp)

    def mask_resolutions(self) -> list[tuple[int, int]]:
        """The resolutions ``set_masks`` needs a mask for (the inputs of every Gather, recorded by the last full
        pass), largest first: pass them as ``sige.mask.downsample_mask(mask, sizes=...)`` for inputs whose sides
        are not powers of two (stride-2 convs round up where halving rounds down)."""
        from sige.nn.gather import Gather

        res = {m.input_res for m in self.modules() if isinstance(m, Gather) and m.input_res is not None}
        if not res:
            raise RuntimeError(f"{type(self).__name__}: run one full forward pass first (the sizes are recorded then)")
        return sorted(res, key=lambda hw: hw[0] * hw[1], reverse=True)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        self.mode = mode
        for module in self.sige_modules():
            module.set_mode(mode)

    def clear_cache(self) -> None:
        for module in self.sige_modules():
            module.clear_cache()

    def set_cache_id(self, cache_id: Any) -> None:
        for module in self.sige_modules():
            module.set_cache_id(cache_id)

    def set_sparse_update(self, sparse_update: bool) -> None:
        for module in self.sige_modules():
            module.set_sparse_update(sparse_update)

    def cache_nbytes(self) -> int:
        """Total bytes held in caches by all SIGEModules (outputs, working buffers, statistics)."""
        return sum(m.cache_nbytes() for m in self.sige_modules())
