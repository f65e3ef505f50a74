"""The CUDA kernels (sige._C_cuda) against the reference backend on the same GPU, op by op.

Skipped without a GPU and the built kernels, except under ``SIGE_REQUIRE_CUDA=1`` (the GPU check,
``engine/tools/gpu_check.py``), where a missing GPU or extension fails every test instead.
"""

from __future__ import annotations

import os

import pytest
import torch
from helpers import ConvModel, random_mask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from op_cases import (
    CASE,
    FUSED,
    OPS,
    affine_tensors,
    assert_match,
    both,
    check_special_values,
    layout,
    make_case,
)

from sige import backends, ops
from sige.backends import native
from sige.mask import dilate_mask, reduce_mask

REQUIRED = os.environ.get("SIGE_REQUIRE_CUDA", "") == "1"
MISSING = (
    f"the CUDA kernels are not built ({native.CUDA_IMPORT_ERROR})"
    if native._C_cuda is None
    else ("no GPU is visible to torch" if not torch.cuda.is_available() else None)
)
if MISSING and not REQUIRED:
    pytest.skip(f"needs the CUDA kernels and a GPU: {MISSING}", allow_module_level=True)

DEV = torch.device("cuda")
# the GPU check (engine/tools/gpu_check.py) asks for more examples than a routine run
PROPERTY = settings(
    max_examples=int(os.environ.get("SIGE_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(autouse=True)
def _cuda_present():
    assert MISSING is None, f"SIGE_REQUIRE_CUDA=1 but {MISSING}"
    yield
    torch.cuda.synchronize()  # an asynchronous kernel fault surfaces in the test that caused it


def test_cuda_backend_is_registered_and_exports_all_ops():
    assert "native" in backends.available()["cuda"]
    with backends.use_backend("native"):
        assert backends.for_device("cuda") is native
    for name in OPS:
        assert callable(getattr(native._C_cuda, name))


@PROPERTY
@given(
    **{**CASE, "C": st.integers(1, 8)},
    **FUSED,
    x_layout=st.sampled_from(["contiguous", "transposed", "channels_last"]),
    noncontig_affine=st.booleans(),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_cuda_matches_reference(
    data, geom, H, W, B, C, block_req, kind, grid, act, act_first, affine, dtype, x_layout, noncontig_affine,
    residual, seed,
):  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    k, s, p = geom
    geo, idx, (Ho, Wo) = make_case(data, k, s, p, H, W, kind, block_req, grid, g)
    x = layout(torch.randn(B, C, H, W, generator=g).to(dtype), x_layout)
    scale, shift = affine_tensors(affine, B, C, H, W, dtype, g, noncontig_affine)
    tiles = torch.randn(B * idx.shape[0], C, *geo.tile_size, generator=g).to(dtype)
    base = torch.randn(B, C, Ho, Wo, generator=g).to(dtype)
    res = layout(torch.randn(B, C, Ho, Wo, generator=g).to(dtype), x_layout) if residual else None
    on = {"device": DEV}

    want, got = both(ops.gather, x, geo.block_size, idx, scale, shift, act, act_first, **on)
    assert_match(got, want, act)
    want, got = both(ops.scatter, base, tiles, idx, geo.offset, geo.conv_stride, res, **on)
    assert torch.equal(got.cpu(), want.cpu())
    orig_res = base.flip(-1).contiguous()
    want, got = both(ops.block_residual_, base, tiles, idx, geo.offset, geo.conv_stride, orig_res, **on)
    assert torch.equal(got.cpu(), want.cpu())
    src = base.flip(-2).contiguous()
    want, got = both(ops.copy_tiles_, base, src, idx, geo.tile_size, geo.offset, geo.conv_stride, **on)
    assert torch.equal(got.cpu(), want.cpu())
    args = (H, W, geo.block_size, geo.kernel_size, geo.offset, geo.conv_stride, idx)
    want_map, got_map = both(ops.get_scatter_map, *args, **on)
    assert got_map.dtype == torch.int32 and torch.equal(got_map.cpu(), want_map.cpu())
    fused = (tiles, x, geo.block_size, idx, want_map.cpu(), scale, shift, act, act_first)
    want, got = both(ops.scatter_gather, *fused, **on)
    assert_match(got, want, act)


def test_special_values_and_saturation():
    check_special_values(DEV)


def test_empty_inputs():
    x = torch.randn(2, 3, 8, 8, device=DEV)
    none = torch.zeros(0, 2, dtype=torch.int32, device=DEV)
    with backends.use_backend("native"):
        assert ops.gather(x, (6, 6), none, torch.ones(1, 3, 1, 1, device=DEV), None, "swish").shape == (0, 3, 6, 6)
        assert torch.equal(ops.scatter(x, torch.zeros(0, 3, 4, 4, device=DEV), none, (1, 1), (1, 1), x), x)
        assert torch.equal(ops.copy_tiles_(x.clone(), x, none, (4, 4), (1, 1), (1, 1)), x)
        assert torch.equal(
            ops.block_residual_(x.clone(), torch.zeros(0, 3, 4, 4, device=DEV), none, (0, 0), (1, 1), x), x
        )
        smap = ops.get_scatter_map(8, 8, (6, 6), (3, 3), (1, 1), (1, 1), none)
        assert smap.shape == (8, 8, 3) and bool((smap == -1).all())
        assert ops.scatter_gather(torch.zeros(0, 3, 4, 4, device=DEV), x, (6, 6), none, smap).shape == (0, 3, 6, 6)
        # empty maps and batches
        one = torch.zeros(1, 2, dtype=torch.int32, device=DEV)
        assert ops.gather(torch.zeros(0, 3, 8, 8, device=DEV), (6, 6), one).shape == (0, 3, 6, 6)
        assert ops.gather(torch.zeros(1, 0, 8, 8, device=DEV), (6, 6), one).shape == (1, 0, 6, 6)
        assert ops.get_scatter_map(0, 0, (6, 6), (3, 3), (1, 1), (1, 1), one).shape == (0, 0, 3)


def test_non_default_stream_is_used():
    """Kernels must run on the current stream: on a side stream they have to wait for the copy queued
    before them there (a kernel on the default stream would read the zeros that precede it)."""
    g = torch.Generator().manual_seed(3)
    src = torch.randn(2, 8, 64, 64, generator=g).to(DEV)
    idx = reduce_mask(torch.rand(64, 64, generator=g) < 0.2, 6, 4, 1).to(DEV)
    smap = ops.get_scatter_map(64, 64, (6, 6), (3, 3), (1, 1), (1, 1), idx)
    tiles = torch.randn(2 * idx.shape[0], 8, 4, 4, generator=g).to(DEV)
    with backends.use_backend("reference"):
        want = (ops.gather(src, (6, 6), idx, None, None, "gelu"), ops.scatter(src, tiles, idx, (1, 1), (1, 1)),
                ops.scatter_gather(tiles, src, (6, 6), idx, smap, None, None, "swish"))  # fmt: skip
    x = torch.zeros_like(src)
    out = torch.zeros_like(src)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side), backends.use_backend("native"):
        torch.cuda._sleep(50_000_000)  # keeps the side stream busy so that a wrong-stream kernel runs first
        x.copy_(src)
        out.copy_(src)
        got = (ops.gather(x, (6, 6), idx, None, None, "gelu"), ops.scatter_(out, tiles, idx, (1, 1), (1, 1)),
               ops.scatter_gather(tiles, x, (6, 6), idx, smap, None, None, "swish"))  # fmt: skip
    side.synchronize()
    for a, b, act in zip(got, want, ("gelu", "identity", "swish")):
        assert_match(a, b, act)


def test_64_bit_index_path():
    """Maps past 2^31 elements switch the kernels to 64-bit offsets: blocks at the far end must land
    where the reference puts them (32-bit offsets would wrap to the start of the map)."""
    free, _ = torch.cuda.mem_get_info()
    need = 20 * 2**30  # the half map (4.3 GB) and its int32 scatter map (12.9 GB)
    assert free > need, (
        f"the 64-bit index check needs {need / 2**30:.0f} GiB of free GPU memory, {free / 2**30:.1f} free"
    )
    B, C, H, W = 1, 2, 32768, 32800  # 2 * 32768 * 32800 > 2^31 elements (4.3 GB in half precision)
    big = torch.zeros(B, C, H, W, dtype=torch.float16, device=DEV)
    idx = torch.tensor([[0, 0], [H - 6, W - 6], [H - 20, W - 40]], dtype=torch.int32, device=DEV)
    far = big[:, :, H - 40 :, W - 60 :]
    far.copy_(torch.randn(far.shape, device=DEV).half())
    with backends.use_backend("native"):
        blocks = ops.gather(big, (6, 6), idx, None, None, "relu")
    torch.testing.assert_close(blocks[1], big[0, :, H - 6 :, W - 6 :].relu())
    torch.testing.assert_close(blocks[2], big[0, :, H - 20 : H - 14, W - 40 : W - 34].relu())
    tiles = torch.randn(3, C, 4, 4, device=DEV).half()
    with backends.use_backend("native"):
        ops.scatter_(big, tiles, idx, (1, 1), (1, 1))
    assert torch.equal(big[0, :, H - 5 : H - 1, W - 5 : W - 1], tiles[1])
    assert torch.equal(big[0, :, H - 19 : H - 15, W - 39 : W - 35], tiles[2])
    smap = None
    with backends.use_backend("native"):
        smap = ops.get_scatter_map(H, W, (6, 6), (3, 3), (1, 1), (1, 1), idx)
        fused = ops.scatter_gather(tiles, big, (6, 6), idx, smap, None, None, "identity", check_map=False)
    assert torch.equal(fused[1, :, 1:5, 1:5], tiles[1])
    del big, smap
    torch.cuda.empty_cache()


@pytest.mark.parametrize("entry", [(5, 0, 0), (0, 4, 0), (0, 0, -1), (-2, 0, 0)], ids=["block", "row", "col", "neg"])
def test_bad_scatter_maps_are_refused_as_on_the_cpu(entry):
    x, tiles = torch.randn(1, 2, 8, 8, device=DEV), torch.zeros(1, 2, 4, 4, device=DEV)
    idx = torch.tensor([[0, 0]], dtype=torch.int32, device=DEV)
    smap = torch.full((8, 8, 3), -1, dtype=torch.int32, device=DEV)
    smap[1, 1] = torch.tensor(entry, dtype=torch.int32)
    for name in ("reference", "native"):
        with backends.use_backend(name), pytest.raises(ValueError, match=r"at \(1, 1\) is out of range"):
            ops.scatter_gather(tiles, x, (6, 6), idx, smap)
    with pytest.raises(ValueError, match="scatter map is on cpu"):
        ops.scatter_gather(tiles, x, (6, 6), idx, smap.cpu())


def test_host_tensors_are_refused_not_read():
    """Direct calls into the extension with host indices raise; CUDA keeps working afterwards."""
    out = torch.zeros(1, 2, 8, 8, device=DEV)
    tiles = torch.ones(1, 2, 4, 4, device=DEV)
    cpu_idx = torch.zeros(1, 2, dtype=torch.int32)
    ext = native._C_cuda
    with pytest.raises(RuntimeError, match="indices are on cpu"):
        ext.scatter_(out, tiles, cpu_idx, 0, 0, 1, 1, None)
    with pytest.raises(RuntimeError, match="indices are on cpu"):
        ext.copy_tiles_(out, out.clone(), cpu_idx, 4, 4, 0, 0, 1, 1)
    with pytest.raises(RuntimeError, match="indices are on cpu"):
        ext.block_residual_(out, tiles, cpu_idx, 0, 0, 1, 1, out.clone())
    with pytest.raises(RuntimeError):
        ext.gather(out, 6, 6, cpu_idx, None, None, 0, False)
    with pytest.raises(ValueError, match="active indices are on cpu"):
        ops.scatter_(out, tiles, cpu_idx, (0, 0), (1, 1))
    torch.cuda.synchronize()
    assert float((out + 1).sum()) == 128.0  # the context survived


def test_dtype_and_device_mismatches_name_the_tensor():
    x = torch.randn(1, 2, 8, 8, device=DEV)
    idx = torch.zeros(1, 2, dtype=torch.int32, device=DEV)
    with pytest.raises(ValueError, match="scale is on cpu"):
        ops.gather(x, (6, 6), idx, torch.ones(1, 2, 1, 1), None)
    out, tiles = x.half(), torch.zeros(1, 2, 4, 4, device=DEV)  # float32 tiles into a half map: converted
    for name in ("reference", "native"):  # a float32 residual into a half map: both refuse
        with backends.use_backend(name), pytest.raises(RuntimeError, match="dtypes match"):
            ops.scatter_(out.clone(), tiles, idx, (1, 1), (1, 1), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sparse_model_matches_dense_on_cuda(dtype):
    """End to end: a conv model in sparse mode on the GPU equals its dense pass where the math says so."""
    g = torch.Generator().manual_seed(4)
    model = ConvModel(4, 6, 3, 1, 1, 6, act="swish").to(DEV, dtype).eval()
    x0 = torch.randn(2, 4, 40, 40, generator=g).to(DEV, dtype)
    x1 = x0.clone()
    mask = random_mask((40, 40), "random", g).to(DEV)
    x1[:, :, mask] += 1
    with torch.no_grad(), backends.use_backend("native"):
        dense = model(x1)
        model(x0)  # the full pass caches the original
        model.set_masks({(40, 40): dilate_mask(mask, 1)})  # the 3x3 conv's receptive field
        model.set_mode("sparse")
        sparse = model(x1)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(sparse, dense, rtol=tol, atol=tol)


def test_custom_operators_on_cuda():
    from sige.ops import library

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 12, 14, generator=g).to(DEV)
    idx = reduce_mask(random_mask((12, 14), "random", g), 6, 4, 1).to(DEV)
    tiles = torch.randn(2 * idx.shape[0], 3, 4, 4, generator=g).to(DEV)
    smap = ops.get_scatter_map(12, 14, (6, 6), (3, 3), (1, 1), (1, 1), idx)
    checks = ("test_schema", "test_faketensor", "test_aot_dispatch_static")
    torch.library.opcheck(library.gather, (x, 6, 6, idx, None, None, "gelu", False), test_utils=checks)
    torch.library.opcheck(library.scatter_, (x.clone(), tiles, idx, 1, 1, 1, 1, None), test_utils=checks)
    torch.library.opcheck(library.scatter_gather, (tiles, x, 6, 6, idx, smap, None, None, "swish", True),
                          test_utils=checks)  # fmt: skip
