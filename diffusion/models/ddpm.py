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
``norm_out``, ``conv_out``; attention has ``q``, ``k``, ``v`` convs. :mod:`diffusion.checkpoints` maps
both released layouts onto it.
"""

from __future__ import annotations

from collections.abc import Sequence

from diffusion.models.common import PyramidUNet, attn_block
from sige.nn.blocks import Downsample, ResBlock, Upsample


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
        threshold = float("inf") if sparse_resolution_threshold is None else sparse_resolution_threshold

        def res_block(cin: int, cout: int, sparse: bool) -> ResBlock:
            return ResBlock(cin, cout, 4 * ch, num_groups, 1e-6, sparse, main_block_size, shortcut_block_size, dropout)

        self._build(
            ch, ch_mult, num_res_blocks, attn_resolutions, resolution, 4 * ch, in_ch, out_ch, num_groups,
            block=lambda cin, cout, res: res_block(cin, cout, res >= threshold),
            attn=lambda c: attn_block(c, None, num_groups),
            downsample=lambda c, res: Downsample(c, sparse=res >= threshold, block_size=stride2_block(main_block_size)),
            upsample=lambda cin, cout, res: Upsample(cin, sparse=sparse_upsample, block_size=main_block_size),
            mid_block=lambda cin, cout, res: res_block(cin, cout, False),  # the middle stays dense, as in the port
        )  # fmt: skip
