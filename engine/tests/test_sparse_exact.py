"""Sparse == dense where the math says so (property tests against dense computation)."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import ConvModel, ResStack, random_mask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sige.activations import ACTIVATIONS, activation
from sige.mask import dilate_mask

MASK_KINDS = ["empty", "full", "pixel", "border", "corner", "random"]
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run_sparse(model, original, edited, mask, block_grid="trimmed"):
    with torch.no_grad():
        model.set_mode("full")
        cached = model(original).clone()
        model.set_masks({tuple(mask.shape[-2:]): mask}, block_grid=block_grid)
        model.set_mode("sparse")
        return cached, model(edited)


@SETTINGS
@given(
    k_s_p=st.sampled_from([(1, 1, 0), (3, 1, 1), (3, 1, 0), (3, 2, 1), (3, 2, 0), (1, 2, 0), (5, 1, 2)]),
    H=st.integers(5, 23),
    W=st.integers(5, 23),
    batch=st.integers(1, 3),
    block=st.integers(1, 9),
    kind=st.sampled_from(MASK_KINDS),
    grid=st.sampled_from(["trimmed", "original"]),
    seed=st.integers(0, 2**16),
)
def test_single_conv_exact(k_s_p, H, W, batch, block, kind, grid, seed):
    k, s, p = k_s_p
    gen = torch.Generator().manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ConvModel(3, 4, k, s, p, block).eval()
    mask = random_mask((H, W), kind, gen)
    original = torch.randn(batch, 3, H, W, generator=gen)
    edited = original + torch.randn(batch, 3, H, W, generator=gen) * mask
    cached, sparse = run_sparse(model, original, edited, mask, grid)
    dense = F.conv2d(edited, model.conv.weight, model.conv.bias, stride=s, padding=p)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)
    if kind == "empty":
        assert model.gather.active_indices.shape[0] == 0
        assert torch.equal(sparse, cached)


@SETTINGS
@given(
    act=st.sampled_from(ACTIVATIONS),
    act_first=st.booleans(),
    affine=st.sampled_from(["channel", "sample", "pixel", "none"]),
    batch=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_fused_affine_and_activation_exact(act, act_first, affine, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    H, W, C = 13, 11, 3
    model = ConvModel(C, 4, 3, 1, 1, 6, act=act, act_first=act_first).eval()
    shape = {"channel": (1, C, 1, 1), "sample": (batch, C, 1, 1), "pixel": (1, C, H, W)}.get(affine)
    if shape is not None:
        model.scale = torch.rand(shape, generator=gen) + 0.5
        model.shift = torch.randn(shape, generator=gen)
    mask = random_mask((H, W), "random", gen)
    original = torch.randn(batch, C, H, W, generator=gen)
    edited = original + torch.randn(batch, C, H, W, generator=gen) * mask
    _, sparse = run_sparse(model, original, edited, mask)
    h = edited
    if shape is None:
        h = activation(h, act)
    elif act_first:
        h = activation(h, act) * model.scale + model.shift
    else:
        h = activation(h * model.scale + model.shift, act)
    dense = F.conv2d(h, model.conv.weight, model.conv.bias, padding=1)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(
    H=st.integers(8, 30),
    W=st.integers(8, 30),
    batch=st.integers(1, 2),
    kind=st.sampled_from(MASK_KINDS),
    seed=st.integers(0, 2**16),
)
def test_resblock_stack_exact_with_frozen_stats(H, W, batch, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    model = ResStack((4, 8, 8)).eval()
    mask = random_mask((H, W), kind, gen)
    original = torch.randn(batch, 4, H, W, generator=gen)
    edited = original + torch.randn(batch, 4, H, W, generator=gen) * mask
    # Two blocks of two 3x3 convs: receptive field grows 4 px; the first block needs a 1-px dilated mask
    # (see the reasoning in the test docstring of helpers), the second needs 3 px. Use 3 everywhere.
    mask_d = dilate_mask(mask, 3)
    with torch.no_grad():
        model.set_mode("full")
        model(original)
        # reference: dense with the original's frozen statistics, block by block
        ref = edited
        for b in model.blocks:
            ref = b.dense_frozen(ref)
        model.set_masks({(H, W): mask_d})
        model.set_mode("sparse")
        sparse = model(edited)
    torch.testing.assert_close(sparse, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_all_dtypes(dtype):
    gen = torch.Generator().manual_seed(0)
    model = ResStack((4, 8)).eval().to(dtype)
    H = W = 20
    mask = random_mask((H, W), "random", gen)
    original = torch.randn(2, 4, H, W, generator=gen).to(dtype)
    edited = original + (torch.randn(2, 4, H, W, generator=gen) * mask).to(dtype)
    with torch.no_grad():
        model.set_mode("full")
        model(original)
        ref = model.blocks[0].dense_frozen(edited)
        model.set_masks({(H, W): dilate_mask(mask, 1)})
        model.set_mode("sparse")
        sparse = model(edited)
    assert sparse.dtype == dtype
    tol = {torch.float32: 2e-5, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(sparse.float(), ref.float(), atol=tol, rtol=tol)


def test_repeated_sparse_passes_with_changing_masks_restore_the_buffer():
    """The in-place working buffer must equal 'cached original + this pass's tiles' on every call."""
    gen = torch.Generator().manual_seed(3)
    model = ConvModel(3, 4, 3, 1, 1, 6).eval()
    H = W = 24
    original = torch.randn(1, 3, H, W, generator=gen)
    with torch.no_grad():
        model.set_mode("full")
        cached = model(original).clone()
        for kind in ["random", "border", "pixel", "empty", "random", "full", "pixel"]:
            mask = random_mask((H, W), kind, gen)
            edited = original + torch.randn(1, 3, H, W, generator=gen) * mask
            model.set_masks({(H, W): mask})
            model.set_mode("sparse")
            out = model(edited).clone()
            out2 = model(edited)  # same mask twice: no restore needed, same result
            dense = F.conv2d(edited, model.conv.weight, model.conv.bias, padding=1)
            torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out2, dense, atol=1e-5, rtol=1e-5)
            model.set_mode("full")
        assert torch.equal(model.scatter.original_outputs[0], cached)  # the cache itself is untouched


