"""GauGAN (SPADE) and GAN Compression's sub-mobile SPADE generator, each block written once.

One :class:`SPADEGenerator` covers both architectures; they differ only in their channel plan and in
how a SPADE norm turns the block's shared segmentation activation into ``gamma, beta``:

* GauGAN (``spade_generator``): one 3x3 conv ``mlp_gamma_beta`` (gamma and beta concatenated, the
  layout of the released ``fused_spade.pth``);
* GAN Compression (``sub_mobile_generator``): two separable convs ``mlp_gamma`` / ``mlp_beta``
  (depthwise 3x3 -> non-affine InstanceNorm -> 1x1).

Module names follow the original's *fused* checkpoints (``head_0.mlp_shared.0``,
``head_0.norm_0.param_free_norm``, ``head_0.norm_0.mlp_gamma_beta`` / ``mlp_gamma.conv.0`` ...); the
unfused releases are mapped by :mod:`gaugan.checkpoints`.

Modes (see :mod:`sige.nn`): in ``full`` mode a sparse block computes the dense block and caches what its
sparse pass needs (conv outputs, the InstanceNorm statistics of the separable convs). In ``sparse`` /
``profile`` mode a sparse block gathers the active blocks of its input with the param-free BatchNorm
folded into the Gather as an exact per-channel scale/shift (eval BatchNorm uses running statistics),
computes the SPADE modulation, leaky ReLU and both 3x3 convs on the blocks, and scatters the result;
the learned shortcut (1x1) is sparse too and enters through ``ScatterWithBlockResidual``. Blocks that
are not sparse run densely in every mode (exactly the dense block, fresh InstanceNorm statistics
included), so any number of sparse layers works (the original crashes below 4).

Block ``k`` is sparse iff ``num_sparse_layers`` >= its threshold, the number of blocks from ``k`` to the
last one: head_0 7, G_middle_0 6, G_middle_1 5, up_0 4, up_1 3, up_2 2, up_3 1 (one more each with
``num_upsampling_layers="most"``). MAC counts follow the original's counting: BatchNorm without affine
and InstanceNorm count 0, the SPADE multiply, the fused-norm multiply on the blocks and leaky ReLU count
one per element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn import Gather, Scatter, ScatterGather, ScatterWithBlockResidual, SIGEConv2d, SIGEModel, SIGEModule
from sige.nn.blocks import FrozenStats
from sige.nn.norm import batch_norm_scale_shift

LEAKY_SLOPE = 0.2
NUM_CLASSES = 35  # Cityscapes label ids 0..34 (one-hot channels)
UPSAMPLING = {"normal": 5, "more": 6, "most": 7}
DEFAULT_CONFIG_STR = "32_32_32_48_32_24_24_32"


def _tracing() -> bool:
    return torch.jit.is_tracing()


def leaky_relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Leaky ReLU (slope 0.2). In place only outside a JIT trace (the profiler counts ``leaky_relu``)."""
    return F.leaky_relu(x, LEAKY_SLOPE, inplace=inplace and not _tracing())


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="nearest")`` without its copies for integer factors: a strided view when
    shrinking, one expand-and-reshape when growing (the same values: nearest picks ``floor(i * in / out)``)."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    h, w = int(size[0]), int(size[1])
    if (h, w) == (H, W):
        return x
    if H % h == 0 and W % w == 0:
        return x[:, :, :: H // h, :: W // w]
    if h % H == 0 and w % W == 0:
        fh, fw = h // H, w // W
        B, C = int(x.shape[0]), int(x.shape[1])
        return x[:, :, :, None, :, None].expand(B, C, H, fh, W, fw).reshape(B, C, h, w)
    return F.interpolate(x, size=(h, w), mode="nearest")


SMALL_MAP = 128  # pixels: below this a dense 3x3 conv is weight-bound; im2col + one GEMM reads weights once


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys) with faster CPU paths for two shapes this generator has:
    3x3 convs on tiny maps with large weights (im2col + one GEMM) and 3x3 convs to a few output channels
    (one GEMM to 9 partial outputs, then shifted sums). Under a JIT trace (MAC counting) and elsewhere it is
    the plain convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type != "cpu"
            or _tracing()
            or self.kernel_size != (3, 3)
            or self.stride != (1, 1)
            or self.padding != (1, 1)
            or self.dilation != (1, 1)
            or self.groups != 1
            or x.dim() != 4
        ):
            return super().forward(x)
        B, C, H, W = (int(s) for s in x.shape)
        if H * W <= SMALL_MAP:
            cols = F.unfold(x, 3, padding=1)  # [B, C*9, H*W]
            out = torch.matmul(self.weight.reshape(self.out_channels, -1), cols).view(B, -1, H, W)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        if self.out_channels <= 4:
            n_out = self.out_channels
            w = self.weight.permute(2, 3, 0, 1).reshape(9 * n_out, C)
            z = torch.matmul(w, x.reshape(B, C, H * W)).view(B, 3, 3, n_out, H, W)
            z = F.pad(z, (1, 1, 1, 1))
            out = z[:, 0, 0, :, 0:H, 0:W].clone()
            for i in range(3):
                for j in range(3):
                    if i or j:
                        out += z[:, i, j, :, i : i + H, j : j + W]
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        return super().forward(x)


