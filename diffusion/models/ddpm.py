"""The DDPM UNet (ermongroup/ddim layout; LSUN Church 256: ch 128, mult 1,1,2,2,4,4, 2 res blocks, attention at
16), written once for full, sparse and profile mode.

Sparse placement follows the SIGE port: ResBlocks and down-samplers of every level whose (nominal)
resolution is >= ``sparse_resolution_threshold`` (64) are sparse; every up-sampler conv is sparse; the
other ResBlocks, every attention block and the middle are dense and use the GroupNorm statistics frozen
in the full pass (per ``cache_id``, time embedding folded in). ``conv_in``, ``norm_out`` and ``conv_out``
are plain dense layers.

The module names are those of the original (unfused) checkpoint: ``temb.dense.{0,1}``, ``conv_in``,
``down.{i}.block.{j}.{norm1,conv1,temb_proj,norm2,conv2,nin_shortcut}``, ``down.{i}.attn.{j}``,
``down.{i}.downsample.conv``, ``mid.{block_1,attn_1,block_2}``, ``up.{i}.{block,attn,upsample}``,
``norm_out``, ``conv_out``; attention uses the fused ``qkv`` conv. :mod:`diffusion.checkpoints` maps
both released layouts onto it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from diffusion.models.common import (
    AttnBlock,
    PyramidUNet,
    check_input_size,
    check_timesteps,
    same_conditioning,
    timestep_embedding,
)
from sige.nn.blocks import Downsample, ResBlock, Upsample, swish


def stride2_block(block_size: int) -> int:
    """The input block a 3x3 stride-2 conv really uses for a requested size (6 -> 5, as in the original)."""
    return block_size - (block_size - 3) % 2


class DDPMUNet(PyramidUNet):
    """Noise-prediction UNet ``eps = model(x, t)`` with ``x: [B, in_ch, H, W]`` and ``t: [B]`` (or a scalar).

    ``resolution`` is the nominal image size that decides which levels are sparse; any input whose
    sides are multiples of ``2 ** (len(ch_mult) - 1)`` runs (non-square included).
    """

    def __init__(
        self,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        in_ch: int = 3,
        out_ch: int = 3,
        resolution: int = 256,
        dropout: float = 0.0,
        sparse_resolution_threshold: int | None = 64,
        sparse_upsample: bool = True,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
        num_groups: int = 32,
    ):
        super().__init__()
        self.config = dict(
            ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, attn_resolutions=list(attn_resolutions),
            in_ch=in_ch, out_ch=out_ch, resolution=resolution, dropout=dropout,
            sparse_resolution_threshold=sparse_resolution_threshold, sparse_upsample=sparse_upsample,
            main_block_size=main_block_size, shortcut_block_size=shortcut_block_size, num_groups=num_groups,
        )  # fmt: skip
        self.ch, self.temb_ch, self.in_ch = ch, 4 * ch, in_ch
        self.num_resolutions, self.num_res_blocks, self.resolution = len(ch_mult), num_res_blocks, resolution
        threshold = float("inf") if sparse_resolution_threshold is None else sparse_resolution_threshold

        def res_block(cin: int, cout: int, sparse: bool) -> ResBlock:
            return ResBlock(cin, cout, self.temb_ch, num_groups, 1e-6, sparse, main_block_size, shortcut_block_size,
                            dropout)  # fmt: skip

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, self.temb_ch), nn.Linear(self.temb_ch, self.temb_ch)])
        self.conv_in = nn.Conv2d(in_ch, ch, 3, padding=1)

        res = resolution
        in_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            down = nn.Module()
            down.block, down.attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_mult[i], ch * mult
            for _ in range(num_res_blocks):
                down.block.append(res_block(block_in, block_out, res >= threshold))
                block_in = block_out
                if res in attn_resolutions:
                    down.attn.append(AttnBlock(block_in, num_groups=num_groups))
            if i != len(ch_mult) - 1:
                down.downsample = Downsample(
                    block_in, sparse=res >= threshold, block_size=stride2_block(main_block_size)
                )
                res //= 2
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = res_block(block_in, block_in, False)
        self.mid.attn_1 = AttnBlock(block_in, num_groups=num_groups)
        self.mid.block_2 = res_block(block_in, block_in, False)

        ups: list[nn.Module] = []
        for i in reversed(range(len(ch_mult))):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i]
            for j in range(num_res_blocks + 1):
                skip_in = ch * (in_mult[i] if j == num_res_blocks else ch_mult[i])
                up.block.append(res_block(block_in + skip_in, block_out, res >= threshold))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(AttnBlock(block_in, num_groups=num_groups))
            if i != 0:
                up.upsample = Upsample(block_in, sparse=sparse_upsample, block_size=main_block_size)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)

        self.norm_out = nn.GroupNorm(num_groups, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)
        self._timesteps: dict = {}

    def clear_cache(self) -> None:
        super().clear_cache()
        self._timesteps.clear()

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        check_input_size(x, self.num_resolutions, self.in_ch, type(self).__name__)
        t = check_timesteps(t, x.shape[0], x.device)
        if self.mode == "full":
            self._timesteps[self._cache_id()] = t.detach().clone()
            temb = timestep_embedding(t, self.ch).to(x.dtype)
            temb = self.temb.dense[1](swish(self.temb.dense[0](temb)))
        else:  # folded into the frozen statistics of the full pass
            same_conditioning(self._timesteps, self._cache_id(), t, type(self).__name__)
            temb = None

        hs = [self.conv_in(x)]
        for i, down in enumerate(self.down):
            for j, block in enumerate(down.block):
                h = block(hs[-1], temb)
                if len(down.attn):
                    h = down.attn[j](h)
                hs.append(h)
            if i != self.num_resolutions - 1:
                hs.append(down.downsample(hs[-1]))

        h = self.mid.block_1(hs[-1], temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        for i in reversed(range(self.num_resolutions)):
            up = self.up[i]
            for j, block in enumerate(up.block):
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
                if len(up.attn):
                    h = up.attn[j](h)
            if i != 0:
                h = up.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))

    def _cache_id(self) -> object:
        return self.mid.block_1.cache_id