def test_sparse_update_rebases_the_cache():
    gen = torch.Generator().manual_seed(4)
    model = ResStack((4, 8)).eval()
    H = W = 16
    x0 = torch.randn(1, 4, H, W, generator=gen)
    mask = random_mask((H, W), "pixel", gen)
    x1 = x0 + torch.randn(1, 4, H, W, generator=gen) * mask
    with torch.no_grad():
        model.set_mode("full")
        model(x0)
        model.set_masks({(H, W): dilate_mask(mask, 2)})
        model.set_mode("sparse")
        model.set_sparse_update(True)
        y1 = model(x1).clone()
        model.set_sparse_update(False)
        # With the cache re-based on x1, an empty edit of x1 returns y1 unchanged.
        model.set_masks({(H, W): torch.zeros(H, W, dtype=torch.bool)})
        assert torch.equal(model(x1), y1)


def test_cache_ids_keep_separate_slots():
    gen = torch.Generator().manual_seed(5)
    model = ConvModel(3, 4, 3, 1, 1, 6).eval()
    H = W = 12
    xs = [torch.randn(1, 3, H, W, generator=gen) for _ in range(3)]
    mask = random_mask((H, W), "pixel", gen)
    with torch.no_grad():
        model.set_mode("full")
        for i, x in enumerate(xs):
            model.set_cache_id(i)
            model(x)
        model.set_masks({(H, W): mask})
        model.set_mode("sparse")
        for i, x in enumerate(xs):
            model.set_cache_id(i)
            edited = x + mask * 1.0
            dense = F.conv2d(edited, model.conv.weight, model.conv.bias, padding=1)
            torch.testing.assert_close(model(edited), dense, atol=1e-5, rtol=1e-5)
    assert model.cache_nbytes() > 0
    model.clear_cache()
    assert model.cache_nbytes() == 0
