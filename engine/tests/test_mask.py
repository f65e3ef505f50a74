import numpy as np
import pytest
import torch

from sige import mask as M
from sige import utils


def test_difference_mask_shapes_and_channels():
    a = torch.zeros(3, 5, 6)
    b = a.clone()
    b[2, 1, 4] = 0.5  # only one channel differs
    m = M.compute_difference_mask(a, b, eps=0.1)
    assert m.shape == (5, 6) and m.sum() == 1 and m[1, 4]
    assert M.compute_difference_mask(a[0], b[0]).sum() == 0
    assert torch.equal(M.compute_difference_mask(a[None], b[None], eps=0.1), m)
    batch = torch.stack([a, b])
    per_sample = M.compute_difference_mask(batch, torch.stack([b, b]), eps=0.1)
    assert per_sample.shape == (2, 5, 6) and per_sample[0].sum() == 1 and per_sample[1].sum() == 0
    np_mask = M.compute_difference_mask(a.numpy(), b.numpy(), eps=0.1)
    assert torch.equal(np_mask, m)


def test_difference_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        M.compute_difference_mask(torch.zeros(3, 4), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="H,W"):
        M.compute_difference_mask(torch.zeros(4), torch.zeros(4))


def test_dilation_square_and_cross():
    m = torch.zeros(7, 7, dtype=torch.bool)
    m[3, 3] = True
    sq = M.dilate_mask(m, 1)
    assert sq.sum() == 9
    cross = M.dilate_mask(m, 2, shape="cross")
    assert cross.sum() == 9 and cross[1, 3] and cross[3, 5] and not cross[2, 2]
    assert utils.dilate_mask(m, 2).sum() == 9  # original name: original's cross shape
    assert M.dilate_mask(m, (1, 0)).sum() == 3
    assert M.dilate_mask(m, 0) is m
    batch = torch.stack([m, torch.zeros_like(m)])  # 3-D masks work (the original crashed)
    out = M.dilate_mask(batch, 1)
    assert out.shape == (2, 7, 7) and out[0].sum() == 9 and out[1].sum() == 0
    assert isinstance(M.dilate_mask(m.numpy(), 1), np.ndarray)


def test_downsample_pyramid_levels_and_threshold():
    m = torch.zeros(64, 48, dtype=torch.bool)
    m[10, 10] = True  # a single pixel never vanishes
    pyr = M.downsample_mask(m, min_res=4, dilation=0)
    assert list(pyr) == [(64, 48), (32, 24), (16, 12), (8, 6), (4, 3)]
    assert all(v.any() for v in pyr.values())
    assert pyr[(64, 48)].sum() == 1
    # non-square: keep going until both sides are below the minimum
    pyr2 = M.downsample_mask(torch.ones(16, 64, dtype=torch.bool), min_res=8, dilation=0)
    assert (2, 8) in pyr2 and (1, 4) not in pyr2


def test_downsample_matches_bilinear_threshold_rule():
    gen = torch.Generator().manual_seed(1)
    m = torch.rand(32, 32, generator=gen) < 0.1
    pyr = M.downsample_mask(m, min_res=8, dilation=0)
    f = torch.nn.functional.interpolate(m.float()[None, None], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(pyr[(16, 16)], f[0, 0] > min(0.3, f.max().item() - 1e-3))


def test_empty_mask_stays_empty():
    pyr = M.downsample_mask(torch.zeros(32, 32, dtype=torch.bool), min_res=4)
    assert all(not v.any() for v in pyr.values())
    idx = M.reduce_mask(pyr[(32, 32)], 6, 4, 1)
    assert idx.shape == (0, 2) and idx.dtype == torch.int32


def test_per_sample_pyramid():
    m = torch.zeros(2, 16, 16, dtype=torch.bool)
    m[0, 2, 2] = True
    pyr = M.downsample_mask(m, min_res=4, dilation=0)
    assert pyr[(8, 8)].shape == (2, 8, 8) and pyr[(8, 8)][0].any() and not pyr[(8, 8)][1].any()


def test_reduce_mask_blocks_and_trimming():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[7, 7] = True  # bottom-right corner
    trimmed = M.reduce_mask(m, 6, 4, 1)  # 3x3 conv: tiles of 4 -> 2 x 2 candidate blocks
    assert trimmed.tolist() == [[3, 3]]
    original = M.reduce_mask(m, 6, 4, 1, block_grid="original")  # also the out-of-map block row/col
    assert sorted(map(tuple, original.tolist())) == [(3, 3), (3, 7), (7, 3), (7, 7)]
    assert M.reduce_mask(None, 6, 4, 1) is None


def test_reduce_mask_union_for_per_sample_masks():
    m = torch.zeros(2, 8, 8, dtype=torch.bool)
    m[0, 0, 0] = True
    m[1, 7, 7] = True
    assert M.reduce_mask(m, 4, 4, 0).tolist() == [[0, 0], [4, 4]]