def _conv(sparse: bool, *args, **kwargs) -> nn.Conv2d:
    """A SIGEConv2d (padding dropped on gathered blocks) in sparse blocks, a plain conv elsewhere."""
    return SIGEConv2d(*args, **kwargs) if sparse else Conv2d(*args, **kwargs)


class SeparableConv2d(FrozenStats):
    """GAN Compression's separable conv: depthwise kxk -> InstanceNorm (non-affine) -> 1x1.

    Keys ``conv.0`` / ``conv.2`` as in the released checkpoints (``conv.1`` has no state). In a sparse
    block the InstanceNorm statistics are frozen per ``cache_id`` in the full pass and applied as
    ``x*scale + shift`` on the blocks; elsewhere the norm is computed on the current input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, sparse: bool = False):
        super().__init__()
        self.sparse = sparse
        self.conv = nn.Sequential(
            _conv(sparse, in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels),
            nn.InstanceNorm2d(in_channels, affine=False),
            _conv(sparse, in_channels, out_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv[0](x)
        norm: nn.InstanceNorm2d = self.conv[1]
        if self.sparse and self.mode != "full":
            scale, shift = self.frozen()
            h = h * scale + shift
        else:
            # (h - mean) / std: subtraction and division count no MACs, like the non-affine instance norm
            var, mean = torch.var_mean(h, dim=(2, 3), keepdim=True, unbiased=False)
            std = torch.sqrt(var + norm.eps)
            if self.sparse:  # full pass of a sparse block: freeze the original's statistics
                self.stats[self.cache_id] = (1 / std, -mean / std)
            h = (h - mean) / std
        return self.conv[2](h)


class SPADE(SIGEModule):
    """Param-free BatchNorm (running statistics) modulated by ``(1 + gamma)`` and ``beta``.

    ``separable=False``: ``mlp_gamma_beta`` (3x3, 2C outputs); ``separable=True``: ``mlp_gamma`` and
    ``mlp_beta`` (:class:`SeparableConv2d`). The shared conv lives in the block (``mlp_shared``).
    """

    def __init__(self, channels: int, hidden: int, separable: bool, sparse: bool = False, eps: float = 1e-5):
        super().__init__()
        self.channels = channels
        self.separable = separable
        self.param_free_norm = nn.BatchNorm2d(channels, eps=eps, affine=False)
        self.sparse = sparse
        self.is_shortcut = False
        if separable:
            self.mlp_gamma = SeparableConv2d(hidden, channels, sparse=sparse)
            self.mlp_beta = SeparableConv2d(hidden, channels, sparse=sparse)
        else:
            self.mlp_gamma_beta = _conv(sparse, hidden, 2 * channels, 3, padding=1)
        self._scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None

    def route(self, seg_gather: Gather, shortcut_conv: nn.Conv2d | None = None, shortcut_block_size: int = 4) -> None:
        """Sparse routing of gamma/beta through the block's geometry: a ScatterGather for the 3x3 main path,
        or (shortcut norm) a Scatter to the full map and a Gather at the 1x1 shortcut's blocks."""
        if not self.sparse:
            raise RuntimeError("route() is for SPADE norms of sparse blocks")
        if shortcut_conv is not None:
            self.is_shortcut = True
            self.scatter = Scatter(seg_gather)
            self.gather = Gather(shortcut_conv, shortcut_block_size)
        else:
            self.scatter_gather = ScatterGather(seg_gather)

    # -- normalisation ---------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Dense eval BatchNorm with the running statistics (exactly what the fused scale/shift computes)."""
        n = self.param_free_norm
        return F.batch_norm(x, n.running_mean, n.running_var, None, None, False, 0.0, n.eps)

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[1, C, 1, 1]`` scale/shift of the BatchNorm, computed in the last untraced full pass."""
        if self._scale_shift is None:
            self.refresh_scale_shift()
        return self._scale_shift  # type: ignore[return-value]

    def refresh_scale_shift(self) -> None:
        with torch.no_grad():
            self._scale_shift = batch_norm_scale_shift(self.param_free_norm)

    # -- modulation -------------------------------------------------------------------------------------
    def gamma_beta(self, actv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.separable:
            gb = torch.cat([self.mlp_gamma(actv), self.mlp_beta(actv)], dim=1)
        else:
            gb = self.mlp_gamma_beta(actv)
        if self.sparse:
            if self.is_shortcut:
                gb = self.gather(self.scatter(gb))
                if self.mode == "full":  # a 1x1 stride-1 consumer: its output map is its input map
                    self.gather.output_res = self.gather.input_res
            else:
                gb = self.scatter_gather(gb)
        gamma, beta = torch.split(gb, self.channels, dim=1)
        return gamma, beta

    def forward(self, normalized: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        """``normalized * (1 + gamma) + beta`` (``normalized`` is already BatchNorm-ed)."""
        gamma, beta = self.gamma_beta(actv)
        if _tracing():
            return normalized * (1 + gamma) + beta
        return torch.addcmul(beta, normalized, gamma).add_(normalized)


@dataclass(frozen=True)
class BlockSpec:
    """Channels of one SPADE residual block.

    ``conv_0``: in -> mid, ``conv_1``: mid -> out, ``conv_s`` (learned shortcut): in -> out; norms:
    ``norm_0`` over in, ``norm_1`` over mid, ``norm_s`` over in. ``hidden``: the shared conv's width per
    norm (the block's ``mlp_shared`` has 2 or 3 times that many outputs).
    """

    name: str
    in_channels: int
    mid_channels: int
    out_channels: int
    hidden: int
    learned_shortcut: bool


class SPADEResnetBlock(SIGEModule):
    """SPADE residual block; dense or sparse, chosen at construction (``sparse``)."""

    def __init__(
        self,
        spec: BlockSpec,
        label_nc: int,
        separable: bool = False,
        sparse: bool = False,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
    ):
        super().__init__()
        if spec.learned_shortcut is False and spec.in_channels != spec.out_channels:
            raise ValueError(f"{spec.name}: a block without learned shortcut needs in == out channels, got {spec}")
        self.spec = spec
        self.sparse = sparse
        self.learned_shortcut = spec.learned_shortcut
        self.nhidden = spec.hidden
        n_norms = 3 if spec.learned_shortcut else 2
        self.mlp_shared = nn.Sequential(_conv(sparse, label_nc, spec.hidden * n_norms, 3, padding=1), nn.ReLU())
        self.conv_0 = _conv(sparse, spec.in_channels, spec.mid_channels, 3, padding=1)
        self.conv_1 = _conv(sparse, spec.mid_channels, spec.out_channels, 3, padding=1)
        if spec.learned_shortcut:
            self.conv_s = _conv(sparse, spec.in_channels, spec.out_channels, 1, bias=False)
        self.norm_0 = SPADE(spec.in_channels, spec.hidden, separable, sparse)
        self.norm_1 = SPADE(spec.mid_channels, spec.hidden, separable, sparse)
        if spec.learned_shortcut:
            self.norm_s = SPADE(spec.in_channels, spec.hidden, separable, sparse)
        if sparse:
            self.seg_gather = Gather(self.mlp_shared[0], main_block_size)
            self.seg_scatter_gather = ScatterGather(self.seg_gather)
            self.main_gather = Gather(self.conv_0, main_block_size)
            self.main_scatter_gather = ScatterGather(self.main_gather)
            self.norm_0.route(self.seg_gather)
            self.norm_1.route(self.seg_gather)
            if spec.learned_shortcut:
                self.shortcut_gather = Gather(self.conv_s, shortcut_block_size)
                self.norm_s.route(self.seg_gather, self.conv_s, shortcut_block_size)
                self.scatter = ScatterWithBlockResidual(self.main_gather, self.shortcut_gather)
            else:
                self.scatter = Scatter(self.main_gather)

    def _norms(self) -> list[SPADE]:
        return [self.norm_0, self.norm_1] + ([self.norm_s] if self.learned_shortcut else [])

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        tiles = self.sparse and self.mode != "full"  # work on gathered blocks
        if self.mode == "full" and not _tracing():
            for norm in self._norms():
                norm.refresh_scale_shift()
        seg = nearest_resize(seg, (int(x.shape[2]), int(x.shape[3])))
        if self.sparse:
            seg = self.seg_gather(seg)
        actvs = F.relu(self.mlp_shared[0](seg))
        if self.sparse:
            actvs = self.seg_scatter_gather(actvs)
        actv = torch.split(actvs, self.nhidden, dim=1)

        if self.learned_shortcut:
            if tiles:
                xs = self.shortcut_gather(x, *self.norm_s.scale_shift())
            else:
                xs = self.norm_s.normalize(self.shortcut_gather(x) if self.sparse else x)
            xs = self.conv_s(self.norm_s(xs, actv[2]))
        else:
            xs = x

        if tiles:
            h = self.main_gather(x, *self.norm_0.scale_shift())
        else:
            h = self.norm_0.normalize(self.main_gather(x) if self.sparse else x)
        h = self.conv_0(leaky_relu(self.norm_0(h, actv[0]), inplace=True))
        if tiles:
            h = self.main_scatter_gather(h, *self.norm_1.scale_shift())
        else:
            h = self.norm_1.normalize(self.main_scatter_gather(h) if self.sparse else h)
        h = self.conv_1(leaky_relu(self.norm_1(h, actv[1]), inplace=True))

        if not self.sparse:
            return xs + h
        out = self.scatter(h, xs)
        if self.mode == "full":
            # Every conv of the block is stride 1 with 'same' padding: all its Gathers share the output
            # map, hence (same geometry) the same active blocks on either block grid.
            self.seg_gather.output_res = self.main_gather.output_res
        return out


@dataclass(frozen=True)
class GeneratorSpec:
    """What a SPADE generator is: its blocks, widths and sizes (see the factory functions)."""

    blocks: tuple[BlockSpec, ...]
    fc_channels: int
    label_nc: int  # input channels: one-hot classes (+ 1 instance edge channel)
    latent_size: tuple[int, int]  # (sh, sw)
    num_upsampling_layers: str
    separable: bool
    use_instance: bool = True

    @property
    def num_classes(self) -> int:
        return self.label_nc - int(self.use_instance)


class SPADEGenerator(SIGEModel):
    """fc (3x3 on the segmentation map at the latent size) -> SPADE blocks with x2 nearest upsampling
    -> leaky ReLU -> 3x3 conv to RGB -> tanh. Input: ``[B, label_nc, H, W]`` semantics at the output size."""

    def __init__(
        self,
        spec: GeneratorSpec,
        num_sparse_layers: int = 5,
        main_block_size: int = 6,
        shortcut_block_size: int = 4,
    ):
        super().__init__()
        n_blocks = len(spec.blocks)
        if not isinstance(num_sparse_layers, int) or not 0 <= num_sparse_layers <= n_blocks:
            raise ValueError(
                f"num_sparse_layers must be an int from 0 (dense) to {n_blocks} (every SPADE block sparse), "
                f"got {num_sparse_layers!r}"
            )
        for name, b in (("main_block_size", main_block_size), ("shortcut_block_size", shortcut_block_size)):
            if not isinstance(b, int) or b < 1:
                raise ValueError(f"{name} must be a positive int, got {b!r}")
        self.spec = spec
        self.num_sparse_layers = num_sparse_layers
        self.sh, self.sw = spec.latent_size
        self.num_upsampling_layers = spec.num_upsampling_layers
        factor = 2 ** UPSAMPLING[spec.num_upsampling_layers]
        self.output_size = (self.sh * factor, self.sw * factor)
        self.block_names = [b.name for b in spec.blocks]
        self._up_buffers: dict[int, torch.Tensor] = {}  # sparse mode's upsampled maps, one per block
        self.fc = Conv2d(spec.label_nc, spec.fc_channels, 3, padding=1)
        for i, b in enumerate(spec.blocks):
            threshold = n_blocks - i
            block = SPADEResnetBlock(
                b, spec.label_nc, spec.separable, num_sparse_layers >= threshold, main_block_size, shortcut_block_size
            )
            self.add_module(b.name, block)
        self.conv_img = Conv2d(spec.blocks[-1].out_channels, 3, 3, padding=1)
        # sige_fast: conv_img on the edit's blocks too (see _to_rgb); needs the last block sparse (its mask)
        self.sparse_rgb = False
        self.rgb_gather = self.rgb_scatter = None
        if num_sparse_layers >= 1:
            self.rgb_gather = Gather(self.conv_img, main_block_size, activation_name="leaky_relu")
            self.rgb_scatter = Scatter(self.rgb_gather)

    def sparse_block_names(self) -> list[str]:
        return [n for n in self.block_names if getattr(self, n).sparse]

    def up(self, x: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """Nearest x2. Sparse passes write into a buffer kept per call site: a fresh 32-128 MiB map per pass
        costs its page faults (4x the copy itself on the CPU); the map is read only within the pass."""
        B, C, H, W = (int(v) for v in x.shape)
        if self.mode != "sparse" or _tracing() or torch.compiler.is_compiling():
            return nearest_resize(x, (2 * H, 2 * W))
        buf = self._up_buffers.get(slot)
        if buf is None or buf.shape != (B, C, 2 * H, 2 * W) or buf.dtype != x.dtype or buf.device != x.device:
            buf = self._up_buffers[slot] = x.new_empty((B, C, 2 * H, 2 * W))
        buf.view(B, C, H, 2, W, 2).copy_(x[:, :, :, None, :, None].expand(B, C, H, 2, W, 2))
        return buf

    def clear_cache(self) -> None:
        super().clear_cache()
        self._up_buffers.clear()

    def cache_nbytes(self) -> int:
        return super().cache_nbytes() + sum(b.numel() * b.element_size() for b in self._up_buffers.values())

    def check_input(self, seg: torch.Tensor) -> None:
        if not isinstance(seg, torch.Tensor) or seg.dim() != 4:
            got = tuple(seg.shape) if isinstance(seg, torch.Tensor) else type(seg).__name__
            raise ValueError(f"expected semantics [B, {self.spec.label_nc}, H, W], got {got}")
        if seg.shape[1] != self.spec.label_nc:
            raise ValueError(
                f"expected {self.spec.label_nc} input channels (one-hot labels + instance edges, see "
                f"gaugan.inputs.semantics), got {seg.shape[1]}"
            )
        if tuple(seg.shape[2:]) != self.output_size:
            raise ValueError(
                f"this generator makes {self.output_size[0]}x{self.output_size[1]} images and needs semantics of "
                f"that size, got {tuple(seg.shape[2:])}; resize the label maps (nearest) or change crop_size"
            )

    def forward(self, seg: torch.Tensor) -> torch.Tensor:
        self.check_input(seg)
        x = self.fc(nearest_resize(seg, (self.sh, self.sw)))
        for i, name in enumerate(self.block_names):
            if i > 0 and not (name == "G_middle_1" and self.num_upsampling_layers == "normal"):
                x = self.up(x, i)
            x = getattr(self, name)(x, seg)
        return torch.tanh(self._to_rgb(x))

    def _to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """leaky ReLU -> conv_img. Dense (the paper's placement) unless ``sparse_rgb`` is on and the last block is
        sparse: then sparse passes convolve only the blocks around the edit (leaky ReLU fused into the gather)
        and scatter them into the full pass's cached output."""
        if self.rgb_gather is None:
            return self.conv_img(leaky_relu(x))
        if self.mode == "full":
            self.rgb_gather(x)  # records the resolution
            return self.rgb_scatter(self.conv_img(leaky_relu(x)))
        if not self.sparse_rgb:
            return self.conv_img(leaky_relu(x))
        blocks = self.rgb_gather(x)
        return self.rgb_scatter(F.conv2d(blocks, self.conv_img.weight, self.conv_img.bias))


# ----------------------------------------------------------------------------------------------- factories


def latent_size(crop_size: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """``(sh, sw)`` as the original: ``sw = crop // 2**n_up``, ``sh = round(sw / aspect_ratio)``."""
    if num_upsampling_layers not in UPSAMPLING:
        raise ValueError(f"num_upsampling_layers must be one of {sorted(UPSAMPLING)}, got {num_upsampling_layers!r}")
    sw = int(crop_size) // 2 ** UPSAMPLING[num_upsampling_layers]
    sh = round(sw / aspect_ratio)
    if sw < 1 or sh < 1:
        raise ValueError(
            f"crop_size {crop_size} with aspect ratio {aspect_ratio} and {num_upsampling_layers!r} upsampling "
            f"gives an empty {sh}x{sw} latent map; use crop_size >= {2 ** UPSAMPLING[num_upsampling_layers]}"
            " times the aspect ratio"
        )
    return sh, sw


def gaugan_spec(
    ngf: int = 64,
    label_nc: int = NUM_CLASSES,
    use_instance: bool = True,
    crop_size: int = 512,
    aspect_ratio: float = 2.0,
    num_upsampling_layers: str = "more",
) -> GeneratorSpec:
    """The SPADE generator of GauGAN (Cityscapes: ngf 64, 35 classes + instance edges, 256x512)."""
    nf = int(ngf)
    hidden = 2 * nf
    widths = [("head_0", 16, 16), ("G_middle_0", 16, 16), ("G_middle_1", 16, 16),
              ("up_0", 16, 8), ("up_1", 8, 4), ("up_2", 4, 2), ("up_3", 2, 1)]  # fmt: skip
    if num_upsampling_layers == "most":
        widths.append(("up_4", 1, 0.5))
    blocks = []
    for name, fin, fout in widths:
        cin, cout = int(fin * nf), int(fout * nf)
        blocks.append(BlockSpec(name, cin, min(cin, cout), cout, hidden, cin != cout))
    return GeneratorSpec(
        tuple(blocks), 16 * nf, label_nc + int(use_instance),
        latent_size(crop_size, aspect_ratio, num_upsampling_layers), num_upsampling_layers, separable=False,
        use_instance=bool(use_instance),
    )  # fmt: skip


def decode_config(config_str: str) -> list[int]:
    """``"32_32_32_48_32_24_24_32"`` -> eight channel multipliers (fc/head_0 ... up_3)."""
    if isinstance(config_str, int):
        raise ValueError(
            f"GAN Compression config string was read as the number {config_str} (YAML and Hydra read 32_32_... as an "
            'int); quote it: config_str: "32_32_32_48_32_24_24_32" or model.config_str="\'2_2_2_3_2_2_2_2\'"'
        )
    try:
        channels = [int(c) for c in str(config_str).split("_")]
    except ValueError:
        channels = []
    if len(channels) != 8 or any(c < 1 for c in channels):
        raise ValueError(
            f"GAN Compression config string must be 8 positive ints joined by '_', e.g. {DEFAULT_CONFIG_STR!r}; "
            f"got {config_str!r}"
        )
    return channels


def sub_mobile_spec(
    config_str: str = DEFAULT_CONFIG_STR,
    label_nc: int = NUM_CLASSES,
    use_instance: bool = True,
    crop_size: int = 512,
    aspect_ratio: float = 2.0,
    num_upsampling_layers: str = "more",
) -> GeneratorSpec:
    """GAN Compression's sub-mobile SPADE generator for a channel configuration string.

    ``c = config``: fc -> 16*c0; head_0 / G_middle_0 / G_middle_1 keep 16*c0 channels with inner width
    16*c{1,2,3}; up_0..up_3 output 8*c4, 4*c5, 2*c6, c7; each block's SPADE hidden width is 2*c_k.
    """
    if num_upsampling_layers == "most":
        raise ValueError("the sub-mobile SPADE generator supports num_upsampling_layers 'normal' or 'more'")
    c = decode_config(config_str)
    ic = 16 * c[0]
    blocks = []
    for name, k in (("head_0", 1), ("G_middle_0", 2), ("G_middle_1", 3)):
        blocks.append(BlockSpec(name, ic, 16 * c[k], ic, 2 * c[k], False))
    for name, k, mult in (("up_0", 4, 8), ("up_1", 5, 4), ("up_2", 6, 2), ("up_3", 7, 1)):
        ch = mult * c[k]
        blocks.append(BlockSpec(name, ic, ch, ch, 2 * c[k], True))
        ic = ch
    return GeneratorSpec(
        tuple(blocks), 16 * c[0], label_nc + int(use_instance),
        latent_size(crop_size, aspect_ratio, num_upsampling_layers), num_upsampling_layers, separable=True,
        use_instance=bool(use_instance),
    )  # fmt: skip


ARCHITECTURES = ("gaugan", "gan_compression")


def build_generator(
    architecture: str = "gaugan",
    *,
    ngf: int = 64,
    config_str: str = DEFAULT_CONFIG_STR,
    label_nc: int = NUM_CLASSES,
    use_instance: bool = True,
    crop_size: int = 512,
    aspect_ratio: float = 2.0,
    num_upsampling_layers: str = "more",
    num_sparse_layers: int | None = None,
    main_block_size: int = 6,
    shortcut_block_size: int = 4,
) -> SPADEGenerator:
    """A randomly initialised generator (load weights with :func:`gaugan.checkpoints.load_checkpoint`).

    ``num_sparse_layers`` defaults to the original's: 5 for GauGAN, 4 for GAN Compression.
    """
    if architecture == "gaugan":
        spec = gaugan_spec(ngf, label_nc, use_instance, crop_size, aspect_ratio, num_upsampling_layers)
        default_sparse = 5
    elif architecture == "gan_compression":
        spec = sub_mobile_spec(config_str, label_nc, use_instance, crop_size, aspect_ratio, num_upsampling_layers)
        default_sparse = 4
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    n = default_sparse if num_sparse_layers is None else num_sparse_layers
    if num_upsampling_layers == "most" and num_sparse_layers is None:
        n += 1
    return SPADEGenerator(spec, n, main_block_size, shortcut_block_size)


def sparse_thresholds(names: Sequence[str]) -> dict[str, int]:
    """Block name -> the smallest ``num_sparse_layers`` that makes it sparse."""
    return {name: len(names) - i for i, name in enumerate(names)}
