"""Tiny configurations of the SD / SDXL classes (few channels, small latents) for fast exact tests."""

from __future__ import annotations

import torch

from sdxl.config import unet_config, vae_config
from sige.mask import downsample_mask

# SD 1.x layout: heads by count, transformers at every level but the last, dense middle transformer, bmm.
SD_LIKE = dict(
    model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[1, 2],
    transformer_depth=[1, 1], num_heads=2, context_dim=12, num_groups=4,
)  # fmt: skip
# SDXL layout: heads by width, depth 2 transformers, sparse middle transformer, added conditioning, SDPA.
SDXL_LIKE = dict(
    model_channels=16, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[2],
    transformer_depth=[0, 2], num_heads=None, num_head_channels=8, context_dim=12, adm_in_channels=10,
    num_groups=4, sparse_middle_transformer=True, self_attn_impl="sdpa", cross_attn_impl="sdpa",
    cross_attn_sparse_impl="bmm",
)  # fmt: skip
VAE_LIKE = dict(ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, num_groups=4)


def sd_like(**kw):
    return unet_config({**SD_LIKE, **kw})


def sdxl_like(**kw):
    return unet_config({**SDXL_LIKE, **kw})


def vae_like(**kw):
    return vae_config({**VAE_LIKE, **kw})


def unet_inputs(cfg, B=2, h=16, w=24, L=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, cfg.in_channels, h, w, generator=g)
    t = torch.tensor([37.0, 801.0][:B] + [500.0] * max(0, B - 2))
    ctx = torch.randn(B, L, cfg.context_dim, generator=g)
    y = torch.randn(B, cfg.adm_in_channels, generator=g) if cfg.adm_in_channels else None
    return x, t, ctx, y


def box_mask(h, w, top, left, bh, bw):
    m = torch.zeros(h, w, dtype=torch.bool)
    m[top : top + bh, left : left + bw] = True
    return m


def pyramid(mask, min_res=2):
    return downsample_mask(mask, min_res=min_res, dilation=1)


def model_cfg(name: str) -> dict:
    """A model config as scripts/run.py composes it (sampler included)."""
    from sigebench.config import plain
    from sigebench.jobs import compose_job

    return plain(compose_job([f"model={name}"]))["model"]


def edit_cfg(name: str) -> dict:
    from sigebench.config import plain
    from sigebench.jobs import compose_job

    return plain(compose_job(["model=sd14", f"edit={name}"]))["edit"]
