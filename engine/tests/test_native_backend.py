"""The native kernels (sige._C, sige._C_cuda) against the reference backend, op by op."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import random_mask
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from sige import backends, ops
from sige.activations import ACTIVATIONS
from sige.backends import native
from sige.geometry import BlockGeometry
from sige.mask import reduce_mask

if native._C is None:
    pytest.skip(
        f"native CPU kernels are not built ({native.IMPORT_ERROR}); run `pip install --no-build-isolation -e .`",
        allow_module_level=True,
    )

OPS = ("gather", "scatter_", "copy_tiles_", "block_residual_", "get_scatter_map", "scatter_gather")
MASK_KINDS = ("empty", "full", "pixel", "border", "corner", "random")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AFFINE = (None, "channel", "sample", "pixel", "scale_only", "shift_only", "mixed")
EXACT_ACTS = ("identity", "relu", "leaky_relu")  # no transcendental: float32 must match bit for bit
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

geometries = st.sampled_from(
    [(1, 1, 0), (3, 1, 1), (3, 1, 0), (3, 2, 1), (3, 2, 0), (1, 2, 0), (5, 1, 2), (2, 2, 0)]
)  # (kernel, conv stride, padding)


def both(fn, *args, **kwargs):
    """fn under the reference backend, then under the native one (fresh argument copies each)."""
    results = []
    for name in ("reference", "native"):
        copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
        with backends.use_backend(name):
            results.append(fn(*copies, **kwargs))
    return results


def assert_match(got: torch.Tensor, want: torch.Tensor, act: str, exact_ok: bool = True) -> None:
    """float32: bit-exact for piecewise-linear activations, else 1e-6 (2e-6 absolute for gelu: torch's own
    CPU gelu is only that accurate near x = -3.5); half/bfloat16: loose."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    if got.dtype == torch.float32:
        if exact_ok and act in EXACT_ACTS:
            assert torch.equal(got, want), (got - want).abs().max()
        else:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=2e-6 if act == "gelu" else 1e-6)
    elif got.dtype == torch.float16:  # native rounds once (computes in float), the reference per op
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)
    else:
        torch.testing.assert_close(got.float(), want.float(), rtol=6e-2, atol=6e-2)


def make_case(data, k, s, p, H, W, kind, block_req, grid, g):
    conv = nn.Conv2d(1, 1, k, stride=s, padding=p)
    geo = BlockGeometry.from_conv(conv, block_req, warn=False)
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    assume(Ho > 0 and Wo > 0)
    mask = random_mask((H, W), kind, g)
    idx = reduce_mask(
        mask, geo.block_size, geo.block_stride, geo.offset, conv_stride=s, out_size=(Ho, Wo), block_grid=grid
    )
    if data.draw(st.booleans(), label="int64 indices"):
        idx = idx.long()
    return geo, idx, (Ho, Wo)


def affine_tensors(kind, B, C, H, W, dtype, g, noncontig=False):
    def t(shape):
        if noncontig and len(shape) == 4 and shape[2] > 1:  # a transposed per-pixel view
            return torch.randn(shape[0], shape[1], shape[3], shape[2], generator=g).to(dtype).transpose(2, 3)
        return torch.randn(shape, generator=g).to(dtype)

    shapes = {"channel": (1, C, 1, 1), "sample": (B, C, 1, 1), "pixel": (B, C, H, W), "per_pixel1": (1, C, H, W)}
    if kind is None:
        return None, None
    if kind == "scale_only":
        return t((1, C, 1, 1)), None
    if kind == "shift_only":
        return None, t((B, C, H, W))
    if kind == "mixed":
        return t((1, C, H, W)), t((B, C, 1, 1))
    return t(shapes[kind]), t(shapes[kind])


