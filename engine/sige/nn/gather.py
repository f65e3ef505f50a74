"""Gather: cut the active blocks (with their halo) out of an activation, fusing norm and activation."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from sige import ops
from sige.activations import activation, check_activation
from sige.geometry import BlockGeometry
from sige.mask import PairLike, reduce_mask
from sige.nn.base import SIGEModule, SIGEModuleWrapper


class Gather(SIGEModule):
    """Gathers the active input blocks of ``conv`` (block size adjusted to the conv, see BlockGeometry).

    * full: records the input resolution and returns ``x`` unchanged;
    * sparse: returns ``[B*N, C, bh, bw]`` blocks with ``act(x*scale + shift)`` fused, zero outside the map;
    * profile: a shape-correct placeholder so MAC counting sees the reduced work.
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        block_size: PairLike,
        offset: PairLike | None = None,
        activation_name: str = "identity",
        activation_first: bool = False,
        verbose: bool = False,
    ):
        super().__init__()
        self._conv = SIGEModuleWrapper(conv)  # kept (unregistered) so the block size can change later
        self._explicit_offset = offset
        self._set_geometry(BlockGeometry.from_conv(conv, block_size, offset))
        self.activation_name = check_activation(activation_name)
        self.activation_first = activation_first
        self.verbose = verbose
        self.input_res: tuple[int, int] | None = None
        self.input_batch: int | None = None
        self.output_res: tuple[int, int] | None = None  # recorded by the paired scatter in full mode
        self.active_indices: torch.Tensor | None = None

    def _set_geometry(self, geometry: BlockGeometry) -> None:
        self.geometry = geometry
        self.block_size = geometry.block_size
        self.block_stride = geometry.block_stride
        self.kernel_size = geometry.kernel_size
        self.model_stride = geometry.conv_stride
        self.offset = geometry.offset

    def resize(self, block_size: PairLike) -> None:
        """Use another block size (adjusted to the conv without a warning); call set_masks again after."""
        self._set_geometry(BlockGeometry.from_conv(self._conv.module, block_size, self._explicit_offset, warn=False))
        self.active_indices = None
        self.timestamp = None

    def extra_repr(self) -> str:
        return (
            f"block_size={self.block_size}, block_stride={self.block_stride}, offset={self.offset}, "
            f"activation={self.activation_name!r}, activation_first={self.activation_first}"
        )

    def require_indices(self) -> torch.Tensor:
        if self.active_indices is None:
            raise RuntimeError(
                f"{self._label()}: no active blocks yet; call model.set_masks(...) after a full pass and "
                "before sparse or profile forwards"
            )
        return self.active_indices

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_dim(x, scale, shift)
        self.check_dtype(x, scale, shift)
        weight = self._conv.module.weight
        if x.dtype != weight.dtype:
            raise TypeError(
                f"{self._label()}: the input is {str(x.dtype).replace('torch.', '')} but the model's weights are "
                f"{str(weight.dtype).replace('torch.', '')}; convert one to the other (x.to(dtype) or model.to(dtype))"
            )
        if self.mode == "full":
            if scale is not None or shift is not None:
                raise ValueError(f"{self._label()}: scale/shift are fused only in sparse mode; apply the norm in full")
            self.input_res = (int(x.shape[2]), int(x.shape[3]))
            self.input_batch = int(x.shape[0])
            return x
        indices = self.require_indices()
        if self.input_res is not None and tuple(x.shape[2:]) != self.input_res:
            raise ValueError(
                f"{self._label()}: input is {tuple(x.shape[2:])} but the full pass recorded {self.input_res}; "
                "run a full pass at this resolution first"
            )
        if self.mode == "profile":
            # python ints, so a JIT trace records no shape arithmetic (which torchprofile would count as a MAC)
            n = int(indices.shape[0]) * int(x.shape[0])
            return profile_blocks(x, n, self.block_size, scale, shift, self.activation_name)
        return ops.gather(x, self.block_size, indices, scale, shift, self.activation_name, self.activation_first)

    def set_mask(self, masks: Mapping[tuple[int, int], torch.Tensor], cache: dict, timestamp: int) -> None:
        if self.timestamp == timestamp:
            return
        super().set_mask(masks, cache, timestamp)
        if self.input_res is None:
            raise RuntimeError(f"{self._label()}: run one full forward pass before set_masks (input size unknown)")
        res = self.input_res
        if res not in masks:
            raise KeyError(
                f"{self._label()} needs a mask at resolution {res}, but set_masks got only {sorted(masks)}; "
                "build the pyramid with sige.mask.downsample_mask down to the smallest sparse resolution (for sides "
                "that are not powers of two: downsample_mask(mask, sizes=model.mask_resolutions()))"
            )
        self.mask = masks[res]
        if self.mask.dim() == 3 and self.input_batch is not None and self.mask.shape[0] not in (1, self.input_batch):
            raise ValueError(
                f"{self._label()}: the mask at {res} has {self.mask.shape[0]} samples but the full pass had a batch "
                f"of {self.input_batch}; give one mask per sample, or one [H, W] mask for all"
            )
        grid = cache.get("block_grid", "trimmed")
        if grid == "trimmed" and self.output_res is None:
            grid = "original"  # output size unknown (no paired scatter ran): keep every candidate block
        key = ("active_indices", res, self.geometry, grid, self.output_res)
        indices = cache.get(key)
        if indices is None:
            indices = reduce_mask(
                self.mask,
                self.block_size,
                self.block_stride,
                self.offset,
                verbose=self.verbose,
                conv_stride=self.model_stride,
                out_size=self.output_res,
                block_grid=grid,
            )
            cache[key] = indices
        self.active_indices = indices


def profile_blocks(
    x: torch.Tensor,
    n: int,
    block: tuple[int, int],
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    act: str,
) -> torch.Tensor:
    """Placeholder ``[n, C, *block]`` tensor that keeps the traced graph connected to ``x`` and counts the
    same element-wise work (scale multiply, activation) as the original engine's profile mode."""
    fill = x.reshape(-1)[0] if x.numel() else x.sum()
    out = torch.full((n, int(x.shape[1]), *block), 0.0, dtype=x.dtype, device=x.device) + fill
    if scale is not None:
        out = out * scale.reshape(-1)[0]
    if shift is not None:
        out = out + shift.reshape(-1)[0]
    return activation(out, act)
