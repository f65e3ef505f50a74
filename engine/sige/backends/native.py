"""Native backend: the C++/OpenMP (``sige._C``) and CUDA (``sige._C_cuda``) kernels.

Same functions and signatures as :mod:`sige.backends.reference`, whose semantics the kernels
reproduce; this module only adapts arguments (tuples unpacked, activation names mapped to ids,
scale/shift/tiles converted to the map's dtype exactly as the reference converts them) and picks
the extension for the tensors' device. Rare mixed-dtype calls (a residual whose dtype differs
from the output's) go to the reference backend, which defines their type promotion.

The extensions are built by ``pip install --no-build-isolation -e .`` (see setup.py); when they
are missing, :func:`load` returns False and the registry keeps using the reference backend.
"""

from __future__ import annotations

import sys

import torch

from sige.backends import reference

NAME = "native"

# Activation ids of engine/csrc/sige_common.h.
ACT_IDS = {
    "identity": 0,
    "swish": 1,
    "silu": 1,
    "relu": 2,
    "leaky_relu": 3,
    "gelu": 4,
    "tanh": 5,
    "sigmoid": 6,
}

try:
    from sige import _C  # type: ignore[attr-defined]

    IMPORT_ERROR: str | None = None
except Exception as exc:  # missing, or built against another torch
    _C = None
    IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

try:
    from sige import _C_cuda  # type: ignore[attr-defined]

    CUDA_IMPORT_ERROR: str | None = None
except Exception as exc:
    _C_cuda = None
    CUDA_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"


def _lib(t: torch.Tensor):
    lib = _C_cuda if t.device.type == "cuda" else _C if t.device.type == "cpu" else None
    if lib is None:
        raise RuntimeError(f"the native SIGE kernels are not built for {t.device.type!r} tensors")
    return lib


def _as(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``t`` in ``like``'s dtype (the reference converts scale/shift/tiles the same way)."""
    return t if t is None or t.dtype == like.dtype else t.to(like.dtype)


def gather(
    x: torch.Tensor,
    block_size: tuple[int, int],
    indices: torch.Tensor,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    act: str,
    act_first: bool,
) -> torch.Tensor:
    bh, bw = block_size
    return _lib(x).gather(
        x.contiguous(), int(bh), int(bw), indices, _as(scale, x), _as(shift, x), ACT_IDS[act], bool(act_first)
    )


def scatter_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    residual: torch.Tensor | None,
) -> torch.Tensor:
    if residual is not None and residual.dtype != out.dtype:
        return reference.scatter_(out, tiles, indices, offset, stride, residual)
    (oh, ow), (sh, sw) = offset, stride
    _lib(out).scatter_(out, _as(tiles, out), indices, int(oh), int(ow), int(sh), int(sw), residual)
    return out


def copy_tiles_(
    dst: torch.Tensor,
    src: torch.Tensor,
    indices: torch.Tensor,
    tile_size: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    (th, tw), (oh, ow), (sh, sw) = tile_size, offset, stride
    _lib(dst).copy_tiles_(dst, src, indices, int(th), int(tw), int(oh), int(ow), int(sh), int(sw))
    return dst


def block_residual_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    original_residual: torch.Tensor,
) -> torch.Tensor:
    if tiles.dtype != out.dtype or original_residual.dtype != out.dtype:
        return reference.block_residual_(out, tiles, indices, offset, stride, original_residual)
    (oh, ow), (sh, sw) = offset, stride
    target = out if out.is_contiguous() else out.contiguous()
    _lib(out).block_residual_(target, tiles, indices, int(oh), int(ow), int(sh), int(sw), original_residual)
    if target is not out:
        out.copy_(target)
    return out


def get_scatter_map(
    H: int,
    W: int,
    block_size: tuple[int, int],
    kernel_size: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
    indices: torch.Tensor,
) -> torch.Tensor:
    (bh, bw), (kh, kw), (oh, ow), (sh, sw) = block_size, kernel_size, offset, stride
    return _lib(indices).get_scatter_map(
        int(H), int(W), int(bh), int(bw), int(kh), int(kw), int(oh), int(ow), int(sh), int(sw), indices
    )


def scatter_gather(
    tiles: torch.Tensor,
    original: torch.Tensor,
    block_size: tuple[int, int],
    indices: torch.Tensor,
    scatter_map: torch.Tensor,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    act: str,
    act_first: bool,
) -> torch.Tensor:
    bh, bw = block_size
    return _lib(original).scatter_gather(
        _as(tiles, original),
        original.contiguous(),
        int(bh),
        int(bw),
        indices,
        scatter_map,
        _as(scale, original),
        _as(shift, original),
        ACT_IDS[act],
        bool(act_first),
    )


def load() -> bool:
    """Register the native backend for the devices whose extension imported; True if CPU is native."""
    from sige.backends import register_native  # late: sige.backends imports this module

    module = sys.modules[__name__]
    if _C is not None:
        register_native("cpu", module)
    if _C_cuda is not None:
        register_native("cuda", module)
    return _C is not None
