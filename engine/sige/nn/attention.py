"""Sparse attention blocks written once for full, sparse and profile mode.

* :class:`AttnBlock`: multi-head (single-head by default) attention over a feature map (the KL-autoencoder,
  DDPM and Progressive Distillation ``AttnBlock``, parameters ``norm, q, k, v, proj_out``; loaders map fused
  ``qkv`` layouts onto them). Sparse: queries for the active tiles only; keys and values are computed on the
  tiles and scattered into cached full maps, so every query sees all positions.
* :class:`CrossAttention`, :class:`BasicTransformerBlock`, :class:`SpatialTransformer`: the ldm
  transformer (parameter names of the CompVis / Stability releases: ``norm, proj_in, transformer_blocks.N.
  {attn1, attn2}.{to_q, to_k, to_v, to_out.0}, ff.net.0.proj, ff.net.2, norm1..3, proj_out``). Sparse:
  queries, LayerNorms and the feed-forward run on the active tokens only; self-attention keys/values come
  from a full token map in which the active tokens are updated, refreshed inside every transformer block
  (depth > 1 needs it); the text keys/values of cross-attention are cached per ``cache_id`` in full mode.

GroupNorm statistics are frozen per ``cache_id`` (per sample, ``[B, C, 1, 1]``) in the full pass.

Counting conventions. ``impl`` says how the attention product is written when MACs are counted (under a
JIT trace): ``"bmm"`` as explicit ``bmm -> * scale -> softmax -> bmm`` (counted by torchprofile, as in the
original SD 1.4 code), ``"sdpa"`` as one ``scaled_dot_product_attention`` call (which the profiler of the
original work did not count; see ``sige.profile.macs.FUSED_ATTENTION_OPS``). Outside a trace both compute
with the fused kernel, so the choice changes only what is counted, never the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sige.nn.base import SIGEConv2d, SIGEModule
from sige.nn.blocks import FrozenStats
from sige.nn.gather import Gather
from sige.nn.norm import group_norm_with_stats
from sige.nn.scatter import Scatter

ATTENTION_IMPLS = ("bmm", "sdpa")
# Largest attention-score matrix (elements) one bmm chunk may hold when counting with "bmm".
_BMM_CHUNK_ELEMENTS = 1 << 27


def check_impl(impl: str) -> str:
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; use one of {', '.join(ATTENTION_IMPLS)}")
    return impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, impl: str = "sdpa") -> torch.Tensor:
    """Multi-head softmax attention: ``q [B, Tq, H*d]``, ``k [B, Tk, H*d]``, ``v [B, Tk, H*dv]`` -> ``[B, Tq, H*dv]``.

    Scale ``d ** -0.5``. ``impl`` only decides how a JIT trace (MAC counting) sees it (module docstring).
    """
    B, Tq, C = (int(s) for s in q.shape)
    Tk, Cv = int(k.shape[1]), int(v.shape[2])
    if C % heads or Cv % heads:
        raise ValueError(f"{C} query / {Cv} value channels do not split into {heads} heads")
    d, dv = C // heads, Cv // heads
    if impl == "bmm" and torch.jit.is_tracing():
        qh = q.reshape(B, Tq, heads, d).permute(0, 2, 1, 3).reshape(B * heads, Tq, d)
        kh = k.reshape(B, Tk, heads, d).permute(0, 2, 3, 1).reshape(B * heads, d, Tk)
        vh = v.reshape(B, Tk, heads, dv).permute(0, 2, 1, 3).reshape(B * heads, Tk, dv)
        # chunks along the batch*heads axis bound the memory; the counted MACs add up to the unchunked ones
        step = max(1, _BMM_CHUNK_ELEMENTS // max(1, Tq * Tk))
        outs = []
        for s in range(0, B * heads, step):
            sim = torch.bmm(qh[s : s + step], kh[s : s + step]) * (d**-0.5)
            outs.append(torch.bmm(sim.softmax(dim=-1), vh[s : s + step]))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return out.reshape(B, heads, Tq, dv).permute(0, 2, 1, 3).reshape(B, Tq, Cv)
    check_impl(impl)
    qh = q.reshape(B, Tq, heads, d).transpose(1, 2)
    kh = k.reshape(B, Tk, heads, d).transpose(1, 2)
    vh = v.reshape(B, Tk, heads, dv).transpose(1, 2)
    out = F.scaled_dot_product_attention(qh, kh, vh)
    return out.transpose(1, 2).reshape(B, Tq, Cv)


def _freeze(module: FrozenStats, x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """``norm(x)``, storing its per-sample ``[B, C, 1, 1]`` scale/shift for the module's cache slot."""
    y, scale, shift = group_norm_with_stats(x, norm)
    module.stats[module.cache_id] = (scale, shift)
    return y


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W, C]``."""
    B, C, H, W = (int(s) for s in x.shape)
    return x.reshape(B, C, H * W).transpose(1, 2)


def tokens_to_map(t: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """``[B, H*W, C]`` -> ``[B, C, H, W]``."""
    B, _, C = (int(s) for s in t.shape)
    return t.transpose(1, 2).reshape(B, C, H, W)


def tiles_to_tokens(t: torch.Tensor, batch: int) -> torch.Tensor:
    """Tiles ``[B*N, C, h, w]`` -> tokens ``[B, N*h*w, C]`` (tile-major, row-major inside a tile)."""
    BN, C, h, w = (int(s) for s in t.shape)
    return t.reshape(batch, BN // batch, C, h * w).transpose(2, 3).reshape(batch, (BN // batch) * h * w, C)


def tokens_to_tiles(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`tiles_to_tokens`."""
    B, T, C = (int(s) for s in t.shape)
    n = T // (h * w)
    return t.reshape(B, n, h * w, C).transpose(2, 3).reshape(B * n, C, h, w)


