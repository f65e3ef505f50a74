"""Functional sparse ops: argument checks, then dispatch to the backend for the tensors' device.

Layouts: activations are ``[B, C, H, W]``; active indices are ``int32 [N, 2]`` top-left input
coordinates shared by the whole batch; block (and tile) batches are ``[B*N, C, h, w]``, batch-major
(all N blocks of sample 0 first). ``scale`` / ``shift`` broadcast against the full map:
``[1, C, 1, 1]`` per channel, ``[B, C, 1, 1]`` per sample, ``[1|B, C, H, W]`` per pixel.
"""

from __future__ import annotations

import torch

from sige import backends
from sige.activations import check_activation
from sige.ops import library

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

__all__ = [
    "SUPPORTED_DTYPES",
    "block_residual_",
    "copy_tiles_",
    "gather",
    "get_scatter_map",
    "scatter",
    "scatter_",
    "scatter_gather",
]


def _ints(pair: tuple[int, int]) -> tuple[int, int]:
    return int(pair[0]), int(pair[1])


def _check_act(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype}; supported: float32, float16, bfloat16")


def _check_indices(indices: torch.Tensor, device: torch.device) -> None:
    if not isinstance(indices, torch.Tensor) or indices.dim() != 2 or indices.shape[1] != 2:
        got = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"active indices must be an int tensor [N, 2], got {got}")
    if indices.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"active indices must be int32 or int64, got {indices.dtype}")
    if indices.device != device:
        raise ValueError(f"active indices are on {indices.device} but the activation is on {device}")


def _check_affine(t: torch.Tensor | None, name: str, full: tuple[int, int, int, int], device: torch.device) -> None:
    if t is None:
        return
    _check_act(t, name)
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the activation is on {device}")
    for dim, (a, b) in enumerate(zip(t.shape, full)):
        if a not in (1, b):
            raise ValueError(
                f"{name} of shape {tuple(t.shape)} does not broadcast against the map {full} (dim {dim}); "
                "use [1,C,1,1] per channel, [B,C,1,1] per sample or [1|B,C,H,W] per pixel"
            )


def _check_tiles(tiles: torch.Tensor, B: int, N: int, C: int, name: str = "tiles") -> None:
    _check_act(tiles, name)
    if tiles.shape[0] != B * N or tiles.shape[1] != C:
        raise ValueError(
            f"{name} have shape {tuple(tiles.shape)} but batch {B} x {N} active blocks with {C} channels "
            f"needs [{B * N}, {C}, h, w]; were they produced with the same active indices?"
        )


def _check_scatter_map(smap: torch.Tensor, H: int, W: int, N: int, tile: tuple[int, int], device: torch.device) -> None:
    """Every backend refuses the same maps: wrong shape, dtype or device, or an entry naming a tile
    position that does not exist (the kernels would read out of bounds). On CUDA the range check
    synchronises; the engine's own modules skip it (``check_map=False``) for the maps they build."""
    if not isinstance(smap, torch.Tensor) or tuple(smap.shape) != (H, W, 3):
        got = tuple(smap.shape) if isinstance(smap, torch.Tensor) else type(smap).__name__
        raise ValueError(f"scatter map has shape {got}, expected ({H}, {W}, 3); build it with ops.get_scatter_map")
    if smap.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"scatter map must be int32 or int64, got {smap.dtype}")
    if smap.device != device:
        raise ValueError(f"scatter map is on {smap.device} but the original map is on {device}")
    block, row, col = smap.unbind(-1)
    covered = block >= 0
    bad = (block < -1) | (block >= N) | (covered & ((row < 0) | (row >= tile[0]) | (col < 0) | (col >= tile[1])))
    if bool(bad.any()):
        h, w = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"scatter map entry {tuple(int(v) for v in smap[h, w])} at ({h}, {w}) is out of range for {N} tiles "
            f"of {tile[0]}x{tile[1]}; was the map built for these active indices and this tile size?"
        )


def gather(
    x: torch.Tensor,
    block_size: tuple[int, int],
    indices: torch.Tensor,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    activation: str = "identity",
    activation_first: bool = False,
) -> torch.Tensor:
    """Cut the active ``block_size`` blocks out of ``x`` (zero outside the map), fusing
    ``act(x*scale + shift)`` (or ``act(x)*scale + shift`` with ``activation_first``)."""
    _check_act(x, "x")
    _check_indices(indices, x.device)
    _check_affine(scale, "scale", tuple(x.shape), x.device)
    _check_affine(shift, "shift", tuple(x.shape), x.device)
    check_activation(activation)
    x = x.contiguous()
    bh, bw = (int(v) for v in block_size)
    if torch.compiler.is_compiling():
        return library.gather(x, bh, bw, indices, scale, shift, activation, activation_first)
    return backends.for_device(x.device.type).gather(x, (bh, bw), indices, scale, shift, activation, activation_first)


