"""Cases shared by the op-by-op backend tests (test_native_backend.py on the CPU, test_cuda_backend.py
on a GPU): the drawn geometries, masks, fused affines and the tolerances of native against reference."""

from __future__ import annotations

import torch
from helpers import random_mask
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from torch import nn

from sige import backends
from sige.activations import ACTIVATIONS
from sige.geometry import BlockGeometry
from sige.mask import reduce_mask

OPS = ("gather", "scatter_", "copy_tiles_", "block_residual_", "get_scatter_map", "scatter_gather")
MASK_KINDS = ("empty", "full", "pixel", "border", "corner", "random")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
AFFINE = (None, "channel", "sample", "pixel", "scale_only", "shift_only", "mixed")
EXACT_ACTS = ("identity", "relu", "leaky_relu")  # no transcendental: float32 must match bit for bit
GRIDS = ("trimmed", "original")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# NaN, infinities and the values where exp, tanh and erf saturate or the host polynomials switch branch
SPECIAL_VALUES = (float("nan"), float("inf"), -float("inf"), -1e4, -200.0, -88.5, -87.0, -20.0, -3.5, -1e-30, 0.0,
                  1e-30, 0.625, 3.0, 87.5, 200.0, 1e4)  # fmt: skip

geometries = st.sampled_from(
    [(1, 1, 0), (3, 1, 1), (3, 1, 0), (3, 2, 1), (3, 2, 0), (1, 2, 0), (5, 1, 2), (2, 2, 0)]
)  # (kernel, conv stride, padding)


def both(fn, *args, device: str | torch.device = "cpu", **kwargs):
    """fn under the reference backend, then under the native one, on fresh copies of the tensor
    arguments moved to ``device`` (the reference runs on the same device: what dense torch computes there)."""
    results = []
    for name in ("reference", "native"):
        copies = [a.clone().to(device) if isinstance(a, torch.Tensor) else a for a in args]
        with backends.use_backend(name):
            results.append(fn(*copies, **kwargs))
    return results


def assert_match(got: torch.Tensor, want: torch.Tensor, act: str, exact_ok: bool = True) -> None:
    """float32: bit-exact for piecewise-linear activations, else 1e-6 (2e-6 absolute for gelu: torch's own
    CPU gelu is only that accurate near x = -3.5); half/bfloat16: loose. NaN must sit where the reference has it."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    assert got.device == want.device, (got.device, want.device)
    got, want = got.cpu(), want.cpu()
    if got.dtype == torch.float32:
        if exact_ok and act in EXACT_ACTS:
            assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0)), (got - want).abs().max()
            assert torch.equal(got.isnan(), want.isnan())
        else:
            torch.testing.assert_close(got, want, rtol=1e-6, atol=2e-6 if act == "gelu" else 1e-6, equal_nan=True)
    elif got.dtype == torch.float16:  # native rounds once (computes in float), the reference per op
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2, equal_nan=True)
    else:
        torch.testing.assert_close(got.float(), want.float(), rtol=6e-2, atol=6e-2, equal_nan=True)


def check_special_values(device: str | torch.device) -> None:
    """NaN, infinities and saturating inputs through every activation, before or after a scale, in
    gather and in scatter_gather (from the original and from the tiles): native as the reference."""
    from sige import ops

    x = torch.tensor(SPECIAL_VALUES).view(1, 1, 1, -1)
    W = x.shape[-1]
    idx = torch.zeros(1, 2, dtype=torch.int32)
    smap = torch.full((1, W, 3), -1, dtype=torch.int32)
    smap[0, ::2] = torch.stack([torch.zeros(W, dtype=torch.int32), torch.zeros(W, dtype=torch.int32),
                                torch.arange(W, dtype=torch.int32)], -1)[::2]  # fmt: skip
    for act in ACTIVATIONS:
        for act_first in (False, True):
            for scale in (None, torch.full((1, 1, 1, 1), 2.0)):
                want, got = both(ops.gather, x, (1, W), idx, scale, None, act, act_first, device=device)
                assert_match(got, want, act)
                want, got = both(
                    ops.scatter_gather, x.flip(-1), x, (1, W), idx, smap, scale, None, act, act_first, device=device
                )
                assert_match(got, want, act)


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


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """The same values as ``x`` in another memory layout: "contiguous", "transposed" (a non-contiguous
    view) or "channels_last"."""
    if kind == "transposed":
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    return x


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
    grid=st.sampled_from(GRIDS),
)
# ... and, for the gathers, the fused scale/shift/activation in every dtype.
FUSED = dict(
    act=st.sampled_from(ACTIVATIONS),
    act_first=st.booleans(),
    affine=st.sampled_from(AFFINE),
    dtype=st.sampled_from(DTYPES),
)