# The strategies every op test draws: a conv geometry, a map, a batch and a mask reduced to blocks.
CASE = dict(
    data=st.data(),
    geom=geometries,
    H=st.integers(1, 14),
    W=st.integers(1, 14),
    B=st.integers(1, 3),
    C=st.integers(1, 4),
    block_req=st.integers(1, 7),
    kind=st.sampled_from(MASK_KINDS),
    grid=st.sampled_from(["trimmed", "original"]),
)
# ... and, for the gathers, the fused scale/shift/activation in every dtype.
FUSED = dict(
    act=st.sampled_from(ACTIVATIONS),
    act_first=st.booleans(),
    affine=st.sampled_from(AFFINE),
    dtype=st.sampled_from(DTYPES),
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
    x = torch.tensor([-1e4, -200.0, -88.5, -87.0, -20.0, -1e-30, 0.0, 1e-30, 3.0, 87.5, 200.0, 1e4]).view(1, 1, 1, 12)
    idx = torch.zeros(1, 2, dtype=torch.int32)
    for act in ACTIVATIONS:
        want, got = both(ops.gather, x, (1, 12), idx, None, None, act, False)
        assert_match(got, want, act)
    x = torch.tensor([float("nan"), 1.0]).view(1, 1, 1, 2)
    with backends.use_backend("native"):
        assert torch.isnan(ops.gather(x, (1, 2), idx, None, None, "swish")[0, 0, 0, 0])


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


# --- CUDA -----------------------------------------------------------------------------------------

needs_cuda_ext = pytest.mark.skipif(
    native._C_cuda is None, reason=f"CUDA kernels not built ({native.CUDA_IMPORT_ERROR})"
)
needs_gpu = pytest.mark.skipif(
    native._C_cuda is None or not torch.cuda.is_available(), reason="needs the CUDA kernels and a GPU"
)


@needs_cuda_ext
def test_cuda_extension_exports_all_ops():
    for name in OPS:
        assert callable(getattr(native._C_cuda, name))


@needs_gpu
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    geom=geometries,
    H=st.integers(1, 14),
    W=st.integers(1, 14),
    B=st.integers(1, 3),
    block_req=st.integers(1, 7),
    kind=st.sampled_from(MASK_KINDS),
    act=st.sampled_from(ACTIVATIONS),
    act_first=st.booleans(),
    affine=st.sampled_from(AFFINE),
    dtype=st.sampled_from(DTYPES),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cuda_matches_reference(data, geom, H, W, B, block_req, kind, act, act_first, affine, dtype, residual, seed):
    g = torch.Generator().manual_seed(seed)
    k, s, p = geom
    C = 3
    geo, idx, (Ho, Wo) = make_case(data, k, s, p, H, W, kind, block_req, "original", g)
    dev = torch.device("cuda")
    x = torch.randn(B, C, H, W, generator=g).to(dtype)
    scale, shift = affine_tensors(affine, B, C, H, W, dtype, g)
    tiles = torch.randn(B * idx.shape[0], C, *geo.tile_size, generator=g).to(dtype)
    base = torch.randn(B, C, Ho, Wo, generator=g).to(dtype)
    res = torch.randn(B, C, Ho, Wo, generator=g).to(dtype) if residual else None

    def cu(t):
        return None if t is None else t.to(dev)

    with backends.use_backend("reference"):
        want = [
            ops.gather(x, geo.block_size, idx, scale, shift, act, act_first),
            ops.scatter(base, tiles, idx, geo.offset, geo.conv_stride, res),
            ops.block_residual_(base.clone(), tiles, idx, geo.offset, geo.conv_stride, base.flip(-1).contiguous()),
            ops.get_scatter_map(H, W, geo.block_size, geo.kernel_size, geo.offset, geo.conv_stride, idx),
        ]
        want.append(ops.scatter_gather(tiles, x, geo.block_size, idx, want[3], scale, shift, act, act_first))
        want.append(
            ops.copy_tiles_(base.clone(), base.flip(-2).contiguous(), idx, geo.tile_size, geo.offset, geo.conv_stride)
        )
    with backends.use_backend("native"):
        got = [
            ops.gather(cu(x), geo.block_size, cu(idx), cu(scale), cu(shift), act, act_first),
            ops.scatter(cu(base), cu(tiles), cu(idx), geo.offset, geo.conv_stride, cu(res)),
            ops.block_residual_(
                cu(base), cu(tiles), cu(idx), geo.offset, geo.conv_stride, cu(base.flip(-1).contiguous())
            ),
            ops.get_scatter_map(H, W, geo.block_size, geo.kernel_size, geo.offset, geo.conv_stride, cu(idx)),
        ]
        got.append(
            ops.scatter_gather(cu(tiles), cu(x), geo.block_size, cu(idx), got[3], cu(scale), cu(shift), act, act_first)
        )
        got.append(
            ops.copy_tiles_(
                cu(base), cu(base.flip(-2).contiguous()), cu(idx), geo.tile_size, geo.offset, geo.conv_stride
            )
        )
    assert_match(got[0].cpu(), want[0], act)
    assert torch.equal(got[1].cpu(), want[1])
    assert torch.equal(got[2].cpu(), want[2])
    assert torch.equal(got[3].cpu(), want[3])
    assert_match(got[4].cpu(), want[4], act)
    assert torch.equal(got[5].cpu(), want[5])
