"""The skeleton both church UNets share (:class:`PyramidUNet`) and its input checks.

The blocks themselves are the engine's (:mod:`sige.nn.blocks`, :mod:`sige.nn.attention`): ResBlocks, the
resamplers, the attention block (dense in every mode here, its GroupNorm statistics frozen per ``cache_id``
in the full pass; the original DDPM port stored them without the cache id, so sparse passes normalised with a
wrong statistic) and the sinusoidal time embedding. MAC counting follows the original models: attention is
counted as ``bmm -> * scale -> softmax -> bmm`` (``impl="bmm"``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from sige.nn import SIGEModel
from sige.nn.attention import AttnBlock
from sige.nn.blocks import swish, timestep_embedding


def attn_block(channels: int, head_dim: int | None, num_groups: int) -> AttnBlock:
    """The dense attention block of the church UNets (``heads = channels // head_dim``; one head by default)."""
    head_dim = head_dim or channels
    if channels % head_dim:
        raise ValueError(f"{channels} channels do not split into heads of {head_dim}")
    return AttnBlock(channels, num_groups, 1e-6, sparse=False, impl="bmm", heads=channels // head_dim)


def check_input_size(x: torch.Tensor, levels: int, in_channels: int, name: str) -> None:
    """Raise a clear error unless ``x`` is ``[B, in_channels, H, W]`` with H, W divisible by 2**(levels-1)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects images [B, {in_channels}, H, W], got shape {tuple(x.shape)}")
    f = 2 ** (levels - 1)
    if x.shape[2] % f or x.shape[3] % f:
        raise ValueError(
            f"{name} has {levels} resolutions, so H and W must be multiples of {f}; got {tuple(x.shape[2:])} "
            f"(resize or crop the image, e.g. to {max(f, x.shape[2] // f * f)}x{max(f, x.shape[3] // f * f)})"
        )


def check_timesteps(t: torch.Tensor | float | int, batch: int, device: torch.device) -> torch.Tensor:
    """Timesteps as a float tensor ``[B]`` (a scalar or a ``[1]`` tensor is broadcast to the batch)."""
    t = torch.as_tensor(t, device=device, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() != 1 or t.shape[0] not in (1, batch):
        raise ValueError(f"timesteps must be a scalar or a [B] tensor with B={batch}, got shape {tuple(t.shape)}")
    return t.expand(batch) if t.shape[0] != batch else t


def same_conditioning(recorded: dict, cache_id: object, t: torch.Tensor, name: str) -> None:
    """In sparse mode the time embedding is folded into frozen statistics: insist on the full pass's t."""
    if torch.jit.is_tracing():
        return
    ref = recorded.get(cache_id)
    if ref is None:
        raise RuntimeError(f"{name}: no full pass recorded for cache_id={cache_id!r}; run one before sparse passes")
    if ref.shape != t.shape or not torch.equal(ref, t.to(ref.device)):
        raise ValueError(
            f"{name}: a sparse pass reuses the time embedding folded into the statistics of the full pass of "
            f"cache_id={cache_id!r} (t={ref.tolist()}), but got t={t.tolist()}; run a full pass with this t first "
            "(or select its cache slot with model.set_cache_id)"
        )


class PyramidUNet(SIGEModel):
    """The skeleton both church UNets share, built once: ``conv_in``, ``num_resolutions`` down levels of
    ``num_res_blocks`` ResBlocks (+ attention at ``attn_resolutions``) and a down-sampler, the middle
    (ResBlock, attention, ResBlock), the up levels with skip connections, ``norm_out`` and ``conv_out``.

    Subclasses choose the pieces (:meth:`_build` takes the factories) and the conditioning
    (:meth:`embed`: timesteps -> the input of ``temb.dense``). In sparse mode the time embedding is folded
    into the frozen statistics, so a sparse pass must use the conditioning of its cache slot's full pass.
    """

    num_resolutions: int
    resolution: int
    ch: int
    in_ch: int

    def min_resolution(self, size: int | tuple[int, int] | None = None) -> int | tuple[int, int]:
        """Smallest feature resolution (the pyramid's ``min_res``) for an image side or ``(H, W)`` size."""
        f = 2 ** (self.num_resolutions - 1)
        if isinstance(size, tuple | list):
            return int(size[0]) // f, int(size[1]) // f
        return (size or self.resolution) // f

    def _build(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        temb_ch: int,
        in_ch: int,
        out_ch: int,
        num_groups: int,
        block: Callable[[int, int, int], nn.Module],
        attn: Callable[[int], nn.Module],
        downsample: Callable[[int, int], nn.Module],
        upsample: Callable[[int, int, int], nn.Module],
        mid_block: Callable[[int, int, int], nn.Module] | None = None,
    ) -> None:
        """Build the modules; the factories get channels and the (nominal) resolution they run at:
        ``block(cin, cout, res)``, ``attn(c)``, ``downsample(c, res)``, ``upsample(cin, cout, res)`` and
        ``mid_block`` (default ``block``) for the two middle ResBlocks."""
        mid_block = mid_block or block
        self.ch, self.temb_ch, self.in_ch = ch, temb_ch, in_ch
        self.num_resolutions, self.num_res_blocks, self.resolution = len(ch_mult), num_res_blocks, resolution
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
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
                down.block.append(block(block_in, block_out, res))
                block_in = block_out
                if res in attn_resolutions:
                    down.attn.append(attn(block_in))
            if i != len(ch_mult) - 1:
                down.downsample = downsample(block_in, res)
                res //= 2
            self.down.append(down)

        self.mid = nn.Module()
        self.mid.block_1 = mid_block(block_in, block_in, res)
        self.mid.attn_1 = attn(block_in)
        self.mid.block_2 = mid_block(block_in, block_in, res)

        ups: list[nn.Module] = []
        for i in reversed(range(len(ch_mult))):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i]
            for j in range(num_res_blocks + 1):
                skip_in = ch * (in_mult[i] if j == num_res_blocks else ch_mult[i])
                up.block.append(block(block_in + skip_in, block_out, res))
                block_in = block_out
                if res in attn_resolutions:
                    up.attn.append(attn(block_in))
            if i != 0:
                up.upsample = upsample(block_in, block_out, res)
                res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)

        self.norm_out = nn.GroupNorm(num_groups, block_in, eps=1e-6)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)
        self._conditioning: dict = {}

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """The sinusoidal input ``[B, ch]`` of ``temb.dense`` for the conditioning ``t``."""
        return timestep_embedding(t, self.ch)

    def clear_cache(self) -> None:
        super().clear_cache()
        self._conditioning.clear()

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        name = type(self).__name__
        check_input_size(x, self.num_resolutions, self.in_ch, name)
        t = check_timesteps(t, x.shape[0], x.device)
        cache_id = self.mid.block_1.cache_id
        if self.mode == "full":
            self._conditioning[cache_id] = t.detach().clone()
            temb = self.embed(t).to(x.dtype)
            temb = self.temb.dense[1](swish(self.temb.dense[0](temb)))
        else:  # folded into the frozen statistics of the full pass
            same_conditioning(self._conditioning, cache_id, t, name)
            temb = None

        hs = [self.conv_in(x)]
        for i, down in enumerate(self.down):
            for j, blk in enumerate(down.block):
                h = blk(hs[-1], temb)
                if len(down.attn):
                    h = down.attn[j](h)
                hs.append(h)
            if i != self.num_resolutions - 1:
                hs.append(self._resample(down.downsample, hs[-1], temb))

        h = self.mid.block_1(hs[-1], temb)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb)

        for i in reversed(range(self.num_resolutions)):
            up = self.up[i]
            for j, blk in enumerate(up.block):
                h = blk(torch.cat([h, hs.pop()], dim=1), temb)
                if len(up.attn):
                    h = up.attn[j](h)
            if i != 0:
                h = self._resample(up.upsample, h, temb)
        return self.conv_out(swish(self.norm_out(h)))

    def _resample(self, module: nn.Module, h: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        """Run a down- or up-sampler (a plain one by default; ResBlock samplers take the embedding)."""
        return module(h)
