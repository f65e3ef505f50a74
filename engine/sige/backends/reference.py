"""Reference backend: the sparse ops in plain PyTorch indexing, for any device and dtype.

It is the oracle every native backend is tested against, so clarity beats speed here; index
plans derived from an active-index tensor are memoised on that tensor (indices are immutable
once :func:`sige.mask.reduce_mask` made them).
"""

from __future__ import annotations

import torch

from sige.activations import activation

NAME = "reference"


def _plans(indices: torch.Tensor) -> dict:
    plans = getattr(indices, "_sige_plans", None)
    if plans is None:
        plans = {}
        indices._sige_plans = plans  # type: ignore[attr-defined]
    return plans


def _window(indices: torch.Tensor, block: tuple[int, int], H: int, W: int):
    """Clamped row/col coordinates of every block pixel and the in-bounds mask ``[N, bh, bw]``."""
    key = ("window", block, H, W)
    plans = _plans(indices)
    if key not in plans:
        idx = indices.long()
        rows = idx[:, :1] + torch.arange(block[0], device=idx.device)  # [N, bh]
        cols = idx[:, 1:] + torch.arange(block[1], device=idx.device)  # [N, bw]
        valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
        plans[key] = (rows.clamp(0, H - 1)[:, :, None], cols.clamp(0, W - 1)[:, None, :], valid)
    return plans[key]


def _tile_positions(
    indices: torch.Tensor, tile: tuple[int, int], offset: tuple[int, int], stride: tuple[int, int], H: int, W: int
):
    """For every output-tile pixel inside the ``H x W`` map: its tile element id and its flat position."""
    key = ("tiles", tile, offset, stride, H, W)
    plans = _plans(indices)
    if key not in plans:
        idx = indices.long()
        top = torch.div(idx[:, 0] + offset[0], stride[0], rounding_mode="floor")
        left = torch.div(idx[:, 1] + offset[1], stride[1], rounding_mode="floor")
        rows = top[:, None] + torch.arange(tile[0], device=idx.device)  # [N, th]
        cols = left[:, None] + torch.arange(tile[1], device=idx.device)  # [N, tw]
        valid = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
        flat = rows[:, :, None] * W + cols[:, None, :]
        elem = torch.arange(valid.numel(), device=idx.device).view(valid.shape)
        plans[key] = (elem[valid], flat[valid], rows, cols, valid)
    return plans[key]


def _as_bcl(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, H*W] view (x must be contiguous)."""
    return x.view(x.shape[0], x.shape[1], -1)


def _tiles_bcl(tiles: torch.Tensor, B: int) -> torch.Tensor:
    """[B*N, C, th, tw] -> [B, C, N*th*tw] (tile-major, then row-major inside the tile)."""
    BN, C, th, tw = tiles.shape
    return tiles.view(B, BN // B, C, th * tw).transpose(1, 2).reshape(B, C, -1)


def _affine_act(
    blocks: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    act: str,
    act_first: bool,
    full_shape: tuple[int, int, int, int],
) -> torch.Tensor:
    """Apply broadcast scale/shift and the activation to blocks laid out as [B, C, N, bh, bw]."""

    def at_blocks(t: torch.Tensor) -> torch.Tensor:
        t = t.to(blocks.dtype)
        if t.shape[2] == 1 and t.shape[3] == 1:
            return t.reshape(t.shape[0], t.shape[1], 1, 1, 1)
        return t.expand(full_shape)[:, :, rows, cols]

    if act_first:
        blocks = activation(blocks, act)
    if scale is not None:
        blocks = blocks * at_blocks(scale)
    if shift is not None:
        blocks = blocks + at_blocks(shift)
    if not act_first:
        blocks = activation(blocks, act)
    return blocks


def _finish(blocks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Zero the padding pixels and lay [B, C, N, bh, bw] out as [B*N, C, bh, bw]."""
    blocks = blocks * valid.to(blocks.dtype)  # zero padding is applied after norm and activation
    B, C, N, bh, bw = blocks.shape
    return blocks.permute(0, 2, 1, 3, 4).reshape(B * N, C, bh, bw).contiguous()


