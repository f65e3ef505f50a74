"""The Progressive Distillation UNet (LSUN Church: ch 64, temb 768, 3 res blocks, multi-head attention with
head_dim 64 at 8/16/32, output = x prediction | eps prediction), written once for full, sparse and profile mode.

Its ResBlocks (the engine's, with ``scale_shift_norm`` and ``resample``) use scale-shift normalisation
(``GN(h) * (1 + s) + b`` with ``s, b`` from the time embedding) and do the resampling themselves
(``resample="down"``: 2x2 average pooling, ``"up"``: nearest x2, applied to the block input and to the
normalised activation before ``conv1``). Sparse placement
follows the SIGE port: every ResBlock (resampling ones included) whose input resolution is >=
``sparse_resolution_threshold`` is sparse; attention, the middle and lower levels are dense with
frozen statistics. In a sparse resampling block the norm, swish and resampling run densely and the
main Gather (identity activation) cuts blocks from the resampled map.

Module names follow the original checkpoint (``church128-pd-unet.pth``): ``temb.dense.{0,1}``,
``conv_in``, ``down.{i}.block.{j}``, ``down.{i}.attn.{j}.{norm,q,k,v,proj_out}`` (the checkpoint's fused ``qkv``
is split on loading), ``down.{i}.downsample``,
``mid.{block_1,attn_1,block_2}``, ``up.{i}.{block,attn,upsample}``, ``norm_out``, ``conv_out``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from diffusion.models.common import PyramidUNet, attn_block
from sige.nn.blocks import ResBlock, timestep_embedding


def logsnr_input(logsnr: torch.Tensor) -> torch.Tensor:
    """The ``inv_cos`` conditioning of the PD model: ``atan(exp(-logsnr / 2)) / (pi / 2)`` in [0, 1]."""
    return torch.arctan(torch.exp(-0.5 * torch.clip(logsnr, -20.0, 20.0))) / (0.5 * math.pi)


class PDUNet(PyramidUNet):
    """``out = model(z, logsnr)`` with ``z: [B, in_ch, H, W]`` and ``logsnr: [B]``; ``out[:, :3]`` predicts x,
    ``out[:, 3:]`` predicts eps. ``resolution`` is the nominal size that decides the sparse levels."""

    def __init__(
        self,
        ch: int = 64,
        ch_mult: Sequence[int] = (1, 2, 4, 6, 8),
        num_res_blocks: int = 3,
        attn_resolutions: Sequence[int] = (8, 16, 32),
        head_dim: int = 64,
        temb_ch: int = 768,
        in_ch: int = 3,
        out_ch: int = 6,
        resolution: int = 128,
        dropout: float = 0.0,
        sparse_resolution_threshold: int | None = 64,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
        num_groups: int = 32,
    ):
        super().__init__()
        self.config = dict(
            ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
            head_dim=head_dim, temb_ch=temb_ch, in_ch=in_ch, out_ch=out_ch, resolution=resolution, dropout=dropout,
            sparse_resolution_threshold=sparse_resolution_threshold, main_block_size=main_block_size,
            shortcut_block_size=shortcut_block_size, num_groups=num_groups,
        )  # fmt: skip
        threshold = float("inf") if sparse_resolution_threshold is None else sparse_resolution_threshold

        def block(cin: int, cout: int, res: int, resample: str | None = None) -> ResBlock:
            return ResBlock(cin, cout, temb_ch, num_groups, 1e-6, res >= threshold, main_block_size,
                            shortcut_block_size, dropout, scale_shift_norm=True, resample=resample)  # fmt: skip

        self._build(
            ch, ch_mult, num_res_blocks, attn_resolutions, resolution, temb_ch, in_ch, out_ch, num_groups,
            block=block,
            attn=lambda c: attn_block(c, head_dim, num_groups),
            downsample=lambda c, res: block(c, c, res, "down"),
            upsample=lambda cin, cout, res: block(cin, cout, res, "up"),
        )  # fmt: skip

    def embed(self, logsnr: torch.Tensor) -> torch.Tensor:
        return timestep_embedding(logsnr_input(logsnr) * 1000, self.ch)

    def _resample(self, module: nn.Module, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        return module(h, temb)  # the samplers are ResBlocks