class AttnBlock(FrozenStats):
    """Attention over a map: GroupNorm -> 1x1 q, k, v -> softmax(q k^T / sqrt(d)) v per head -> 1x1 proj_out, + x.

    ``sparse=True``: Gather (1x1 tiles of ``block_size``) with the frozen norm fused; q on the tiles; k and v
    on the tiles, scattered into their cached full maps; the output tiles scattered with residual ``x``.
    ``sparse=False``: dense in sparse mode too, with the frozen statistics. ``heads``: channel ``c`` belongs to
    head ``c // (channels / heads)``. ``impl`` / ``sparse_impl``: how the product is counted in full / sparse
    mode (module docstring).
    """

    def __init__(
        self,
        channels: int,
        num_groups: int = 32,
        eps: float = 1e-6,
        sparse: bool = True,
        block_size: int = 4,
        impl: str = "bmm",
        sparse_impl: str | None = None,
        heads: int = 1,
    ):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"{channels} channels do not split into {heads} heads")
        self.channels, self.heads = channels, heads
        self.norm = nn.GroupNorm(num_groups, channels, eps=eps)
        self.q = SIGEConv2d(channels, channels, 1)
        self.k = SIGEConv2d(channels, channels, 1)
        self.v = SIGEConv2d(channels, channels, 1)
        self.proj_out = SIGEConv2d(channels, channels, 1)
        self.impl = check_impl(impl)
        self.sparse_impl = check_impl(sparse_impl or impl)
        self.sparse = sparse
        if sparse:
            self.gather = Gather(self.q, block_size)
            self.k_scatter = Scatter(self.gather)
            self.v_scatter = Scatter(self.gather)
            self.out_scatter = Scatter(self.gather)

    def _attend(self, h: torch.Tensor, x: torch.Tensor, impl: str) -> torch.Tensor:
        H, W = int(x.shape[2]), int(x.shape[3])
        q, k, v = self.q(h), self.k(h), self.v(h)
        out = attention(map_to_tokens(q), map_to_tokens(k), map_to_tokens(v), self.heads, impl)
        return tokens_to_map(out, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "full":
            h = _freeze(self, self.gather(x) if self.sparse else x, self.norm)
            if not self.sparse:
                return self.proj_out(self._attend(h, x, self.impl)) + x
            H, W = int(x.shape[2]), int(x.shape[3])
            q, k, v = self.q(h), self.k_scatter(self.k(h)), self.v_scatter(self.v(h))
            out = attention(map_to_tokens(q), map_to_tokens(k), map_to_tokens(v), self.heads, self.impl)
            return self.out_scatter(self.proj_out(tokens_to_map(out, H, W)), x)
        scale, shift = self.frozen()
        if not self.sparse:
            h = x * scale + shift
            return self.proj_out(self._attend(h, x, self.sparse_impl)) + x
        B = int(x.shape[0])
        tiles = self.gather(x, scale, shift)
        th, tw = self.gather.geometry.tile_size
        q = tiles_to_tokens(self.q(tiles), B)
        k = map_to_tokens(self.k_scatter(self.k(tiles)))
        v = map_to_tokens(self.v_scatter(self.v(tiles)))
        out = tokens_to_tiles(attention(q, k, v, self.heads, self.sparse_impl), th, tw)
        return self.out_scatter(self.proj_out(out), x)


class CrossAttention(SIGEModule):
    """Multi-head attention of ``x`` over ``context`` (``x`` itself when ``context`` is None).

    ``cache_context=True``: keys/values of the context (the text) are computed in full mode and reused in
    sparse/profile mode from the cache slot of the current ``cache_id``.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        cache_context: bool = False,
        impl: str = "bmm",
        sparse_impl: str | None = None,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))
        self.cache_context = cache_context
        self.impl = check_impl(impl)
        self.sparse_impl = check_impl(sparse_impl or impl)
        self.kv: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}

    def clear_cache(self) -> None:
        self.kv.clear()

    def cache_nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for kv in self.kv.values() for t in kv)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.to_q(x)
        if self.cache_context and self.mode != "full":
            try:
                k, v = self.kv[self.cache_id]
            except KeyError:
                raise RuntimeError(
                    f"{self._label()}: no cached text keys/values for cache_id={self.cache_id!r}; run a full pass "
                    "with this cache id (and the same context) first"
                ) from None
            if int(k.shape[0]) != int(x.shape[0]):
                raise ValueError(
                    f"{self._label()}: cached keys/values are for batch {int(k.shape[0])}, got batch {int(x.shape[0])}"
                )
        else:
            ctx = x if context is None else context
            k, v = self.to_k(ctx), self.to_v(ctx)
            if self.cache_context:
                self.kv[self.cache_id] = (k, v)
        return self.attend(x, k, v, q)

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of ``x`` over given (projected) keys and values."""
        q = self.to_q(x) if q is None else q
        impl = self.impl if self.mode == "full" else self.sparse_impl
        return self.to_out(attention(q, k, v, self.heads, impl))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward (``net.0.proj``, ``net.2``), inner width ``mult * dim``."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Self-attention, cross-attention (text K/V cached per cache_id) and GEGLU feed-forward, pre-LayerNorm.

    ``kv``: the full token map the self-attention reads its keys/values from (the sparse pass gives the
    active tokens as ``x``); None means ``x`` itself (dense). ``kv_hook(k, v) -> (k, v)``: instead, project
    keys/values of ``x`` only and let the hook complete them (scatter into cached full key/value maps).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        context_dim: int | None,
        dropout: float = 0.0,
        self_impl: str = "bmm",
        cross_impl: str = "bmm",
        cross_sparse_impl: str | None = None,
    ):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout, impl=self_impl)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(
            dim, context_dim, heads, dim_head, dropout, cache_context=True, impl=cross_impl,
            sparse_impl=cross_sparse_impl,
        )  # fmt: skip
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        kv: torch.Tensor | None = None,
        kv_hook: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        h = self.norm1(x)
        if kv_hook is not None:
            x = self.attn1.attend(h, *kv_hook(self.attn1.to_k(h), self.attn1.to_v(h))) + x
        else:
            x = self.attn1(h, h if kv is None else self.norm1(kv)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(FrozenStats):
    """GroupNorm -> 1x1 proj_in -> ``depth`` transformer blocks on the tokens -> 1x1 proj_out, + x.

    ``sparse=True``: tokens of the active ``block_size`` tiles only. The proj_in output is scattered into a
    cached full map (keys/values of the first block's self-attention); after every block but the last its
    output tokens are scattered into that block's own cached map, which feeds the next block's keys/values.
    ``sparse=False``: dense in sparse mode too, with the frozen statistics (and cached text K/V).

    ``kv_mode`` (sparse mode; switch with :func:`set_kv_mode` at any time after a full pass): ``"dense"`` is
    the reference's computation, the self-attention keys/values of every block projected from the whole
    refreshed token map (its MACs are the published ones); ``"scatter"`` projects keys/values of the active
    tokens only and scatters them into per-block key/value maps cached in the full pass (where the active
    tiles hold fewer tokens than the map). Both give the same result (inactive tokens' keys/values equal the
    cached ones); ``"scatter"`` saves the dense projections. ``"auto"`` times both on the first sparse pass of
    a shape and keeps the faster (:data:`KV_CHOICES`).
    """

    def __init__(
        self,
        in_channels: int,
        heads: int,
        dim_head: int,
        depth: int = 1,
        context_dim: int | None = None,
        dropout: float = 0.0,
        sparse: bool = True,
        block_size: int = 4,
        num_groups: int = 32,
        eps: float = 1e-6,
        self_impl: str = "bmm",
        cross_impl: str = "bmm",
        cross_sparse_impl: str | None = None,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"transformer depth must be >= 1, got {depth}")
        inner = heads * dim_head
        self.in_channels, self.depth = in_channels, depth
        self.norm = nn.GroupNorm(num_groups, in_channels, eps=eps)
        conv = SIGEConv2d if sparse else nn.Conv2d
        self.proj_in = conv(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner, heads, dim_head, context_dim, dropout, self_impl, cross_impl, cross_sparse_impl
            )
            for _ in range(depth)
        )
        self.proj_out = conv(inner, in_channels, 1)
        self.sparse = sparse
        self.kv_mode = "dense"
        if sparse:
            self.gather = Gather(self.proj_in, block_size)
            self.scatter1 = Scatter(self.gather)
            self.scatter_blocks = nn.ModuleList(Scatter(self.gather) for _ in range(depth - 1))
            self.scatter2 = Scatter(self.gather)
            self.k_scatters = nn.ModuleList(Scatter(self.gather) for _ in range(depth))
            self.v_scatters = nn.ModuleList(Scatter(self.gather) for _ in range(depth))

    def _kv_hook(self, i: int, H: int, W: int):
        """Scatter the (active or all) tokens' keys/values of block ``i`` into its cached maps."""
        th, tw = self.gather.geometry.tile_size

        def hook(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if self.mode == "full":
                self.k_scatters[i](tokens_to_map(k, H, W))
                self.v_scatters[i](tokens_to_map(v, H, W))
                return k, v
            k = map_to_tokens(self.k_scatters[i](tokens_to_tiles(k, th, tw)))
            return k, map_to_tokens(self.v_scatters[i](tokens_to_tiles(v, th, tw)))

        return hook

    def _blocks(self, tokens: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        for blk in self.transformer_blocks:
            tokens = blk(tokens, context)
        return tokens

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        H, W = int(x.shape[2]), int(x.shape[3])
        if self.mode == "full":
            h = self.proj_in(_freeze(self, self.gather(x) if self.sparse else x, self.norm))
            if not self.sparse:
                return self.proj_out(tokens_to_map(self._blocks(map_to_tokens(h), context), H, W)) + x
            tokens = map_to_tokens(self.scatter1(h))
            for i, blk in enumerate(self.transformer_blocks):  # caches every block's keys/values (kv_mode scatter)
                tokens = blk(tokens, context, kv_hook=self._kv_hook(i, H, W))
                if i < self.depth - 1:  # cache this block's output: the next block's keys/values (kv_mode dense)
                    self.scatter_blocks[i](tokens_to_map(tokens, H, W))
            return self.scatter2(self.proj_out(tokens_to_map(tokens, H, W)), x)
        scale, shift = self.frozen()
        if not self.sparse:
            h = self.proj_in(x * scale + shift)
            return self.proj_out(tokens_to_map(self._blocks(map_to_tokens(h), context), H, W)) + x
        mode = self.kv_mode
        if mode == "auto":  # profile passes count what the sparse passes chose (dense before any choice)
            key = self._kv_key(x)
            mode = KV_CHOICES.get(key, "dense") if self.mode == "profile" else self._choose_kv_mode(x, context, key)
        return self._sparse(x, context, scale, shift, mode)

    def _kv_key(self, x: torch.Tensor) -> tuple:
        return (self.depth, tuple(int(v) for v in x.shape), str(x.dtype), x.device.type, torch.get_num_threads(),
                int(self.gather.active_indices.shape[0]))  # fmt: skip

    def _choose_kv_mode(self, x: torch.Tensor, context: torch.Tensor | None, key: tuple) -> str:
        """The faster kv mode for this block on inputs like ``x`` (timed once per shape, then remembered)."""
        scale, shift = self.frozen()
        best = KV_CHOICES.get(key)
        if best is None:
            times = {}
            for mode in KV_MODES:
                self._sparse(x, context, scale, shift, mode)  # warm-up
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                start = time.perf_counter()
                self._sparse(x, context, scale, shift, mode)
                if x.device.type == "cuda":
                    torch.cuda.synchronize(x.device)
                times[mode] = time.perf_counter() - start
            best = KV_CHOICES[key] = min(times, key=times.get)
        return best

    def _sparse(self, x, context, scale, shift, kv_mode: str) -> torch.Tensor:
        B, H, W = int(x.shape[0]), int(x.shape[2]), int(x.shape[3])
        th, tw = self.gather.geometry.tile_size
        tiles = self.proj_in(self.gather(x, scale, shift))
        tokens = tiles_to_tokens(tiles, B)
        if kv_mode == "scatter" and int(tokens.shape[1]) < H * W:  # (tiles can hold more tokens than the map)
            for i, blk in enumerate(self.transformer_blocks):
                tokens = blk(tokens, context, kv_hook=self._kv_hook(i, H, W))
            return self.scatter2(self.proj_out(tokens_to_tiles(tokens, th, tw)), x)
        kv = map_to_tokens(self.scatter1(tiles))
        for i, blk in enumerate(self.transformer_blocks):
            tokens = blk(tokens, context, kv)
            if i < self.depth - 1:
                kv = map_to_tokens(self.scatter_blocks[i](tokens_to_tiles(tokens, th, tw)))
        return self.scatter2(self.proj_out(tokens_to_tiles(tokens, th, tw)), x)


KV_MODES = ("dense", "scatter")
# sparse-pass choices of kv_mode "auto": (depth, input shape, dtype, device, threads, active blocks) -> mode
KV_CHOICES: dict[tuple, str] = {}


def set_kv_mode(model: nn.Module, mode: str) -> None:
    """Set how every sparse SpatialTransformer in ``model`` gets its self-attention keys/values (see its doc)."""
    if mode not in (*KV_MODES, "auto"):
        raise ValueError(f"unknown kv_mode {mode!r}; use one of {', '.join(KV_MODES)}, auto")
    for m in model.modules():
        if isinstance(m, SpatialTransformer):
            m.kv_mode = mode