def gather(
    x: torch.Tensor,
    block_size: tuple[int, int],
    indices: torch.Tensor,
    scale: torch.Tensor | None,
    shift: torch.Tensor | None,
    act: str,
    act_first: bool,
) -> torch.Tensor:
    B, C, H, W = x.shape
    rows, cols, valid = _window(indices, block_size, H, W)
    blocks = x[:, :, rows, cols]  # [B, C, N, bh, bw]
    blocks = _affine_act(blocks, rows, cols, scale, shift, act, act_first, (B, C, H, W))
    return _finish(blocks, valid)


def scatter_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    residual: torch.Tensor | None,
) -> torch.Tensor:
    B, C, H, W = out.shape
    elem, flat, *_ = _tile_positions(indices, tuple(tiles.shape[-2:]), offset, stride, H, W)
    values = _tiles_bcl(tiles, B)[:, :, elem].to(out.dtype)
    if residual is not None:
        values = values + residual.expand(B, C, H, W).reshape(B, C, -1)[:, :, flat]
    _as_bcl(out)[:, :, flat] = values
    return out


def copy_tiles_(
    dst: torch.Tensor,
    src: torch.Tensor,
    indices: torch.Tensor,
    tile_size: tuple[int, int],
    offset: tuple[int, int],
    stride: tuple[int, int],
) -> torch.Tensor:
    B, C, H, W = dst.shape
    _, flat, *_ = _tile_positions(indices, tile_size, offset, stride, H, W)
    _as_bcl(dst)[:, :, flat] = _as_bcl(src)[:, :, flat]
    return dst


def block_residual_(
    out: torch.Tensor,
    tiles: torch.Tensor,
    indices: torch.Tensor,
    offset: tuple[int, int],
    stride: tuple[int, int],
    original_residual: torch.Tensor,
) -> torch.Tensor:
    B, C, H, W = out.shape
    elem, flat, *_ = _tile_positions(indices, tuple(tiles.shape[-2:]), offset, stride, H, W)
    o = _as_bcl(out)
    o[:, :, flat] = o[:, :, flat] + (_tiles_bcl(tiles, B)[:, :, elem] - _as_bcl(original_residual)[:, :, flat])
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
    tile = ((block_size[0] - kernel_size[0]) // stride[0] + 1, (block_size[1] - kernel_size[1]) // stride[1] + 1)
    elem, flat, *_ = _tile_positions(indices, tile, offset, stride, H, W)
    per_tile = tile[0] * tile[1]
    n = torch.div(elem, per_tile, rounding_mode="floor")
    r = torch.div(elem % per_tile, tile[1], rounding_mode="floor")
    s = elem % tile[1]
    smap = torch.full((H * W, 3), -1, dtype=torch.int32, device=indices.device)
    smap[flat] = torch.stack([n, r, s], dim=1).to(torch.int32)
    return smap.view(H, W, 3)


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
    B, C, H, W = original.shape
    rows, cols, valid = _window(indices, block_size, H, W)
    blocks = original[:, :, rows, cols]  # [B, C, N, bh, bw]
    smap = scatter_map.long()[rows, cols]  # [N, bh, bw, 3]
    from_tile = valid & (smap[..., 0] >= 0)
    th, tw = tiles.shape[-2:]
    src = (smap[..., 0] * th + smap[..., 1]) * tw + smap[..., 2]
    flat_blocks = blocks.reshape(B, C, -1)
    flat_blocks[:, :, from_tile.reshape(-1)] = _tiles_bcl(tiles, B)[:, :, src[from_tile]].to(blocks.dtype)
    blocks = _affine_act(flat_blocks.view_as(blocks), rows, cols, scale, shift, act, act_first, (B, C, H, W))
    return _finish(blocks, valid)
