"""Small SIGE models used by the engine tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn import Gather, Scatter, ScatterGather, ScatterWithBlockResidual, SIGEConv2d, SIGEModel, SIGEModule
from sige.nn.norm import group_norm_scale_shift


class ConvModel(SIGEModel):
    """Gather -> conv -> Scatter, optionally with a fused per-channel/per-sample/per-pixel affine + activation."""

    def __init__(self, cin, cout, k, stride, padding, block, act="identity", act_first=False, offset=None):
        super().__init__()
        self.conv = SIGEConv2d(cin, cout, k, stride=stride, padding=padding)
        self.gather = Gather(self.conv, block, offset=offset, activation_name=act, activation_first=act_first)
        self.scatter = Scatter(self.gather)
        self.act, self.act_first = act, act_first
        self.scale = self.shift = None

    def forward(self, x):
        from sige.activations import activation

        if self.mode == "full":
            h = self.gather(x)
            if self.scale is not None:
                h = (
                    activation(h, self.act) * self.scale + self.shift
                    if self.act_first
                    else activation(h * self.scale + self.shift, self.act)
                )
            else:
                h = activation(h, self.act)
            return self.scatter(self.conv(h))
        return self.scatter(self.conv(self.gather(x, self.scale, self.shift)))


class ResBlock(SIGEModule):
    """GroupNorm -> swish -> conv -> GroupNorm -> swish -> conv, plus (1x1) shortcut, with frozen statistics."""

    def __init__(self, cin, cout, groups=4, main_block=6, shortcut_block=4):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(groups, cin), nn.GroupNorm(groups, cout)
        self.conv1 = SIGEConv2d(cin, cout, 3, padding=1)
        self.conv2 = SIGEConv2d(cout, cout, 3, padding=1)
        self.main_gather = Gather(self.conv1, main_block, activation_name="swish")
        self.scatter_gather = ScatterGather(self.main_gather, "swish")
        if cin != cout:
            self.shortcut = SIGEConv2d(cin, cout, 1)
            self.shortcut_gather = Gather(self.shortcut, shortcut_block)
            self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
        else:
            self.shortcut = None
            self.scatter = Scatter(self.main_gather)
        self.stats: dict = {}

    def forward(self, x):
        if self.mode == "full":
            s1 = group_norm_scale_shift(x, self.norm1)
            h = self.conv1(F.silu(self.main_gather(x) * s1[0] + s1[1]))
            h = self.scatter_gather(h)
            s2 = group_norm_scale_shift(h, self.norm2)
            self.stats[self.cache_id] = (s1, s2)
            h = self.conv2(F.silu(h * s2[0] + s2[1]))
            if self.shortcut is None:
                return self.scatter(h, x)
            return self.scatter(h, self.shortcut(self.shortcut_gather(x)))
        (sc1, sh1), (sc2, sh2) = self.stats[self.cache_id]
        h = self.conv1(self.main_gather(x, sc1, sh1))
        h = self.conv2(self.scatter_gather(h, sc2, sh2))
        if self.shortcut is None:
            return self.scatter(h, x)
        return self.scatter(h, self.shortcut(self.shortcut_gather(x)))

    def dense_frozen(self, x, cache_id=0):
        """Dense reference with the original's frozen statistics."""
        (sc1, sh1), (sc2, sh2) = self.stats[cache_id]
        h = F.conv2d(F.silu(x * sc1 + sh1), self.conv1.weight, self.conv1.bias, padding=1)
        h = F.conv2d(F.silu(h * sc2 + sh2), self.conv2.weight, self.conv2.bias, padding=1)
        sc = x if self.shortcut is None else F.conv2d(x, self.shortcut.weight, self.shortcut.bias)
        return h + sc


class ResStack(SIGEModel):
    def __init__(self, channels=(8, 16, 16), groups=4, main_block=6, shortcut_block=4):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(a, b, groups, main_block, shortcut_block) for a, b in zip(channels[:-1], channels[1:])
        )

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


def random_mask(shape, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Masks for property tests: empty, full, single pixel, border-touching, random blobs."""
    H, W = shape
    m = torch.zeros(H, W, dtype=torch.bool)
    if kind == "empty":
        return m
    if kind == "full":
        return ~m
    if kind == "pixel":
        i, j = torch.randint(H, (1,), generator=gen).item(), torch.randint(W, (1,), generator=gen).item()
        m[i, j] = True
        return m
    if kind == "border":
        m[-1, :] = True
        m[:, -1] = True
        return m
    if kind == "corner":
        m[0, 0] = m[-1, -1] = True
        return m
    return torch.rand(H, W, generator=gen) < 0.05


def sparse_conv_case(cin: int = 8, cout: int = 16, size: int = 32, seed: int = 3):
    """A ConvModel (3x3, swish) after its full pass on x0 and set_masks for a random edit, in sparse mode:
    ``(model, x1, dense output of x1)`` (the mask is dilated by the conv's reach, so sparse is exact)."""
    from sige.mask import dilate_mask

    g = torch.Generator().manual_seed(seed)
    model = ConvModel(cin, cout, 3, 1, 1, 6, act="swish").eval()
    x0 = torch.randn(1, cin, size, size, generator=g)
    mask = random_mask((size, size), "random", g)
    x1 = x0 + mask * torch.randn(1, cin, size, size, generator=g)
    with torch.no_grad():
        dense = model(x1)
        model(x0)
        model.set_masks({(size, size): dilate_mask(mask, 1)})
    model.set_mode("sparse")
    return model, x1, dense
