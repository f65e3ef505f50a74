"""MAC counts derived by hand from the architecture and the active blocks (an independent check of the
torchprofile counts of the models).

The conventions are those of torchprofile 0.1.0 as the original work used it: convs, linears, bmm,
element-wise multiplies, GroupNorm/LayerNorm (one MAC per output element) count; adds, SiLU, softmax and
GELU count 0; a fused scaled-dot-product attention counts ``B*h*Tq*Tk*(d + dv)`` in the true count and 0
in the paper's. Sparse counts follow the original engine's profile mode: a Gather with a fused norm counts
one multiply per gathered element for the scale (and one more for a fused swish).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdxl.config import UNetConfig, VAEConfig
from sige.mask import reduce_mask


@dataclass
class Count:
    paper: int = 0
    total: int = 0

    def add(self, n: int, fused_attention: bool = False) -> None:
        self.total += int(n)
        if not fused_attention:
            self.paper += int(n)


def active(masks, res, k, s, p, block) -> int:
    """Active blocks on the original block grid for a conv (kernel k, stride s, padding p) and a block size."""
    n = max(block - k, 0) // s
    b, stride = n * s + k, (n + 1) * s
    idx = reduce_mask(masks[res], b, stride, p, conv_stride=s, block_grid="original")
    return int(idx.shape[0])


def attn(c: Count, B: int, tq: int, tk: int, C: int, heads: int, impl: str) -> None:
    if impl == "bmm":
        c.add(B * tq * tk * C)  # q k^T over all heads
        c.add(B * heads * tq * tk)  # * scale
        c.add(B * tq * tk * C)  # attn v
    else:
        c.add(2 * B * tq * tk * C, fused_attention=True)


def time_embedding(c: Count, B: int, cfg: UNetConfig) -> None:
    mc, E = cfg.model_channels, 4 * cfg.model_channels
    c.add(mc // 2 + B * (mc // 2))  # sinusoid multiplies
    c.add(B * mc * E + B * E * E)
    if cfg.adm_in_channels:
        c.add(B * cfg.adm_in_channels * E + B * E * E)


def resblock_dense(c: Count, B, cin, cout, hw, emb=0) -> None:
    c.add(B * cin * hw + B * cout * hw * cin * 9)
    c.add(B * emb * cout)
    c.add(B * cout * hw + B * cout * hw * cout * 9)
    if cin != cout:
        c.add(B * cout * hw * cin)


def resblock_sparse(c: Count, B, cin, cout, masks, res, bs) -> None:
    n1 = active(masks, res, 3, 1, 1, bs.main)
    c.add(2 * B * n1 * cin * bs.main**2)  # gather: scale and swish
    t = (bs.main - 2) ** 2
    c.add(B * n1 * t * cout * cin * 9)
    c.add(2 * B * n1 * cout * bs.main**2)  # scatter-gather: scale and swish
    c.add(B * n1 * t * cout * cout * 9)
    if cin != cout:
        n2 = active(masks, res, 1, 1, 0, bs.shortcut)
        c.add(B * n2 * bs.shortcut**2 * cout * cin)


def transformer_block(c, B, tq, tk_self, T_kv_proj, C, heads, L, Dc, self_impl, cross_impl, kv_norm, cross_kv) -> None:
    c.add(B * tq * C)  # norm1
    if kv_norm:
        c.add(B * T_kv_proj * C)  # norm1 of the full map
    c.add(B * tq * C * C + 2 * B * T_kv_proj * C * C)  # q, k, v
    attn(c, B, tq, tk_self, C, heads, self_impl)
    c.add(B * tq * C * C)  # to_out
    c.add(B * tq * C + B * tq * C * C)  # norm2, q
    if cross_kv:
        c.add(2 * B * L * Dc * C)
    attn(c, B, tq, L, C, heads, cross_impl)
    c.add(B * tq * C * C)
    c.add(B * tq * C + B * tq * C * 8 * C + B * tq * 4 * C + B * tq * 4 * C * C)  # norm3, GEGLU, mul, out


def transformer(c, B, C, depth, res, cfg: UNetConfig, L, mode, masks=None) -> None:
    """mode: dense (full pass), sparse (profile), frozen (dense with frozen statistics in sparse mode)."""
    heads, _ = cfg.heads(C)
    T = res[0] * res[1]
    Dc = cfg.context_dim
    if mode == "sparse":
        n = active(masks, res, 1, 1, 0, cfg.blocks.attention)
        t = n * cfg.blocks.attention**2
        c.add(B * t * C + B * t * C * C)  # gather scale, proj_in
        for _ in range(depth):
            transformer_block(
                c, B, t, T, T, C, heads, L, Dc, cfg.self_attn_impl, cfg.cross_attn_sparse_impl, True, False
            )
        c.add(B * t * C * C)
        return
    c.add(B * C * T + B * T * C * C)  # GroupNorm (or frozen scale multiply), proj_in
    cross_impl = cfg.cross_attn_impl if mode == "dense" else cfg.cross_attn_sparse_impl
    for _ in range(depth):
        # self-attention projects its own T tokens (q, k, v); kv_norm False
        c.add(B * T * C)
        c.add(3 * B * T * C * C)
        attn(c, B, T, T, C, heads, cfg.self_attn_impl)
        c.add(B * T * C * C + B * T * C + B * T * C * C)
        if mode == "dense":
            c.add(2 * B * L * Dc * C)
        attn(c, B, T, L, C, heads, cross_impl)
        c.add(B * T * C * C + B * T * C + B * T * C * 8 * C + B * T * 4 * C + B * T * 4 * C * C)
    c.add(B * T * C * C)


def unet_macs(cfg: UNetConfig, B: int, h: int, w: int, L: int, masks=None) -> Count:
    """Dense count (masks None) or sparse count (masks: the pyramid) of one UNet forward."""
    c = Count()
    sparse = masks is not None
    mc, E, bs = cfg.model_channels, 4 * cfg.model_channels, cfg.blocks
    time_embedding(c, B, cfg)
    c.add(B * mc * h * w * cfg.in_channels * 9)
    chans, ch, ds, res = [mc], mc, 1, (h, w)
    levels = len(cfg.channel_mult)

    def rb(cin, cout, r):
        if sparse:
            resblock_sparse(c, B, cin, cout, masks, r, bs)
        else:
            resblock_dense(c, B, cin, cout, r[0] * r[1], E)

    def tf(C, depth, r, sparse_ok=True):
        mode = ("sparse" if sparse_ok else "frozen") if sparse else "dense"
        transformer(c, B, C, depth, r, cfg, L, mode, masks)

    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            rb(ch, mult * mc, res)
            ch = mult * mc
            if ds in cfg.attention_resolutions and cfg.transformer_depth[level]:
                tf(ch, cfg.transformer_depth[level], res)
            chans.append(ch)
        if level != levels - 1:
            half = (res[0] // 2, res[1] // 2)
            if sparse:
                n = active(masks, res, 3, 2, 1, bs.down)
                tile = ((bs.down - 3) // 2 + 1) ** 2
                c.add(B * n * tile * ch * ch * 9)
            else:
                c.add(B * ch * half[0] * half[1] * ch * 9)
            res, ds = half, ds * 2
            chans.append(ch)
    resblock_dense(c, B, ch, ch, res[0] * res[1], E)
    tf(ch, cfg.middle_depth, res, cfg.sparse_middle_transformer)
    resblock_dense(c, B, ch, ch, res[0] * res[1], E)
    for level, mult in reversed(list(enumerate(cfg.channel_mult))):
        for i in range(cfg.num_res_blocks + 1):
            rb(ch + chans.pop(), mc * mult, res)
            ch = mc * mult
            if ds in cfg.attention_resolutions and cfg.transformer_depth[level]:
                tf(ch, cfg.transformer_depth[level], res)
            if level and i == cfg.num_res_blocks:
                res, ds = (res[0] * 2, res[1] * 2), ds // 2
                if sparse:
                    n = active(masks, res, 3, 1, 1, bs.up)
                    c.add(B * n * (bs.up - 2) ** 2 * ch * ch * 9)
                else:
                    c.add(B * ch * res[0] * res[1] * ch * 9)
    c.add(B * mc * h * w + B * cfg.out_channels * h * w * mc * 9)
    return c


def _vae_attn(c: Count, B, C, res, cfg: VAEConfig, masks) -> None:
    T = res[0] * res[1]
    if masks is None:
        c.add(B * C * T + 3 * B * T * C * C)
        attn(c, B, T, T, C, 1, cfg.attn_impl)
        c.add(B * T * C * C)
        return
    n = active(masks, res, 1, 1, 0, cfg.blocks.attention)
    t = n * cfg.blocks.attention**2
    c.add(B * t * C + 3 * B * t * C * C)
    attn(c, B, t, T, C, 1, cfg.attn_sparse_impl)
    c.add(B * t * C * C)


def _vae_res(c: Count, B, cin, cout, res, cfg: VAEConfig, masks) -> None:
    if masks is None:  # (statistics computed for freezing never reach the output: the trace drops them)
        resblock_dense(c, B, cin, cout, res[0] * res[1], 0)
        c.add(B * (cin + cout) * res[0] * res[1])  # swish multiplies (x * sigmoid(x))
    else:
        resblock_sparse(c, B, cin, cout, masks, res, cfg.blocks)


def encoder_macs(cfg: VAEConfig, B: int, H: int, W: int, masks=None) -> Count:
    c = Count()
    c.add(B * cfg.ch * H * W * cfg.in_channels * 9)
    res, block_in = (H, W), cfg.ch
    for i, mult in enumerate(cfg.ch_mult):
        for _ in range(cfg.num_res_blocks):
            _vae_res(c, B, block_in, cfg.ch * mult, res, cfg, masks)
            block_in = cfg.ch * mult
        if i != len(cfg.ch_mult) - 1:
            half = (res[0] // 2, res[1] // 2)
            if masks is None:
                c.add(B * block_in * half[0] * half[1] * block_in * 9)
            else:
                n = active(masks, res, 3, 2, 0, cfg.blocks.down)
                c.add(B * n * ((cfg.blocks.down - 3) // 2 + 1) ** 2 * block_in * block_in * 9)
            res = half
    _vae_res(c, B, block_in, block_in, res, cfg, masks)
    _vae_attn(c, B, block_in, res, cfg, masks)
    _vae_res(c, B, block_in, block_in, res, cfg, masks)
    zc = 2 * cfg.z_channels if cfg.double_z else cfg.z_channels
    c.add(2 * B * block_in * res[0] * res[1] + B * zc * res[0] * res[1] * block_in * 9)  # norm_out, swish, conv
    return c


def decoder_macs(cfg: VAEConfig, B: int, h: int, w: int, masks=None) -> Count:
    c = Count()
    block_in = cfg.ch * cfg.ch_mult[-1]
    res = (h, w)
    c.add(B * block_in * h * w * cfg.z_channels * 9)
    _vae_res(c, B, block_in, block_in, res, cfg, masks)
    _vae_attn(c, B, block_in, res, cfg, masks)
    _vae_res(c, B, block_in, block_in, res, cfg, masks)
    for i in reversed(range(len(cfg.ch_mult))):
        for _ in range(cfg.num_res_blocks + 1):
            _vae_res(c, B, block_in, cfg.ch * cfg.ch_mult[i], res, cfg, masks)
            block_in = cfg.ch * cfg.ch_mult[i]
        if i != 0:
            res = (res[0] * 2, res[1] * 2)
            if masks is None:
                c.add(B * block_in * res[0] * res[1] * block_in * 9)
            else:
                n = active(masks, res, 3, 1, 1, cfg.blocks.up)
                c.add(B * n * (cfg.blocks.up - 2) ** 2 * block_in * block_in * 9)
    c.add(2 * B * block_in * res[0] * res[1] + B * cfg.out_ch * res[0] * res[1] * block_in * 9)
    return c
