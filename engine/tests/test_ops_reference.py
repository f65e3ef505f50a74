"""The reference backend against literal loop implementations of the documented semantics."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sige import ops
from sige.activations import ACTIVATIONS, activation
from sige.mask import reduce_mask


def loop_gather(x, block, idx, scale, shift, act, act_first):
    B, C, H, W = x.shape
    N = idx.shape[0]
    out = torch.zeros(B * N, C, *block, dtype=x.dtype)
    full = (B, C, H, W)
    sc = None if scale is None else scale.expand(full)
    sh = None if shift is None else shift.expand(full)
    for b in range(B):
        for n in range(N):
            for r in range(block[0]):
                for s in range(block[1]):
                    h, w = int(idx[n, 0]) + r, int(idx[n, 1]) + s
                    if 0 <= h < H and 0 <= w < W:
                        z = x[b, :, h, w]
                        if act_first:
                            z = activation(z, act)
                        if sc is not None:
                            z = z * sc[b, :, h, w]
                        if sh is not None:
                            z = z + sh[b, :, h, w]
                        if not act_first:
                            z = activation(z, act)
                        out[b * N + n, :, r, s] = z
    return out


def loop_scatter(base, tiles, idx, offset, stride, residual):
    out = base.clone()
    B, C, H, W = out.shape
    N = idx.shape[0]
    th, tw = tiles.shape[-2:]
    for b in range(B):
        for n in range(N):
            for r in range(th):
                for s in range(tw):
                    h = (offset[0] + int(idx[n, 0])) // stride[0] + r
                    w = (offset[1] + int(idx[n, 1])) // stride[1] + s
                    if h < H and w < W:
                        v = tiles[b * N + n, :, r, s]
                        out[b, :, h, w] = v if residual is None else v + residual[b, :, h, w]
    return out


@settings(max_examples=30, deadline=None)
@given(
    H=st.integers(3, 12),
    W=st.integers(3, 12),
    B=st.integers(1, 3),
    block=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    stride=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    act=st.sampled_from(ACTIVATIONS),
    act_first=st.booleans(),
    affine=st.sampled_from([None, "channel", "sample", "pixel"]),
    seed=st.integers(0, 1000),
)
def test_gather_matches_loops(H, W, B, block, stride, pad, act, act_first, affine, seed):
    g = torch.Generator().manual_seed(seed)
    C = 2
    x = torch.randn(B, C, H, W, generator=g)
    idx = reduce_mask(torch.rand(H, W, generator=g) < 0.3, block, stride, pad, block_grid="original")
    shape = {"channel": (1, C, 1, 1), "sample": (B, C, 1, 1), "pixel": (B, C, H, W)}.get(affine)
    scale = None if shape is None else torch.randn(shape, generator=g)
    shift = None if shape is None else torch.randn(shape, generator=g)
    got = ops.gather(x, block, idx, scale, shift, act, act_first)
    torch.testing.assert_close(got, loop_gather(x, block, idx, scale, shift, act, act_first))


@settings(max_examples=30, deadline=None)
@given(
    H=st.integers(3, 12),
    W=st.integers(3, 12),
    B=st.integers(1, 3),
    k=st.sampled_from([1, 3]),
    s=st.sampled_from([1, 2]),
    n=st.integers(0, 3),
    residual=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_scatter_and_scatter_gather_match_loops(H, W, B, k, s, n, residual, seed):
    g = torch.Generator().manual_seed(seed)
    C = 2
    p = k // 2
    block = (n * s + k,) * 2
    bstride = ((n + 1) * s,) * 2
    tile = (n + 1, n + 1)
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    idx = reduce_mask(torch.rand(H, W, generator=g) < 0.3, block, bstride, p, conv_stride=s, out_size=(Ho, Wo))
    base = torch.randn(B, C, Ho, Wo, generator=g)
    tiles = torch.randn(B * idx.shape[0], C, *tile, generator=g)
    res = torch.randn(B, C, Ho, Wo, generator=g) if residual else None
    expected = loop_scatter(base, tiles, idx, (p, p), (s, s), res)
    torch.testing.assert_close(ops.scatter(base, tiles, idx, (p, p), (s, s), res), expected)
    buf = base.clone()
    ops.scatter_(buf, tiles, idx, (p, p), (s, s), res)
    torch.testing.assert_close(buf, expected)
    ops.copy_tiles_(buf, base, idx, tile, (p, p), (s, s))
    torch.testing.assert_close(buf, base)
    if s == 1:  # scatter_gather: same geometry for producer and consumer
        smap = ops.get_scatter_map(Ho, Wo, block, (k, k), (p, p), (s, s), idx)
        scale = torch.rand(1, C, 1, 1, generator=g)
        got = ops.scatter_gather(tiles, base, block, idx, smap, scale, None, "swish")
        want = loop_gather(
            loop_scatter(base, tiles, idx, (p, p), (1, 1), None), block, idx, scale, None, "swish", False
        )
        torch.testing.assert_close(got, want)


def test_block_residual_semantics():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 3, 8, 8, generator=g)
    orig_res = torch.randn(2, 3, 8, 8, generator=g)
    idx = torch.tensor([[0, 4], [4, 0]], dtype=torch.int32)
    tiles = torch.randn(4, 3, 4, 4, generator=g)
    out = base.clone()
    ops.block_residual_(out, tiles, idx, (0, 0), (1, 1), orig_res)
    expected = base.clone()
    for b in range(2):
        for n, (i, j) in enumerate(idx.tolist()):
            expected[b, :, i : i + 4, j : j + 4] += tiles[b * 2 + n] - orig_res[b, :, i : i + 4, j : j + 4]
    torch.testing.assert_close(out, expected)


def test_ops_reject_bad_arguments():
    x = torch.randn(1, 2, 8, 8)
    idx = torch.zeros(1, 2, dtype=torch.int32)
    with pytest.raises(ValueError, match="4-D"):
        ops.gather(x[0], (3, 3), idx)
    with pytest.raises(TypeError, match="dtype"):
        ops.gather(x.double(), (3, 3), idx)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        ops.gather(x, (3, 3), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="broadcast"):
        ops.gather(x, (3, 3), idx, scale=torch.ones(1, 3, 1, 1))
    with pytest.raises(ValueError, match="unknown activation"):
        ops.gather(x, (3, 3), idx, activation="mish")
    with pytest.raises(ValueError, match="active blocks"):
        ops.scatter(x, torch.randn(2, 2, 3, 3), idx, (1, 1), (1, 1))


def test_zero_active_blocks():
    x = torch.randn(2, 3, 8, 8)
    idx = torch.zeros(0, 2, dtype=torch.int32)
    assert ops.gather(x, (6, 6), idx).shape == (0, 3, 6, 6)
    assert torch.equal(ops.scatter(x, torch.zeros(0, 3, 4, 4), idx, (1, 1), (1, 1)), x)
