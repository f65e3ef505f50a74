"""Scatter and ScatterWithBlockResidual: write output tiles back into the cached full-resolution output.

Sparse passes never copy the whole cached output per call. Each cache slot owns a *working
buffer*: a copy of the cached original made on the first sparse pass after a full pass, into
which tiles are scattered in place. Before a pass with different active blocks, the positions
the previous pass wrote are restored from the cached original (a cost proportional to the tiles,
not to the map). ``sparse_update`` re-bases: the written tiles are copied into the cached
original too, so the edit becomes the new base without a dense recompute. The tensor a sparse
Scatter returns is its working buffer: treat it as read-only (in-place edits are detected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sige import ops
from sige.nn.base import SIGEModule, SIGEModuleWrapper, tensor_version
from sige.nn.gather import Gather

# A write: (active indices, tile size, offset, conv stride), enough to restore what it wrote.
Write = tuple[torch.Tensor, tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass
class _Slot:
    base: torch.Tensor
    buf: torch.Tensor
    buf_version: int | None = None
    dirty: list[Write] | None = None  # writes since buf last equalled base


def _same_writes(a: list[Write], b: list[Write]) -> bool:
    return len(a) == len(b) and all(x[0] is y[0] and x[1:] == y[1:] for x, y in zip(a, b))


class CachedOutput(SIGEModule):
    """Shared machinery: cached full-pass outputs per ``cache_id`` and in-place working buffers."""

    # False emulates the original engine (a fresh copy of the cached output on every sparse call);
    # only the engine benchmark turns it off, to measure the original design.
    reuse_buffers: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.original_outputs: dict[Any, torch.Tensor] = {}
        self._base_versions: dict[Any, int | None] = {}
        self._slots: dict[Any, _Slot] = {}
        self.output_res: tuple[int, int] | None = None

    def clear_cache(self) -> None:
        self.original_outputs.clear()
        self._base_versions.clear()
        self._slots.clear()

    def cache_nbytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for t in [*self.original_outputs.values(), *(s.buf for s in self._slots.values())]:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total

    def _store(self, output: torch.Tensor) -> None:
        output = output.contiguous()
        self.original_outputs[self.cache_id] = output
        self._base_versions[self.cache_id] = tensor_version(output)
        self._slots.pop(self.cache_id, None)
        self.output_res = (int(output.shape[2]), int(output.shape[3]))

    def _base(self) -> torch.Tensor:
        base = self.original_outputs.get(self.cache_id)
        if base is None:
            raise RuntimeError(
                f"{self._label()}: nothing cached for cache_id={self.cache_id!r}; run a full forward pass with "
                "this cache id before sparse or profile passes"
            )
        version = tensor_version(base)
        if version is not None and version != self._base_versions.get(self.cache_id):
            raise RuntimeError(
                f"{self._label()}: the cached full-pass output was modified in place after it was cached; "
                "avoid in-place ops on outputs of Scatter modules (use out = out + y, or .clone())"
            )
        return base

    def _acquire(self, base: torch.Tensor, writes: list[Write]) -> _Slot:
        slot = self._slots.get(self.cache_id)
        stale = slot is None or slot.base is not base or tensor_version(slot.buf) != slot.buf_version
        if stale or not self.reuse_buffers:
            slot = _Slot(base=base, buf=base.contiguous().clone())
            self._slots[self.cache_id] = slot
        elif slot.dirty is not None and not _same_writes(slot.dirty, writes):
            for indices, tile, offset, stride in slot.dirty:
                ops.copy_tiles_(slot.buf, base, indices, tile, offset, stride)
        return slot

    def _release(self, slot: _Slot, writes: list[Write]) -> None:
        if self.sparse_update:
            for indices, tile, offset, stride in writes:
                ops.copy_tiles_(slot.base, slot.buf, indices, tile, offset, stride)
            self._base_versions[self.cache_id] = tensor_version(slot.base)
            slot.dirty = None
        else:
            slot.dirty = writes
        slot.buf_version = tensor_version(slot.buf)

    def _check_tiles(self, x: torch.Tensor, gather: Gather, batch: int, what: str = "tiles") -> torch.Tensor:
        indices = gather.require_indices()
        tile = gather.geometry.tile_size
        expected = (batch * indices.shape[0], tile[0], tile[1])
        if (x.shape[0], x.shape[2], x.shape[3]) != expected:
            raise ValueError(
                f"{self._label()}: got {what} of shape {tuple(x.shape)}, but its Gather's geometry "
                f"(block {gather.block_size}, kernel {gather.kernel_size}, stride {gather.model_stride}) and "
                f"{indices.shape[0]} active blocks x batch {batch} produce [{expected[0]}, C, {tile[0]}, {tile[1]}]; "
                "is the conv between them the one the Gather was built with, and the batch the full pass's?"
            )
        return indices


def _first(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)[0] if t.numel() else t.sum()


def _profile_map(x: torch.Tensor, like: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
    """Shape-correct stand-in for a scatter's output that keeps the traced graph connected (adds count 0)."""
    out = torch.zeros(like.shape, dtype=x.dtype, device=x.device) + _first(x)
    return out if residual is None else out + residual


