"""Tiny GauGAN / GAN Compression configurations and an independent dense reference.

The reference computes the generator straight from a state dict in the *original unfused* key layout
(``spade.pth`` / ``sub_mobile_spade-*.pth``: one ``mlp_shared`` per SPADE norm, GauGAN's separate
``mlp_gamma`` / ``mlp_beta``) with plain functional ops, so a model that loads such a dict must agree
with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gaugan.models import UPSAMPLING, SPADEGenerator, build_generator

TINY = {"crop_size": 64, "aspect_ratio": 1.0}  # latent 1x1, output 64x64
TINY_GAUGAN = {"architecture": "gaugan", "ngf": 4, **TINY}
TINY_GC = {"architecture": "gan_compression", "config_str": "2_2_2_3_2_2_2_2", **TINY}
SUPERNET_EXTRA = 5  # unfused GAN Compression checkpoints keep wider param-free-norm statistics


def tiny(kind: str = "gaugan", **kw) -> SPADEGenerator:
    cfg = dict(TINY_GAUGAN if kind == "gaugan" else TINY_GC)
    cfg.update(kw)
    return build_generator(cfg.pop("architecture"), **cfg).eval()


def random_semantics(model: SPADEGenerator, batch: int = 1, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random label ids (as blobs) one-hot encoded, plus instance edges, at the model's output size."""
    from gaugan.inputs import semantics

    H, W = model.output_size
    coarse = torch.randint(0, 35, (batch, 1, H // 8, W // 8), generator=gen)
    label = F.interpolate(coarse.float(), size=(H, W), mode="nearest").long()[:, 0]
    inst = label * 1000 + (torch.arange(W) // 16)[None, None]
    return semantics(label, inst)


def edit_rect(label_sem: torch.Tensor, rows: slice, cols: slice, cls: int = 26) -> torch.Tensor:
    """Paint a rectangle of the one-hot map with class ``cls`` (instance edge channel untouched)."""
    out = label_sem.clone()
    out[:, :35, rows, cols] = 0
    out[:, cls, rows, cols] = 1
    return out


def full_pyramid(model: SPADEGenerator, batch: int | None = None) -> dict:
    """All-true masks at every resolution from the output down to the latent size."""
    H, W = model.output_size
    masks = {}
    while H >= model.sh and W >= model.sw:
        masks[(H, W)] = torch.ones((H, W) if batch is None else (batch, H, W), dtype=torch.bool)
        H, W = H // 2, W // 2
    return masks


# ------------------------------------------------------------------------------ original-layout state dicts


def original_state_dict(model: SPADEGenerator, gen: torch.Generator, fused: bool = False) -> dict[str, torch.Tensor]:
    """Random weights in the key layout of the released checkpoints (unfused unless ``fused``)."""
    spec = model.spec
    sd: dict[str, torch.Tensor] = {}

    def w(*shape):
        return torch.randn(*shape, generator=gen) * (1.0 / max(1, (shape[1] if len(shape) > 1 else 1) * 3) ** 0.5)

    def conv(key, cin, cout, k, bias=True, groups=1):
        sd[key + ".weight"] = w(cout, cin // groups, k, k)
        if bias:
            sd[key + ".bias"] = torch.randn(cout, generator=gen) * 0.1

    label_nc = spec.label_nc
    conv("fc", label_nc, spec.fc_channels, 3)
    for b in spec.blocks:
        p = b.name + "."
        conv(p + "conv_0", b.in_channels, b.mid_channels, 3)
        conv(p + "conv_1", b.mid_channels, b.out_channels, 3)
        norms = {"0": b.in_channels, "1": b.mid_channels}
        if b.learned_shortcut:
            conv(p + "conv_s", b.in_channels, b.out_channels, 1, bias=False)
            norms["s"] = b.in_channels
        if fused:
            conv(p + "mlp_shared.0", label_nc, b.hidden * len(norms), 3)
        for k, C in norms.items():
            q = f"{p}norm_{k}."
            width = C + (SUPERNET_EXTRA if spec.separable else 0)
            sd[q + "param_free_norm.running_mean"] = torch.randn(width, generator=gen) * 0.2
            sd[q + "param_free_norm.running_var"] = torch.rand(width, generator=gen) + 0.5
            sd[q + "param_free_norm.num_batches_tracked"] = torch.tensor(1000)
            if not fused:
                conv(q + "mlp_shared.0", label_nc, b.hidden, 3)
            if spec.separable:
                for g in ("mlp_gamma", "mlp_beta"):
                    conv(q + g + ".conv.0", b.hidden, b.hidden, 3, groups=b.hidden)
                    conv(q + g + ".conv.2", b.hidden, C, 1)
            elif fused:
                conv(q + "mlp_gamma_beta", b.hidden, 2 * C, 3)
            else:
                conv(q + "mlp_gamma", b.hidden, C, 3)
                conv(q + "mlp_beta", b.hidden, C, 3)
    conv("conv_img", spec.blocks[-1].out_channels, 3, 3)
    sd["conv_img.weight"] *= 0.03  # keep tanh out of saturation, so comparisons mean something
    return sd


def reference_forward(
    sd: dict[str, torch.Tensor],
    model: SPADEGenerator,
    seg: torch.Tensor,
    in_stats: dict | None = None,
    frozen_blocks: set[str] = frozenset(),
) -> torch.Tensor:
    """The dense generator from an *unfused* original-layout state dict.

    InstanceNorm statistics of the separable convs are recorded into ``in_stats`` (when given) and, for
    blocks in ``frozen_blocks``, taken from it instead of being recomputed.
    """
    spec = model.spec

    def c(x, key, padding=0, groups=1):
        return F.conv2d(x, sd[key + ".weight"], sd.get(key + ".bias"), padding=padding, groups=groups)

    def separable(actv, key, block):
        h = c(actv, key + ".conv.0", padding=1, groups=actv.shape[1])
        if block in frozen_blocks:
            mean, rstd = in_stats[key]
        else:
            var, mean = torch.var_mean(h, dim=(2, 3), keepdim=True, unbiased=False)
            rstd = torch.rsqrt(var + 1e-5)
            if in_stats is not None:
                in_stats[key] = (mean, rstd)
        return c((h - mean) * rstd, key + ".conv.2")

    def spade(x, seg, key, block):
        C = x.shape[1]
        rm = sd[key + ".param_free_norm.running_mean"][:C]
        rv = sd[key + ".param_free_norm.running_var"][:C]
        normalized = (x - rm[None, :, None, None]) / torch.sqrt(rv[None, :, None, None] + 1e-5)
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")
        actv = F.relu(c(seg, key + ".mlp_shared.0", padding=1))
        if spec.separable:
            gamma, beta = separable(actv, key + ".mlp_gamma", block), separable(actv, key + ".mlp_beta", block)
        else:
            gamma, beta = c(actv, key + ".mlp_gamma", padding=1), c(actv, key + ".mlp_beta", padding=1)
        return normalized * (1 + gamma) + beta

    x = F.interpolate(seg, size=(model.sh, model.sw), mode="nearest")
    x = c(x, "fc", padding=1)
    for i, b in enumerate(spec.blocks):
        if i > 0 and not (b.name == "G_middle_1" and spec.num_upsampling_layers == "normal"):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        p = b.name
        xs = c(spade(x, seg, p + ".norm_s", p), p + ".conv_s") if b.learned_shortcut else x
        dx = c(F.leaky_relu(spade(x, seg, p + ".norm_0", p), 0.2), p + ".conv_0", padding=1)
        dx = c(F.leaky_relu(spade(dx, seg, p + ".norm_1", p), 0.2), p + ".conv_1", padding=1)
        x = xs + dx
    assert UPSAMPLING[spec.num_upsampling_layers]
    return torch.tanh(c(F.leaky_relu(x, 0.2), "conv_img", padding=1))
