"""The native CPU kernels (sige._C) against the reference backend, op by op (CUDA: test_cuda_backend.py)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from op_cases import (
    CASE,
    DTYPES,
    FUSED,
    OPS,
    SETTINGS,
    affine_tensors,
    assert_match,
    both,
    check_special_values,
    make_case,
)

from sige import backends, ops
from sige.backends import native
from sige.mask import reduce_mask

if native._C is None:
    pytest.skip(
        f"native CPU kernels are not built ({native.IMPORT_ERROR}); run `pip install --no-build-isolation -e .`",
        allow_module_level=True,
    )


def test_registered_and_exports():
    assert backends.available()["cpu"] == ["reference", "native"]
    assert backends.name_for("cpu") in ("native", "reference")
    with backends.use_backend("native"):
        assert backends.for_device("cpu") is native
    for name in OPS:
        assert callable(getattr(native._C, name))
        assert callable(getattr(native, name))


@SETTINGS
@given(
    **CASE,
    **FUSED,
    noncontig=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_gather(data, geom, H, W, B, C, block_req, kind, grid, act, act_first, affine, dtype, noncontig, seed):
    g = torch.Generator().manual_seed(seed)
    k, s, p = geom
    geo, idx, _ = make_case(data, k, s, p, H, W, kind, block_req, grid, g)
    x = torch.randn(B, C, H, W, generator=g).to(dtype)
    if noncontig:
        x = torch.randn(B, C, W, H, generator=g).to(dtype).transpose(2, 3)
    scale, shift = affine_tensors(affine, B, C, H, W, dtype, g, noncontig)
    want, got = both(ops.gather, x, geo.block_size, idx, scale, shift, act, act_first)
    assert_match(got, want, act)


@SETTINGS
@given(
    **CASE,
    residual=st.sampled_from([None, "full", "channel", "sample", "per_pixel1"]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_scatter_copy_and_block_residual(data, geom, H, W, B, C, block_req, kind, grid, residual, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    k, s, p = geom
    geo, idx, (Ho, Wo) = make_case(data, k, s, p, H, W, kind, block_req, grid, g)
    N, tile = idx.shape[0], geo.tile_size
    base = torch.randn(B, C, Ho, Wo, generator=g).to(dtype)
    tiles = torch.randn(B * N, C, *tile, generator=g).to(dtype)
    res_shape = {"full": (B, C, Ho, Wo), "channel": (1, C, 1, 1), "sample": (B, C, 1, 1), "per_pixel1": (1, C, Ho, Wo)}
    res = None if residual is None else torch.randn(res_shape[residual], generator=g).to(dtype)
    # scatter_ is one rounding (tile + residual) in both backends: exact in every dtype.
    want, got = both(ops.scatter_, base, tiles, idx, geo.offset, geo.conv_stride, res)
    assert torch.equal(got, want)
    want, got = both(ops.scatter, base, tiles.float(), idx, geo.offset, geo.conv_stride)  # tiles converted
    assert torch.equal(got, want)
    src = torch.randn(B, C, Ho, Wo, generator=g).to(dtype)
    want, got = both(ops.copy_tiles_, base, src, idx, tile, geo.offset, geo.conv_stride)
    assert torch.equal(got, want)
    orig_res = torch.randn(B, C, Ho, Wo, generator=g).to(dtype)
    want, got = both(ops.block_residual_, base, tiles, idx, geo.offset, geo.conv_stride, orig_res)
    assert torch.equal(got, want)


@SETTINGS
@given(
    **CASE,
    **FUSED,
    seed=st.integers(0, 2**16),
)
def test_scatter_map_and_scatter_gather(
    data, geom, H, W, B, C, block_req, kind, grid, act, act_first, affine, dtype, seed
):
    g = torch.Generator().manual_seed(seed)
    k, s, p = geom
    geo, idx, _ = make_case(data, k, s, p, H, W, kind, block_req, grid, g)
    args = (H, W, geo.block_size, geo.kernel_size, geo.offset, geo.conv_stride, idx)
    want_map, got_map = both(ops.get_scatter_map, *args)
    assert got_map.dtype == torch.int32 and torch.equal(got_map, want_map)
    tiles = torch.randn(B * idx.shape[0], C, *geo.tile_size, generator=g).to(dtype)
    original = torch.randn(B, C, H, W, generator=g).to(dtype)
    scale, shift = affine_tensors(affine, B, C, H, W, dtype, g)
    want, got = both(ops.scatter_gather, tiles, original, geo.block_size, idx, got_map, scale, shift, act, act_first)
    assert_match(got, want, act)


def test_zero_blocks_and_empty_maps():
    x = torch.randn(2, 3, 8, 8)
    idx = torch.zeros(0, 2, dtype=torch.int32)
    with backends.use_backend("native"):
        assert ops.gather(x, (6, 6), idx, torch.ones(1, 3, 1, 1), None, "swish").shape == (0, 3, 6, 6)
        assert torch.equal(ops.scatter(x, torch.zeros(0, 3, 4, 4), idx, (1, 1), (1, 1), x), x)
        assert torch.equal(ops.copy_tiles_(x.clone(), x, idx, (4, 4), (1, 1), (1, 1)), x)
        assert torch.equal(ops.block_residual_(x.clone(), torch.zeros(0, 3, 4, 4), idx, (0, 0), (1, 1), x), x)
        smap = ops.get_scatter_map(8, 8, (6, 6), (3, 3), (1, 1), (1, 1), idx)
        assert smap.shape == (8, 8, 3) and bool((smap == -1).all())
        assert ops.scatter_gather(torch.zeros(0, 3, 4, 4), x, (6, 6), idx, smap).shape == (0, 3, 6, 6)


def test_mixed_dtypes_follow_reference():
    g = torch.Generator().manual_seed(1)
    out = torch.randn(1, 2, 8, 8, generator=g).half()
    idx = torch.tensor([[0, 0], [4, 4]], dtype=torch.int32)
    tiles = torch.randn(2, 2, 4, 4, generator=g)  # float32 tiles into a half map: converted first
    want, got = both(ops.scatter_, out, tiles, idx, (0, 0), (1, 1), out.flip(-1).contiguous())
    assert torch.equal(got, want)
    res = torch.randn(1, 2, 8, 8, generator=g)  # float32 residual into a half map: the reference decides
    for name in ("reference", "native"):
        with backends.use_backend(name), pytest.raises(RuntimeError, match="dtypes match"):
            ops.scatter_(out.clone(), tiles, idx, (0, 0), (1, 1), res)
        with backends.use_backend(name), pytest.raises(RuntimeError, match="dtypes match"):
            ops.block_residual_(out.clone(), tiles, idx, (0, 0), (1, 1), res.half())


def test_thread_count_does_not_change_results_and_bigger_maps_match():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 16, 40, 40, generator=g)
    idx = reduce_mask(torch.rand(40, 40, generator=g) < 0.05, 6, 4, 1)
    scale, shift = torch.rand(1, 16, 1, 1, generator=g), torch.randn(2, 16, 40, 40, generator=g)
    smap = ops.get_scatter_map(40, 40, (6, 6), (3, 3), (1, 1), (1, 1), idx)
    tiles = torch.randn(2 * idx.shape[0], 16, 4, 4, generator=g)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            with backends.use_backend("native"):
                outs.append(
                    (
                        ops.gather(x, (6, 6), idx, scale, shift, "gelu"),
                        ops.scatter_gather(tiles, x, (6, 6), idx, smap, scale, shift, "swish", True),
                        ops.get_scatter_map(40, 40, (6, 6), (3, 3), (1, 1), (1, 1), idx),
                    )
                )
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    with backends.use_backend("reference"):
        want = (
            ops.gather(x, (6, 6), idx, scale, shift, "gelu"),
            ops.scatter_gather(tiles, x, (6, 6), idx, smap, scale, shift, "swish", True),
        )
    for a, b, act in zip(outs[0], want, ("gelu", "swish")):
        assert_match(a, b, act)


def test_special_values_and_saturation():
    check_special_values("cpu")
    nan = torch.tensor([float("nan")]).view(1, 1, 1, 1)
    assert torch.isnan(ops.gather(nan, (1, 1), torch.zeros(1, 2, dtype=torch.int32), None, None, "relu")).all()


def test_missing_native_warns_once(monkeypatch):
    monkeypatch.setattr(backends, "_NATIVE", {})
    monkeypatch.setattr(backends, "_warned_missing", False)
    monkeypatch.delenv("SIGE_BACKEND", raising=False)
    with backends.use_backend("auto"):
        with pytest.warns(RuntimeWarning, match="native kernels are not built"):
            assert backends.for_device("cpu") is backends.reference
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert backends.for_device("cpu") is backends.reference
        with backends.use_backend("native"), pytest.raises(RuntimeError, match="no native backend"):
            backends.for_device("cpu")


def test_bad_scatter_map_is_rejected():
    x = torch.randn(1, 2, 8, 8)
    idx = torch.tensor([[0, 0]], dtype=torch.int32)
    smap = torch.full((8, 8, 3), -1, dtype=torch.int32)
    smap[1, 1] = torch.tensor([5, 0, 0], dtype=torch.int32)  # block 5 does not exist
    with pytest.raises(RuntimeError, match="out of range"):
        native.scatter_gather(torch.zeros(1, 2, 4, 4), x, (6, 6), idx, smap, None, None, "identity", False)


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize(
    "entry", [(5, 0, 0), (0, 4, 0), (0, 0, -1), (-2, 0, 0)], ids=["block", "row", "col", "negative-block"]
)
def test_every_backend_refuses_the_same_scatter_maps(backend, entry):
    # the functional layer checks the whole map, so the backends cannot differ (CUDA once read out of bounds)
    x, tiles = torch.randn(1, 2, 8, 8), torch.zeros(1, 2, 4, 4)
    idx = torch.tensor([[0, 0]], dtype=torch.int32)
    smap = torch.full((8, 8, 3), -1, dtype=torch.int32)
    smap[7, 7] = torch.tensor(entry, dtype=torch.int32)  # outside every block window: the kernel never reads it
    with backends.use_backend(backend), pytest.raises(ValueError, match=r"at \(7, 7\) is out of range for 1 tiles"):
        ops.scatter_gather(tiles, x, (6, 6), idx, smap)
    with backends.use_backend(backend), pytest.raises(TypeError, match="int32 or int64"):
        ops.scatter_gather(tiles, x, (6, 6), idx, smap.float())
    with pytest.raises(ValueError, match="scatter map is on meta"):
        ops.scatter_gather(tiles, x, (6, 6), idx, smap.to("meta"))
    good = ops.get_scatter_map(8, 8, (6, 6), (3, 3), (1, 1), (1, 1), idx)
    with backends.use_backend(backend):
        ops.scatter_gather(tiles[..., :4, :4], x, (6, 6), idx, good)  # what get_scatter_map builds passes
