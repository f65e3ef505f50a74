"""Plain dense re-statements of the original DDPM and PD UNets (the op structure of ermongroup/ddim and the SIGE
port's pd_arch), computed from a model's parameters. Used to check that full mode is exactly the plain network
and that it counts the same MACs (x*sigmoid(x) swish, bmm attention with a scale multiply)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def swish(x):
    return x * torch.sigmoid(x)


def conv(c, x, padding=None):
    return F.conv2d(x, c.weight, c.bias, c.stride, c.padding if padding is None else padding)


def gn(n, x):
    return F.group_norm(x, n.num_groups, n.weight, n.bias, n.eps)


def lin(layer, x):
    return F.linear(x, layer.weight, layer.bias)


def sinusoid(t, dim):
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1))).to(t.device)
    e = t.float()[:, None] * freq[None, :]
    return torch.cat([torch.sin(e), torch.cos(e)], dim=1)


def attn(a, x):
    h = gn(a.norm, x)
    B, C, H, W = x.shape
    heads = a.heads
    d = C // heads
    q = conv(a.q, h).reshape(B * heads, d, H * W).permute(0, 2, 1)
    k = conv(a.k, h).reshape(B * heads, d, H * W)
    v = conv(a.v, h).reshape(B * heads, d, H * W)
    w = F.softmax(torch.bmm(q, k) * (d**-0.5), dim=2).permute(0, 2, 1)
    return x + conv(a.proj_out, torch.bmm(v, w).reshape(B, C, H, W))


def ddpm_forward(m, x, t):
    temb = lin(m.temb.dense[1], swish(lin(m.temb.dense[0], sinusoid(t, m.ch))))

    def res(b, x):
        h = conv(b.conv1, swish(gn(b.norm1, x))) + lin(b.temb_proj, swish(temb))[:, :, None, None]
        h = conv(b.conv2, swish(gn(b.norm2, h)))
        return h + (x if b.nin_shortcut is None else conv(b.nin_shortcut, x))

    hs = [conv(m.conv_in, x)]
    for i, down in enumerate(m.down):
        for j, b in enumerate(down.block):
            h = res(b, hs[-1])
            hs.append(attn(down.attn[j], h) if len(down.attn) else h)
        if i != len(m.down) - 1:
            hs.append(conv(down.downsample.conv, F.pad(hs[-1], (0, 1, 0, 1)), padding=0))
    h = res(m.mid.block_2, attn(m.mid.attn_1, res(m.mid.block_1, hs[-1])))
    for i in reversed(range(len(m.up))):
        up = m.up[i]
        for j, b in enumerate(up.block):
            h = res(b, torch.cat([h, hs.pop()], dim=1))
            if len(up.attn):
                h = attn(up.attn[j], h)
        if i != 0:
            h = conv(up.upsample.conv, F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return conv(m.conv_out, swish(gn(m.norm_out, h)))


def pd_forward(m, z, logsnr):
    inp = torch.arctan(torch.exp(-0.5 * torch.clip(logsnr, -20.0, 20.0))) / (0.5 * math.pi)
    temb = lin(m.temb.dense[1], swish(lin(m.temb.dense[0], sinusoid(inp * 1000, m.ch))))

    def resample(b, x):
        if b.resample == "down":
            return F.avg_pool2d(x, 2)
        if b.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def res(b, x):
        h = conv(b.conv1, resample(b, swish(gn(b.norm1, x))))
        e = lin(b.temb_proj, swish(temb))
        s, sh = e[:, : b.out_channels], e[:, b.out_channels :]
        h = gn(b.norm2, h) * (1 + s[:, :, None, None]) + sh[:, :, None, None]
        h = conv(b.conv2, swish(h))
        x = resample(b, x)
        return h + (x if b.nin_shortcut is None else conv(b.nin_shortcut, x))

    hs = [conv(m.conv_in, z)]
    for i, down in enumerate(m.down):
        for j, b in enumerate(down.block):
            h = res(b, hs[-1])
            hs.append(attn(down.attn[j], h) if len(down.attn) else h)
        if i != len(m.down) - 1:
            hs.append(res(down.downsample, hs[-1]))
    h = res(m.mid.block_2, attn(m.mid.attn_1, res(m.mid.block_1, hs[-1])))
    for i in reversed(range(len(m.up))):
        up = m.up[i]
        for j, b in enumerate(up.block):
            h = res(b, torch.cat([h, hs.pop()], dim=1))
            if len(up.attn):
                h = attn(up.attn[j], h)
        if i != 0:
            h = res(up.upsample, h)
    return conv(m.conv_out, swish(gn(m.norm_out, h)))


class Plain(nn.Module):
    """``Plain(model, ddpm_forward)(x, t)``: the plain network with the model's parameters (for MAC counting)."""

    def __init__(self, model, fn):
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, x, t):
        return self.fn(self.model, x, t)


def tiny_ddpm(**kw):
    from diffusion.models.ddpm import DDPMUNet

    cfg = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32, num_groups=8,
               sparse_resolution_threshold=32)  # fmt: skip
    cfg.update(kw)
    return DDPMUNet(**cfg).eval()


def tiny_pd(**kw):
    from diffusion.models.pd import PDUNet

    cfg = dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), head_dim=8, temb_ch=32, resolution=32,
               num_groups=8, sparse_resolution_threshold=16)  # fmt: skip
    cfg.update(kw)
    return PDUNet(**cfg).eval()
