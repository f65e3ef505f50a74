"""ScatterGather: "scatter conv A's tiles into its cached output, then gather conv B's blocks", fused.

A and B must share the geometry of ``gather`` (same resolution, kernel, stride, padding and block
size, hence the same active blocks): conv1 -> conv2 of a ResBlock, or a SPADE shared conv -> its
gamma/beta conv. The intermediate full map is never materialised: a precomputed scatter map says,
for each pixel, which tile (if any) holds its new value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from sige import ops
from sige.activations import check_activation
from sige.nn.base import SIGEModuleWrapper, tensor_version
from sige.nn.gather import Gather, profile_blocks
from sige.nn.scatter import CachedOutput


class ScatterGather(CachedOutput):
    def __init__(self, gather: Gather, activation_name: str = "identity", activation_first: bool = False):
        super().__init__()
        if not isinstance(gather, Gather):
            raise TypeError(f"ScatterGather pairs with a Gather, got {type(gather).__name__}")
        self.gather = SIGEModuleWrapper(gather)
        self.activation_name = check_activation(activation_name)
        self.activation_first = activation_first
        self.scatter_map: torch.Tensor | None = None

    def set_mask(self, masks: Mapping[tuple[int, int], torch.Tensor], cache: dict, timestamp: int) -> None:
        if self.timestamp == timestamp:
            return
        super().set_mask(masks, cache, timestamp)
        gather: Gather = self.gather.module
        gather.set_mask(masks, cache, timestamp)
        if self.output_res is not None and self.output_res != gather.input_res:
            raise ValueError(
                f"{self._label()}: the producer conv's output is {self.output_res} but the Gather's input is "
                f"{gather.input_res}; ScatterGather needs both convs at the same resolution and geometry"
            )
        H, W = gather.input_res
        key = ("scatter_map", (H, W), gather.geometry, id(gather.active_indices))
        smap = cache.get(key)
        if smap is None:
            smap = ops.get_scatter_map(
                H, W, gather.block_size, gather.kernel_size, gather.offset, gather.model_stride, gather.active_indices
            )
            cache[key] = smap
        self.scatter_map = smap

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.check_dim(x, scale, shift)
        self.check_dtype(x, scale, shift)
        gather: Gather = self.gather.module
        if self.mode == "full":
            if scale is not None or shift is not None:
                raise ValueError(f"{self._label()}: scale/shift are fused only in sparse mode; apply the norm in full")
            self._store(x)
            return x
        base = self._base()
        indices = self._check_tiles(x, gather, base.shape[0])
        if self.scatter_map is None:
            raise RuntimeError(f"{self._label()}: call model.set_masks(...) before sparse or profile forwards")
        if self.mode == "profile":
            return profile_blocks(x, int(x.shape[0]), gather.block_size, scale, shift, self.activation_name)
        out = ops.scatter_gather(
            x, base, gather.block_size, indices, self.scatter_map, scale, shift,
            self.activation_name, self.activation_first, check_map=False,  # built in set_masks for these indices
        )  # fmt: skip
        if self.sparse_update:
            geo = gather.geometry
            ops.scatter_(base, x, indices, geo.offset, geo.conv_stride)
            self._base_versions[self.cache_id] = tensor_version(base)
        return out

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}, activation_first={self.activation_first}"
