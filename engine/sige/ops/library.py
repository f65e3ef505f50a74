"""The sparse ops as PyTorch custom operators (``torch.ops.sige.*``), for ``torch.compile`` and ``torch.export``.

Each operator runs the backend registered for its tensors' device, exactly as the eager functional layer
does, and has a fake (meta) implementation that gives the output's shape from the inputs' shapes, so
the compiler traces through the engine instead of breaking the graph at an opaque extension call. The
in-place ops declare what they mutate and return nothing (a custom op may not return an alias of an
input); :mod:`sige.ops` returns the mutated tensor itself.

Eager calls skip the operator layer (it costs ~10 us of dispatch per call) unless
``torch.compiler.is_compiling()``; the results are identical either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sige import backends

_NS = "sige"


@torch.library.custom_op(f"{_NS}::gather", mutates_args=())
def gather(
    x: Tensor, bh: int, bw: int, indices: Tensor, scale: Tensor | None, shift: Tensor | None, act: str, act_first: bool
) -> Tensor:
    return backends.for_device(x.device.type).gather(x, (bh, bw), indices, scale, shift, act, act_first)


@gather.register_fake
def _(x, bh, bw, indices, scale, shift, act, act_first):
    return x.new_empty((x.shape[0] * indices.shape[0], x.shape[1], bh, bw))


@torch.library.custom_op(f"{_NS}::scatter_", mutates_args=("out",))
def scatter_(
    out: Tensor, tiles: Tensor, indices: Tensor, oh: int, ow: int, sh: int, sw: int, residual: Tensor | None
) -> None:
    backends.for_device(out.device.type).scatter_(out, tiles, indices, (oh, ow), (sh, sw), residual)


@scatter_.register_fake
def _(out, tiles, indices, oh, ow, sh, sw, residual):
    return None


@torch.library.custom_op(f"{_NS}::copy_tiles_", mutates_args=("dst",))
def copy_tiles_(
    dst: Tensor, src: Tensor, indices: Tensor, th: int, tw: int, oh: int, ow: int, sh: int, sw: int
) -> None:
    backends.for_device(dst.device.type).copy_tiles_(dst, src, indices, (th, tw), (oh, ow), (sh, sw))


@copy_tiles_.register_fake
def _(dst, src, indices, th, tw, oh, ow, sh, sw):
    return None


@torch.library.custom_op(f"{_NS}::block_residual_", mutates_args=("out",))
def block_residual_(
    out: Tensor, tiles: Tensor, indices: Tensor, oh: int, ow: int, sh: int, sw: int, original_residual: Tensor
) -> None:
    backends.for_device(out.device.type).block_residual_(out, tiles, indices, (oh, ow), (sh, sw), original_residual)


@block_residual_.register_fake
def _(out, tiles, indices, oh, ow, sh, sw, original_residual):
    return None


@torch.library.custom_op(f"{_NS}::get_scatter_map", mutates_args=())
def get_scatter_map(
    H: int, W: int, bh: int, bw: int, kh: int, kw: int, oh: int, ow: int, sh: int, sw: int, indices: Tensor
) -> Tensor:
    backend = backends.for_device(indices.device.type)
    return backend.get_scatter_map(H, W, (bh, bw), (kh, kw), (oh, ow), (sh, sw), indices)


@get_scatter_map.register_fake
def _(H, W, bh, bw, kh, kw, oh, ow, sh, sw, indices):
    return indices.new_empty((H, W, 3), dtype=torch.int32)


@torch.library.custom_op(f"{_NS}::scatter_gather", mutates_args=())
def scatter_gather(
    tiles: Tensor,
    original: Tensor,
    bh: int,
    bw: int,
    indices: Tensor,
    scatter_map: Tensor,
    scale: Tensor | None,
    shift: Tensor | None,
    act: str,
    act_first: bool,
) -> Tensor:
    backend = backends.for_device(original.device.type)
    return backend.scatter_gather(tiles, original, (bh, bw), indices, scatter_map, scale, shift, act, act_first)


@scatter_gather.register_fake
def _(tiles, original, bh, bw, indices, scatter_map, scale, shift, act, act_first):
    return original.new_empty((original.shape[0] * indices.shape[0], original.shape[1], bh, bw))
