"""The latent-diffusion UNet family: tiny SD-like and SDXL-like configurations of the same class."""

import pytest
import torch

from sdxl.config import unet_config
from sdxl.unet import UNet

from .tiny import box_mask, pyramid, sd_like, sdxl_like, unet_inputs

CONFIGS = {"sd_like": sd_like, "sdxl_like": sdxl_like}


def pair(make):
    torch.manual_seed(0)
    sparse = UNet(make()).eval()
    dense = UNet(make(sparse=False)).eval()
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_full_mode_equals_the_dense_build(name):
    sparse, dense = pair(CONFIGS[name])
    x, t, ctx, y = unet_inputs(sparse.cfg)
    torch.testing.assert_close(sparse(x, t, ctx, y), dense(x, t, ctx, y), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_full_mask_sparse_equals_dense_with_frozen_per_sample_statistics(name):
    """Both samples of the CFG pair differ (latent, timestep, text); statistics are frozen per sample."""
    sparse, dense = pair(CONFIGS[name])
    x0, t, ctx, y = unet_inputs(sparse.cfg)
    x1 = x0 + 0.3 * torch.randn_like(x0)
    masks = pyramid(torch.ones(16, 24, dtype=torch.bool))
    for m in (sparse, dense):
        m(x0, t, ctx, y)
        m.set_masks(masks, block_grid="original")
        m.set_mode("sparse")
    out = sparse(x1, t, ctx, y)
    torch.testing.assert_close(out, dense(x1, t, ctx, y), atol=5e-5, rtol=5e-5)
    # a frozen-statistics pass differs from a fresh dense pass on the edited input (the statistics are the original's)
    sparse.set_mode("full")
    assert not torch.allclose(out, sparse(x1, t, ctx, y), atol=1e-3)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("grid", ["original", "trimmed"])
@torch.no_grad()
def test_unchanged_input_reproduces_the_cached_output_for_any_mask(name, grid):
    sparse, _ = pair(CONFIGS[name])
    x0, t, ctx, y = unet_inputs(sparse.cfg)
    ref = sparse(x0, t, ctx, y)
    sparse.set_masks(pyramid(box_mask(16, 24, 5, 17, 4, 7)), block_grid=grid)
    sparse.set_mode("sparse")
    torch.testing.assert_close(sparse(x0, t, ctx, y), ref, atol=2e-5, rtol=2e-5)


@torch.no_grad()
def test_cache_ids_keep_one_step_each():
    """Two denoising steps (timestep, text) cached under two ids; each sparse pass uses its own slot."""
    sparse, dense = pair(sdxl_like)
    x0, t, ctx, y = unet_inputs(sparse.cfg)
    t2, ctx2 = t.flip(0), ctx.flip(0)
    x1 = x0 + 0.3 * torch.randn_like(x0)
    masks = pyramid(torch.ones(16, 24, dtype=torch.bool))
    for m in (sparse, dense):
        for cid, (tt, cc) in enumerate([(t, ctx), (t2, ctx2)]):
            m.set_cache_id(cid)
            m(x0, tt, cc, y)
        m.set_masks(masks)
        m.set_mode("sparse")
    for cid, (tt, cc) in enumerate([(t, ctx), (t2, ctx2)]):
        sparse.set_cache_id(cid)
        dense.set_cache_id(cid)
        torch.testing.assert_close(sparse(x1, tt, cc, y), dense(x1, tt, cc, y), atol=5e-5, rtol=5e-5)
    assert sparse.cache_nbytes() > 0
    sparse.clear_cache()
    assert sparse.cache_nbytes() == 0


def test_bad_inputs_are_clear_errors():
    m = UNet(sdxl_like()).eval()
    x, t, ctx, y = unet_inputs(m.cfg)
    with pytest.raises(ValueError, match="latents"):
        m(x[:, :3], t, ctx, y)
    with pytest.raises(ValueError, match="multiple of 2"):
        m(x[..., :9], t, ctx, y)
    with pytest.raises(ValueError, match="text context"):
        m(x, t, ctx[..., :5], y)
    with pytest.raises(ValueError, match="vector y"):
        m(x, t, ctx, None)
    with pytest.raises(ValueError, match="transformer_depth"):
        unet_config(dict(channel_mult=[1, 2], transformer_depth=[1]))
    with pytest.raises(ValueError, match="unknown unet setting"):
        unet_config(dict(channels=3))
    with pytest.raises(ValueError, match="exactly one"):
        unet_config(dict(num_heads=8, num_head_channels=64))


def _meta(name):
    from .tiny import model_cfg

    with torch.device("meta"):
        return UNet(unet_config(model_cfg(name)["unet"]))


@pytest.mark.parametrize(
    "name, params, keys",
    [
        ("sd14", 859_520_964, {
            "input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
            "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
            "input_blocks.3.0.op.weight": (320, 320, 3, 3),
            "middle_block.1.transformer_blocks.0.ff.net.0.proj.weight": (10240, 1280),
            "output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
            "output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
            "out.2.weight": (4, 320, 3, 3),
        }),
        ("sdxl_base", 2_567_463_684, {
            "label_emb.0.0.weight": (1280, 2816),
            "input_blocks.4.1.transformer_blocks.1.attn1.to_q.weight": (640, 640),
            "input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
            "middle_block.1.transformer_blocks.9.norm3.weight": (1280,),
            "output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
            "output_blocks.8.0.emb_layers.1.weight": (320, 1280),
        }),
        ("sdxl_refiner", None, {
            "label_emb.0.0.weight": (1536, 2560),
            "input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight": (768, 1280),
            "middle_block.1.transformer_blocks.3.attn1.to_v.weight": (1536, 1536),
            "output_blocks.11.0.in_layers.2.weight": (384, 768, 3, 3),
        }),
    ],
)  # fmt: skip
def test_full_size_parameter_layout_matches_the_released_checkpoints(name, params, keys):
    """Built on the meta device (no memory): the parameter names and shapes of the original releases."""
    from sdxl.checkpoint import ldm_key_map

    model = _meta(name)
    names = ldm_key_map(model)  # the engine's ResBlock / Downsample names -> ldm's
    sd = {names[k]: v for k, v in model.state_dict().items()}
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k
    if params is not None:
        assert sum(v.numel() for v in sd.values()) == params