class Scatter(CachedOutput):
    """Scatters the output tiles of the conv fed by ``gather`` into its cached full output.

    ``residual`` (optional, full-map shaped) is added at the written positions; the cached output
    already holds the original residual elsewhere.
    """

    def __init__(self, gather: Gather):
        super().__init__()
        if not isinstance(gather, Gather):
            raise TypeError(f"Scatter pairs with a Gather, got {type(gather).__name__}")
        self.gather = SIGEModuleWrapper(gather)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        self.check_dim(x, residual)
        self.check_dtype(x, residual)
        gather: Gather = self.gather.module
        if self.mode == "full":
            output = x if residual is None else x + residual
            self._store(output)
            gather.output_res = self.output_res
            return output
        base = self._base()
        self._check_tiles(x, gather, base.shape[0])
        if residual is not None and residual.shape != base.shape:
            raise ValueError(
                f"{self._label()}: residual has shape {tuple(residual.shape)}, expected {tuple(base.shape)}"
            )
        if self.mode == "profile":
            return _profile_map(x, base, residual)
        geo = gather.geometry
        writes: list[Write] = [(gather.active_indices, geo.tile_size, geo.offset, geo.conv_stride)]
        slot = self._acquire(base, writes)
        ops.scatter_(slot.buf, x, gather.active_indices, geo.offset, geo.conv_stride, residual)
        self._release(slot, writes)
        return slot.buf


class ScatterWithBlockResidual(CachedOutput):
    """Output scatter of a block whose shortcut is itself sparse (a 1x1 ``nin_shortcut`` on tiles).

    Inside main tiles: ``main + shortcut``; inside shortcut tiles only: ``original main + new shortcut``.
    """

    def __init__(self, main_gather: Gather, shortcut_gather: Gather):
        super().__init__()
        for g in (main_gather, shortcut_gather):
            if not isinstance(g, Gather):
                raise TypeError(f"ScatterWithBlockResidual pairs with Gathers, got {type(g).__name__}")
        self.main_gather = SIGEModuleWrapper(main_gather)
        self.shortcut_gather = SIGEModuleWrapper(shortcut_gather)
        self.original_residuals: dict[Any, torch.Tensor] = {}

    def clear_cache(self) -> None:
        super().clear_cache()
        self.original_residuals.clear()

    def cache_nbytes(self) -> int:
        return super().cache_nbytes() + sum(t.numel() * t.element_size() for t in self.original_residuals.values())

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        self.check_dim(x, residual)
        self.check_dtype(x, residual)
        main: Gather = self.main_gather.module
        short: Gather = self.shortcut_gather.module
        if self.mode == "full":
            output = x + residual
            self._store(output)
            self.original_residuals[self.cache_id] = residual.contiguous()
            main.output_res = short.output_res = self.output_res
            return output
        base = self._base()
        orig_res = self.original_residuals[self.cache_id]
        self._check_tiles(x, main, base.shape[0])
        self._check_tiles(residual, short, base.shape[0], "shortcut tiles")
        if self.mode == "profile":  # the shortcut tiles must stay in the traced graph
            return _profile_map(x + _first(residual), base, None)
        mg, sg = main.geometry, short.geometry
        writes: list[Write] = [
            (main.active_indices, mg.tile_size, mg.offset, mg.conv_stride),
            (short.active_indices, sg.tile_size, sg.offset, sg.conv_stride),
        ]
        slot = self._acquire(base, writes)
        ops.scatter_(slot.buf, x, main.active_indices, mg.offset, mg.conv_stride, orig_res)
        ops.block_residual_(slot.buf, residual, short.active_indices, sg.offset, sg.conv_stride, orig_res)
        if self.sparse_update:
            ops.scatter_(orig_res, residual, short.active_indices, sg.offset, sg.conv_stride)
        self._release(slot, writes)
        return slot.buf
