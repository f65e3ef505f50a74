"""Client code written only against the original engine's public API runs unchanged."""

import torch
from torch import nn
from torchprofile import profile_macs

from sige.nn import Gather, Scatter, ScatterGather, ScatterWithBlockResidual, SIGEConv2d, SIGEModel, SIGEModule
from sige.utils import compute_difference_mask, dilate_mask, downsample_mask, reduce_mask


class ExampleModule(SIGEModule):
    def __init__(self):
        super(ExampleModule, self).__init__()  # noqa: UP008 - written as original clients write it
        self.conv = SIGEConv2d(in_channels=16, out_channels=32, kernel_size=3, stride=1, padding=1, bias=True)
        self.gather = Gather(self.conv, block_size=6)
        self.scatter = Scatter(self.gather)

    def forward(self, x):
        x = self.gather(x)
        x = self.conv(x)
        x = self.scatter(x)
        return x


class ExampleModel(SIGEModel):
    def __init__(self):
        super(ExampleModel, self).__init__()  # noqa: UP008
        self.example_module = ExampleModule()

    def forward(self, x: torch.Tensor):
        return self.example_module(x)


class FusedResBlock(SIGEModule):
    """An original-style SIGE ResBlock: per-channel GN scale/shift fused into Gather/ScatterGather."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = SIGEConv2d(cin, cout, 3, padding=1)
        self.conv2 = SIGEConv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = SIGEConv2d(cin, cout, 1)
        self.main_gather = Gather(self.conv1, 6, activation_name="swish")
        self.scatter_gather = ScatterGather(self.main_gather, activation_name="swish")
        self.shortcut_gather = Gather(self.nin_shortcut, 4)
        self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
        self.scale1 = nn.Parameter(torch.rand(1, cin, 1, 1) + 0.5)
        self.shift1 = nn.Parameter(torch.randn(1, cin, 1, 1))
        self.scale2 = nn.Parameter(torch.rand(1, cout, 1, 1) + 0.5)
        self.shift2 = nn.Parameter(torch.randn(1, cout, 1, 1))

    def forward(self, x):
        if self.mode == "full":
            h = self.main_gather(x)
            h = self.conv1(torch.nn.functional.silu(h * self.scale1 + self.shift1))
            h = self.scatter_gather(h)
            h = self.conv2(torch.nn.functional.silu(h * self.scale2 + self.shift2))
            return self.scatter(h, self.nin_shortcut(self.shortcut_gather(x)))
        h = self.conv1(self.main_gather(x, self.scale1, self.shift1))
        h = self.conv2(self.scatter_gather(h, self.scale2, self.shift2))
        return self.scatter(h, self.nin_shortcut(self.shortcut_gather(x)))


class FusedModel(SIGEModel):
    def __init__(self):
        super().__init__()
        self.block = FusedResBlock(8, 16)

    def forward(self, x):
        return self.block(x)


def test_original_style_resblock_with_mask_utilities():
    g = torch.Generator().manual_seed(0)
    H = W = 32
    x0 = torch.randn(1, 8, H, W, generator=g)
    x1 = x0.clone()
    x1[:, :, 10:14, 20:25] += 1.0
    diff = compute_difference_mask(x0, x1)
    masks = downsample_mask(dilate_mask(diff, 2), min_res=8, dilation=1)
    assert set(masks) == {(32, 32), (16, 16), (8, 8)}
    assert reduce_mask(masks[(32, 32)], 6, 4, 1).shape[1] == 2
    model = FusedModel().eval()
    with torch.no_grad():
        model.set_mode("full")
        dense = model(x1).clone()
        model(x0)
        model.set_masks(masks)
        model.set_mode("sparse")
        out = model(x1)
        model.set_mode("profile")
        sparse_macs = profile_macs(model, (x1,))
        model.set_mode("full")
        dense_macs = profile_macs(model, (x1,))
    # scale/shift are fixed per channel, so sparse is exact once the mask covers the 2-conv receptive field
    torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)
    assert 0 < sparse_macs < dense_macs
    assert set(model.state_dict()) == {
        "block.conv1.weight", "block.conv1.bias", "block.conv2.weight", "block.conv2.bias",
        "block.nin_shortcut.weight", "block.nin_shortcut.bias",
        "block.scale1", "block.shift1", "block.scale2", "block.shift2",
    }  # fmt: skip
