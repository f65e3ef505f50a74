"""The reusable blocks: full mode equals the plain dense network; sparse equals dense with frozen statistics."""

import torch
import torch.nn.functional as F
from helpers import random_mask
from torch import nn

from sige.mask import dilate_mask, downsample_mask
from sige.nn import SIGEModel
from sige.nn.blocks import Downsample, ResBlock, Upsample


class Tiny(SIGEModel):
    def __init__(self, sparse_mid=True):
        super().__init__()
        self.temb = nn.Linear(4, 8)
        self.b1 = ResBlock(8, 16, temb_channels=8, num_groups=4)
        self.down = Downsample(16)
        self.b2 = ResBlock(16, 16, temb_channels=8, num_groups=4, sparse=sparse_mid)
        self.up = Upsample(16)
        self.b3 = ResBlock(16, 8, temb_channels=8, num_groups=4)

    def forward(self, x, t):
        e = self.temb(t)
        h = self.b1(x, e)
        h = self.b3(self.up(self.b2(self.down(h), e)), e)
        return h


def plain_resblock(b, x, e):
    h = F.conv2d(F.silu(b.norm1(x)), b.conv1.weight, b.conv1.bias, padding=1)
    h = h + b.temb_proj(F.silu(e))[:, :, None, None]
    h = F.conv2d(F.silu(b.norm2(h)), b.conv2.weight, b.conv2.bias, padding=1)
    sc = x if b.nin_shortcut is None else F.conv2d(x, b.nin_shortcut.weight, b.nin_shortcut.bias)
    return h + sc


def plain(model, x, t):
    e = model.temb(t)
    h = plain_resblock(model.b1, x, e)
    h = F.conv2d(F.pad(h, (0, 1, 0, 1)), model.down.conv.weight, model.down.conv.bias, stride=2)
    h = plain_resblock(model.b2, h, e)
    h = F.interpolate(h, scale_factor=2.0, mode="nearest")
    h = F.conv2d(h, model.up.conv.weight, model.up.conv.bias, padding=1)
    return plain_resblock(model.b3, h, e)


def test_full_mode_is_the_plain_network():
    model = Tiny().eval()
    x, t = torch.randn(2, 8, 20, 24), torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), plain(model, x, t), atol=1e-5, rtol=1e-5)


def test_sparse_equals_dense_with_frozen_statistics_for_a_full_mask():
    """With every block active, sparse mode computes the dense network with the original's statistics."""
    model = Tiny().eval()
    x0, t = torch.randn(1, 8, 20, 24), torch.randn(1, 4)
    x1 = x0 + 0.1 * torch.randn_like(x0)
    with torch.no_grad():
        model(x0, t)
        ref_model = Tiny().eval()
        ref_model.load_state_dict(model.state_dict())
        model.set_masks(downsample_mask(torch.ones(20, 24, dtype=torch.bool), min_res=4))
        model.set_mode("sparse")
        out = model(x1, t)
        # dense with frozen stats: set every GroupNorm to the frozen affine by running the sparse-mode dense path
        for name in ("b1", "b2", "b3", "down", "up"):
            getattr(ref_model, name).sparse = False
        ref_model(x0, t)
        ref_model.set_mode("sparse")
        ref = ref_model(x1, t)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_sparse_is_exact_with_a_dilated_mask_and_dense_middle():
    model = Tiny(sparse_mid=True).eval()
    gen = torch.Generator().manual_seed(1)
    H, W = 32, 32
    x0, t = torch.randn(1, 8, H, W, generator=gen), torch.randn(1, 4, generator=gen)
    m = random_mask((H, W), "pixel", gen)
    x1 = x0 + torch.randn(1, 8, H, W, generator=gen) * m
    with torch.no_grad():
        model(x0, t)
        ref_model = Tiny().eval()
        ref_model.load_state_dict(model.state_dict())
        for name in ("b1", "b2", "b3", "down", "up"):
            getattr(ref_model, name).sparse = False
        ref_model(x0, t)
        ref_model.set_mode("sparse")
        ref = ref_model(x1, t)
        model.set_masks(downsample_mask(dilate_mask(m, 12), min_res=4, dilation=4))
        model.set_mode("sparse")
        out = model(x1, t)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out, model.b3.scatter.original_outputs[0])
