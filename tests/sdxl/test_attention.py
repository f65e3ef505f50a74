"""Sparse attention pieces (sige.nn.attention): full mode is the plain computation; sparse mode with a full
mask equals the dense computation with the frozen statistics; text K/V are cached per cache_id."""

import pytest
import torch
import torch.nn.functional as F

from sige.nn import SIGEModel
from sige.nn.attention import AttnBlock, CrossAttention, SpatialTransformer, attention, set_kv_mode
from sige.profile import profile_macs
from sige.profile.macs import FUSED_ATTENTION_OPS

from .tiny import box_mask, pyramid


class Wrap(SIGEModel):
    def __init__(self, module):
        super().__init__()
        self.m = module

    def forward(self, *args):
        return self.m(*args)


def plain_attention(q, k, v, heads):
    B, T, C = q.shape
    d = C // heads
    qh = q.reshape(B, T, heads, d).transpose(1, 2)
    kh = k.reshape(B, -1, heads, d).transpose(1, 2)
    vh = v.reshape(B, -1, heads, v.shape[-1] // heads).transpose(1, 2)
    w = (qh @ kh.transpose(-1, -2) * d**-0.5).softmax(-1)
    return (w @ vh).transpose(1, 2).reshape(B, T, -1)


@pytest.mark.parametrize("impl", ["bmm", "sdpa"])
def test_attention_matches_plain_math_and_counts_by_impl(impl):
    q, k, v = torch.randn(2, 7, 12), torch.randn(2, 5, 12), torch.randn(2, 5, 12)
    torch.testing.assert_close(attention(q, k, v, 3, impl), plain_attention(q, k, v, 3), atol=1e-5, rtol=1e-5)

    class Att(torch.nn.Module):
        def forward(self, q, k, v):
            return attention(q, k, v, 3, impl)

    total = profile_macs(Att(), (q, k, v))
    paper = profile_macs(Att(), (q, k, v), exclude_ops=FUSED_ATTENTION_OPS)
    if impl == "bmm":  # q k^T, * scale, attn v
        assert total == paper == 2 * 7 * 5 * 12 + 2 * 3 * 7 * 5 + 2 * 7 * 5 * 12
    else:
        assert total == 2 * (2 * 7 * 5 * 12) and paper == 0


def test_attention_rejects_bad_impl_and_heads():
    q = torch.randn(1, 4, 6)
    with pytest.raises(ValueError, match="impl"):
        attention(q, q, q, 2, "flash")
    with pytest.raises(ValueError, match="heads"):
        attention(q, q, q, 4, "sdpa")


def plain_attn_block(b: AttnBlock, x):
    B, C, H, W = x.shape
    h = F.group_norm(x, b.norm.num_groups, b.norm.weight, b.norm.bias, b.norm.eps)
    q, k, v = (F.conv2d(h, m.weight, m.bias).reshape(B, C, -1).transpose(1, 2) for m in (b.q, b.k, b.v))
    out = plain_attention(q, k, v, 1).transpose(1, 2).reshape(B, C, H, W)
    return x + F.conv2d(out, b.proj_out.weight, b.proj_out.bias)


def _pair(cls, *args, **kw):
    sparse, dense = cls(*args, sparse=True, **kw).eval(), cls(*args, sparse=False, **kw).eval()
    dense.load_state_dict(sparse.state_dict())
    return Wrap(sparse), Wrap(dense)


@torch.no_grad()
def test_attn_block_full_mode_is_plain_and_full_mask_sparse_equals_dense_frozen():
    sparse, dense = _pair(AttnBlock, 8, 4)
    x0 = torch.randn(2, 8, 10, 13)
    x1 = x0 + 0.5 * torch.randn_like(x0)
    torch.testing.assert_close(sparse(x0), plain_attn_block(sparse.m, x0), atol=1e-5, rtol=1e-5)
    masks = pyramid(torch.ones(10, 13, dtype=torch.bool))
    for m in (sparse, dense):
        m(x0)
        m.set_masks(masks)
        m.set_mode("sparse")
    torch.testing.assert_close(sparse(x1), dense(x1), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_attn_block_partial_mask_updates_only_the_active_queries():
    """Queries outside the active tiles keep their cached output; the active ones see every updated key."""
    sparse, dense = _pair(AttnBlock, 8, 4)
    x0 = torch.randn(1, 8, 12, 12)
    mask = box_mask(12, 12, 4, 4, 3, 3)
    x1 = x0 + mask * torch.randn_like(x0)
    base = sparse(x0).clone()
    dense(x0)
    for m in (sparse, dense):
        m.set_masks({(12, 12): mask})
        m.set_mode("sparse")
    out, ref = sparse(x1), dense(x1)
    tiles = torch.zeros(12, 12, dtype=torch.bool)
    tiles[4:8, 4:8] = True  # the 4x4 tile holding the edit
    torch.testing.assert_close(out[..., tiles], ref[..., tiles], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[..., ~tiles], base[..., ~tiles])


def plain_transformer(t: SpatialTransformer, x, ctx):
    B, C, H, W = x.shape
    h = F.group_norm(x, t.norm.num_groups, t.norm.weight, t.norm.bias, t.norm.eps)
    tok = F.conv2d(h, t.proj_in.weight, t.proj_in.bias).reshape(B, -1, H * W).transpose(1, 2)
    for blk in t.transformer_blocks:
        a1, a2 = blk.attn1, blk.attn2
        n = blk.norm1(tok)
        tok = tok + a1.to_out(plain_attention(a1.to_q(n), a1.to_k(n), a1.to_v(n), a1.heads))
        n = blk.norm2(tok)
        tok = tok + a2.to_out(plain_attention(a2.to_q(n), a2.to_k(ctx), a2.to_v(ctx), a2.heads))
        p, gate = blk.ff.net[0].proj(blk.norm3(tok)).chunk(2, dim=-1)
        tok = tok + blk.ff.net[2](p * F.gelu(gate))
    out = tok.transpose(1, 2).reshape(B, -1, H, W)
    return x + F.conv2d(out, t.proj_out.weight, t.proj_out.bias)


@pytest.mark.parametrize("depth", [1, 3])
@torch.no_grad()
def test_spatial_transformer_full_mode_is_plain_and_full_mask_is_exact(depth):
    """With every tile active, depth > 1 is exact only if each block's keys/values are refreshed."""
    kw = dict(depth=depth, context_dim=6, num_groups=4, self_impl="sdpa", cross_impl="sdpa", cross_sparse_impl="bmm")
    sparse, dense = _pair(SpatialTransformer, 8, 2, 4, **kw)
    x0, ctx = torch.randn(2, 8, 9, 11), torch.randn(2, 3, 6)
    x1 = x0 + 0.5 * torch.randn_like(x0)
    torch.testing.assert_close(sparse(x0, ctx), plain_transformer(sparse.m, x0, ctx), atol=1e-5, rtol=1e-5)
    for m in (sparse, dense):
        m(x0, ctx)
        m.set_masks(pyramid(torch.ones(9, 11, dtype=torch.bool)))
        m.set_mode("sparse")
    torch.testing.assert_close(sparse(x1, ctx), dense(x1, ctx), atol=2e-5, rtol=2e-5)
    # and the dense-with-frozen-statistics computation is the plain one when the statistics are the input's own
    torch.testing.assert_close(dense(x0, None), plain_transformer(dense.m, x0, ctx), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_scattered_keys_values_give_the_reference_result_with_fewer_macs():
    """kv_mode "scatter" (sige_fast) projects keys/values of the active tokens only; same output as "dense"."""
    from sige.profile import macs_by_convention as count_macs

    kw = dict(depth=3, context_dim=6, num_groups=4, self_impl="bmm", cross_impl="bmm")
    sparse, _ = _pair(SpatialTransformer, 8, 2, 4, **kw)
    x0, ctx = torch.randn(2, 8, 12, 16), torch.randn(2, 3, 6)
    mask = box_mask(12, 16, 2, 3, 3, 5)
    x1 = x0 + mask * torch.randn_like(x0)
    sparse(x0, ctx)
    sparse.set_masks({(12, 16): mask})
    sparse.set_mode("sparse")
    ref = sparse(x1, ctx).clone()
    dense_macs = count_macs(sparse, (x1, ctx))
    set_kv_mode(sparse, "scatter")
    torch.testing.assert_close(sparse(x1, ctx), ref, atol=1e-5, rtol=1e-5)
    fast_macs = count_macs(sparse, (x1, ctx))
    T, t, C = 12 * 16, 4 * 16, 8  # tokens, active tokens (4 tiles of 4x4), channels; batch 2, 3 blocks
    saved = 3 * (2 * 2 * (T - t) * C * C + 2 * T * C)  # k, v projections and the full-map LayerNorm
    assert dense_macs[0] - fast_macs[0] == saved
    set_kv_mode(sparse, "dense")
    torch.testing.assert_close(sparse(x1, ctx), ref)
    with pytest.raises(ValueError, match="kv_mode"):
        set_kv_mode(sparse, "fast")
    # auto: both timed on the first sparse pass, the choice remembered and counted in profile mode
    from sige.nn.attention import KV_CHOICES

    KV_CHOICES.clear()
    set_kv_mode(sparse, "auto")
    torch.testing.assert_close(sparse(x1, ctx), ref, atol=1e-5, rtol=1e-5)
    ((key, choice),) = KV_CHOICES.items()
    assert choice in ("dense", "scatter")
    assert count_macs(sparse, (x1, ctx)) == (dense_macs if choice == "dense" else fast_macs)
    KV_CHOICES[key] = "scatter" if choice == "dense" else "dense"
    assert count_macs(sparse, (x1, ctx)) == (fast_macs if choice == "dense" else dense_macs)


@torch.no_grad()
def test_cross_attention_caches_text_keys_values_per_cache_id():
    att = CrossAttention(8, 6, heads=2, dim_head=4, cache_context=True, impl="sdpa", sparse_impl="bmm")
    x, c0, c1 = torch.randn(2, 5, 8), torch.randn(2, 3, 6), torch.randn(2, 4, 6)
    att.set_cache_id("a")
    ya = att(x, c0)
    att.set_cache_id("b")
    yb = att(x, c1)
    att.set_mode("sparse")
    att.set_cache_id("a")
    torch.testing.assert_close(att(x, None), ya, atol=1e-5, rtol=1e-5)
    att.set_cache_id("b")
    torch.testing.assert_close(att(x, None), yb, atol=1e-5, rtol=1e-5)
    assert att.cache_nbytes() == 4 * 2 * (2 * 3 * 8 + 2 * 4 * 8)
    att.set_cache_id("c")
    with pytest.raises(RuntimeError, match="cache_id='c'"):
        att(x, None)
    att.clear_cache()
    assert att.cache_nbytes() == 0


@torch.no_grad()
def test_sparse_without_a_full_pass_is_a_clear_error():
    t = Wrap(SpatialTransformer(8, 2, 4, context_dim=6, num_groups=4))
    t.set_mode("sparse")
    with pytest.raises(RuntimeError, match="full pass"):
        t(torch.randn(1, 8, 4, 4), torch.randn(1, 2, 6))