def scatter_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Write output tiles into ``out`` in place (tile of block ``i`` starts at ``(offset + i) // stride``),
    adding ``residual`` (full-map shaped) at the written positions. Returns ``out``."""
    _check_act(out, "out")
    if not out.is_contiguous():
        raise ValueError("scatter_ writes in place and needs a contiguous output tensor")
    _check_indices(indices, out.device)
    B, C = out.shape[:2]
    _check_tiles(tiles, B, indices.shape[0], C)
    _check_affine(residual, "residual", tuple(out.shape), out.device)
    if torch.compiler.is_compiling():
        library.scatter_(out, tiles.contiguous(), indices, *_ints(offset), *_ints(stride), residual)
        return out
    return backends.for_device(out.device.type).scatter_(
        out, tiles.contiguous(), indices, tuple(offset), tuple(stride), residual
    )


def scatter(
    original: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """Out-of-place :func:`scatter_` (the original engine's semantics: a copy of ``original``)."""
    return scatter_(original.contiguous().clone(), tiles, indices, offset, stride, residual)


def copy_tiles_(
    dst: torch.Tensor,
    src: torch.Tensor,
    indices: torch.Tensor,
    tile_size: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    """Copy the output-tile positions of ``indices`` from ``src`` into ``dst`` (restores a working buffer)."""
    _check_act(dst, "dst")
    if src.shape != dst.shape or src.dtype != dst.dtype or not (src.is_contiguous() and dst.is_contiguous()):
        raise ValueError("copy_tiles_ needs contiguous src and dst of the same shape and dtype")
    _check_indices(indices, dst.device)
    if torch.compiler.is_compiling():
        library.copy_tiles_(dst, src, indices, *_ints(tile_size), *_ints(offset), *_ints(stride))
        return dst
    return backends.for_device(dst.device.type).copy_tiles_(
        dst, src, indices, tuple(tile_size), tuple(offset), tuple(stride)
    )


def block_residual_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    original_residual: torch.Tensor,
) -> torch.Tensor:
    """``out[p] += tile[p] - original_residual[p]`` at the (non-overlapping) shortcut tile positions."""
    _check_act(out, "out")
    _check_indices(indices, out.device)
    _check_tiles(tiles, out.shape[0], indices.shape[0], out.shape[1], "shortcut tiles")
    if original_residual.shape != out.shape:
        raise ValueError(
            f"cached shortcut output has shape {tuple(original_residual.shape)}, expected {tuple(out.shape)}"
        )
    if torch.compiler.is_compiling():
        library.block_residual_(
            out, tiles.contiguous(), indices, *_ints(offset), *_ints(stride), original_residual.contiguous()
        )
        return out
    return backends.for_device(out.device.type).block_residual_(
        out, tiles.contiguous(), indices, tuple(offset), tuple(stride), original_residual.contiguous()
    )


def get_scatter_map(
    H: int,
    W: int,
    block_size: tuple[int, int],
    kernel_size: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
    indices: torch.Tensor,
) -> torch.Tensor:
    """``int32 [H, W, 3]``: for each output pixel, (block, row, col) of the tile that covers it, or -1."""
    if indices.dim() != 2 or indices.shape[1] != 2:
        raise ValueError(f"active indices must be [N, 2], got {tuple(indices.shape)}")
    if torch.compiler.is_compiling():
        return library.get_scatter_map(
            int(H), int(W), *_ints(block_size), *_ints(kernel_size), *_ints(offset), *_ints(stride), indices
        )
    return backends.for_device(indices.device.type).get_scatter_map(
        int(H), int(W), tuple(block_size), tuple(kernel_size), tuple(offset), tuple(stride), indices
    )


def scatter_gather(
    tiles: torch.Tensor,
    original: torch.Tensor,
    block_size: tuple[int, int],
    indices: torch.Tensor,
    scatter_map: torch.Tensor,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    activation: str = "identity",
    activation_first: bool = False,
    *,
    check_map: bool = True,
) -> torch.Tensor:
    """Fused "scatter ``tiles`` into ``original``, then gather blocks" without materialising the map.

    ``check_map=False`` skips the range check of ``scatter_map`` (a device sync on CUDA); only for
    maps that :func:`get_scatter_map` built for these ``indices`` and the tiles' size."""
    _check_act(original, "original")
    _check_indices(indices, original.device)
    B, C, H, W = original.shape
    _check_tiles(tiles, B, indices.shape[0], C)
    if check_map:
        _check_scatter_map(scatter_map, H, W, indices.shape[0], tuple(tiles.shape[-2:]), original.device)
    elif tuple(scatter_map.shape) != (H, W, 3):
        raise ValueError(f"scatter map has shape {tuple(scatter_map.shape)}, expected ({H}, {W}, 3)")
    _check_affine(scale, "scale", (B, C, H, W), original.device)
    _check_affine(shift, "shift", (B, C, H, W), original.device)
    check_activation(activation)
    if torch.compiler.is_compiling():
        return library.scatter_gather(
            tiles.contiguous(), original.contiguous(), *_ints(block_size), indices, scatter_map, scale, shift,
            activation, activation_first,
        )  # fmt: skip
    return backends.for_device(original.device.type).scatter_gather(
        tiles.contiguous(),
        original.contiguous(),
        tuple(block_size),
        indices,
        scatter_map,
        scale,
        shift,
        activation,
        activation_first,
    )
