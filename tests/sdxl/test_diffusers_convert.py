"""Diffusers models converted to this project's sparse models: the same outputs as diffusers' own forward, shared
weights, the engine's modes and caches, the official configs, and clear refusals."""

import pytest
import torch

from sdxl.checkpoint import CheckpointError
from sdxl.config import unet_config, vae_config
from sdxl.diffusers_arch import (
    DiffusersConfigError,
    check_same_architecture,
    read_config,
    unet_config_from_diffusers,
    vae_config_from_diffusers,
    with_engine,
)
from sdxl.diffusers_convert import added_cond_vector, from_diffusers
from sdxl.diffusers_keys import unet_key_map, vae_key_map
from sdxl.unet import UNet
from sdxl.vae import AutoencoderKL
from sige.mask import downsample_mask
from sigebench.variants import output_psnr

from . import diffusers_tiny as tiny
from .tiny import box_mask, model_cfg

pytest.importorskip("diffusers")


def unet_args(config, B=2, h=16, w=24, seed=0):
    """(diffusers kwargs, our args) of one CFG-batch forward."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 4, h, w, generator=g)
    t = torch.tensor([37.0, 801.0][:B])
    ctx = torch.randn(B, 7, config["cross_attention_dim"], generator=g)
    if config.get("addition_embed_type") != "text_time":
        return dict(sample=x, timestep=t, encoder_hidden_states=ctx), (x, t, ctx, None)
    dim = config["addition_time_embed_dim"]
    n = 6 if config["projection_class_embeddings_input_dim"] == 16 + 6 * dim else 5
    pooled = torch.randn(B, 16, generator=g)
    ids = torch.tensor([[512.0, 768, 0, 0, 512, 768][:n], [1024.0, 1024, 32, 16, 6.0, 768][:n]])
    y = added_cond_vector(pooled, ids, dim)
    return (dict(sample=x, timestep=t, encoder_hidden_states=ctx, added_cond_kwargs={"text_embeds": pooled,
                 "time_ids": ids}), (x, t, ctx, y))  # fmt: skip


@pytest.mark.parametrize("kind", ["sd", "sd2", "sdxl", "refiner"])
@torch.no_grad()
def test_converted_unet_equals_the_diffusers_forward_and_shares_its_weights(kind):
    theirs = tiny.unet(kind)
    ours = from_diffusers(theirs)
    assert isinstance(ours, UNet)
    kw, args = unet_args(dict(theirs.config))
    ref = theirs(**kw).sample
    assert ref.std() > 0.1  # every layer contributes
    torch.testing.assert_close(ours(*args), ref, atol=2e-5, rtol=2e-5)
    storages = {p.untyped_storage().data_ptr() for p in theirs.parameters()}
    assert all(p.untyped_storage().data_ptr() in storages for p in ours.parameters())  # no second copy
    n_ours, n_theirs = (sum(p.numel() for p in m.parameters()) for m in (ours, theirs))
    assert n_ours == n_theirs
    with torch.no_grad():  # an in-place change of a diffusers weight is seen by the converted model
        theirs.conv_in.bias.add_(1.0)
    torch.testing.assert_close(ours(*args), theirs(**kw).sample, atol=2e-5, rtol=2e-5)
    copy = from_diffusers(theirs, dtype=torch.bfloat16)  # a dtype given: converted, a copy
    assert all(p.dtype == torch.bfloat16 and p.untyped_storage().data_ptr() not in storages for p in copy.parameters())


@torch.no_grad()
def test_converted_vae_equals_the_diffusers_encode_and_decode():
    theirs = tiny.vae()
    ours = from_diffusers(theirs)
    assert isinstance(ours, AutoencoderKL)
    img = tiny.images(32, 48)[0]
    post = theirs.encode(img).latent_dist
    mean, logvar = ours.encode(img)
    torch.testing.assert_close(mean, post.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logvar, post.logvar, atol=1e-5, rtol=1e-5)
    z = torch.randn(1, 4, 16, 24, generator=torch.Generator().manual_seed(2))
    ref = theirs.decode(z).sample
    assert ref.std() > 0.05
    torch.testing.assert_close(ours.decode(z), ref, atol=1e-5, rtol=1e-5)
    storages = {p.untyped_storage().data_ptr() for p in theirs.parameters()}
    assert all(p.untyped_storage().data_ptr() in storages for p in ours.parameters())


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
@torch.no_grad()
def test_full_mask_is_dense_empty_mask_is_cached_and_small_edits_are_close(kind):
    theirs = tiny.unet(kind)
    sparse = from_diffusers(theirs)
    dense = from_diffusers(theirs, sparse=False)  # the same weights, every block dense (frozen statistics)
    _, (x0, t, ctx, y) = unet_args(dict(theirs.config))
    x1 = x0 + 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(9)) * box_mask(16, 24, 5, 9, 4, 6)
    for m in (sparse, dense):
        m(x0, t, ctx, y)
    full = downsample_mask(torch.ones(16, 24, dtype=torch.bool), min_res=2, dilation=1)
    for m in (sparse, dense):
        m.set_masks(full, block_grid="original")
        m.set_mode("sparse")
    torch.testing.assert_close(sparse(x1, t, ctx, y), dense(x1, t, ctx, y), atol=5e-5, rtol=5e-5)
    sparse.set_mode("full")
    cached = sparse(x0, t, ctx, y)
    sparse.set_masks(downsample_mask(torch.zeros(16, 24, dtype=torch.bool), min_res=2, dilation=1))
    sparse.set_mode("sparse")
    # no active block: the cached output (SD's dense middle blocks recompute it, to rounding)
    torch.testing.assert_close(sparse(x1, t, ctx, y), cached, atol=1e-5, rtol=0)
    # a small edit: the project's own UNet (same config, same weights) gives the same sparse output
    own = UNet(sparse.cfg).eval()
    own.load_state_dict(sparse.state_dict())
    small = downsample_mask(box_mask(16, 24, 4, 8, 6, 8), min_res=2, dilation=1)
    outs = []
    for m in (sparse, own):
        m.set_mode("full")
        m(x0, t, ctx, y)
        m.set_masks(small, block_grid="original")
        m.set_mode("sparse")
        outs.append(m(x1, t, ctx, y))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)
    sparse.set_mode("full")
    assert output_psnr(outs[0], sparse(x1, t, ctx, y)) > 30  # close to the dense pass on the edit
    assert sparse.cache_nbytes() > 0


@torch.no_grad()
def test_converted_decoder_full_mask_is_dense_and_empty_mask_is_cached():
    theirs = tiny.vae()
    sparse, dense = from_diffusers(theirs).decoder, from_diffusers(theirs, sparse=False).decoder
    g = torch.Generator().manual_seed(4)
    z0 = torch.randn(1, 4, 16, 24, generator=g)
    z1 = z0 + torch.randn(1, 4, 16, 24, generator=g) * box_mask(16, 24, 6, 10, 3, 4)
    cached, _ = sparse(z0), dense(z0)
    full = downsample_mask(torch.ones(32, 48, dtype=torch.bool), min_res=2, dilation=1)
    for m in (sparse, dense):
        m.set_masks(full, block_grid="original")
        m.set_mode("sparse")
    torch.testing.assert_close(sparse(z1), dense(z1), atol=5e-5, rtol=5e-5)
    sparse.set_masks(downsample_mask(torch.zeros(32, 48, dtype=torch.bool), min_res=2, dilation=1))
    torch.testing.assert_close(sparse(z1), cached, atol=1e-5, rtol=0)  # every sparse block keeps the cached output


@torch.no_grad()
def test_profile_mode_counts_the_converted_model_as_the_projects_own():
    from sige.profile import macs_by_convention

    theirs = tiny.unet("sdxl")
    ours = from_diffusers(theirs)
    own = UNet(ours.cfg).eval()
    _, args = unet_args(dict(theirs.config))
    mask = downsample_mask(box_mask(16, 24, 4, 8, 6, 8), min_res=2, dilation=1)
    counts = []
    for m in (ours, own):
        dense = macs_by_convention(m, args)
        m(*args)
        m.set_masks(mask, block_grid="original")
        m.set_mode("sparse")
        counts.append((dense, macs_by_convention(m, args)))
    assert counts[0] == counts[1] and counts[0][1][0] < counts[0][0][0]


OFFICIAL = {  # model config -> (diffusers unet config, vae config, parameters of the UNet)
    "sd14": ("sd14_unet", "sd14_vae", 859_520_964),
    "sdxl_base": ("sdxl_base_unet", "sdxl_vae", 2_567_463_684),
    "sdxl_refiner": ("sdxl_refiner_unet", "sdxl_vae", None),
    "sdxl_turbo": ("sdxl_turbo_unet", "sdxl_vae", 2_567_463_684),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_configs_are_the_projects_models_and_their_keys_map(name):
    """The embedded official configs translate to exactly the project's model configs (engine settings aside), and
    the key map covers diffusers' full-size state dicts with matching sizes (built on the meta device)."""
    import diffusers

    ucfg, vcfg, params = OFFICIAL[name]
    mc = model_cfg(f"{name}_diffusers")
    assert mc["diffusers"] == {"unet": ucfg, "vae": vcfg}
    u = unet_config_from_diffusers(read_config(ucfg))
    assert with_engine(u, mc["unet"]) == unet_config(model_cfg(name)["unet"])
    v = vae_config_from_diffusers(read_config(vcfg))
    assert with_engine(v, mc["vae"]) == vae_config(model_cfg(name)["vae"])
    with torch.device("meta"):
        pairs = [
            (UNet(u), diffusers.UNet2DConditionModel.from_config(read_config(ucfg)), unet_key_map),
            (AutoencoderKL(v), diffusers.AutoencoderKL.from_config(read_config(vcfg)), vae_key_map),
        ]
    for ours, theirs, key_map in pairs:
        km, sd, osd = key_map(ours), theirs.state_dict(), ours.state_dict()
        assert sorted(km.values()) == sorted(sd)
        assert all(osd[k].numel() == sd[v].numel() for k, v in km.items())
    if params:
        assert sum(p.numel() for p in pairs[0][1].parameters()) == params


def test_unsupported_configs_are_refused_naming_the_field():
    base = dict(read_config("sd14_unet"))
    cases = {
        "class_embed_type": dict(class_embed_type="timestep"),
        "time_cond_proj_dim": dict(time_cond_proj_dim=256),
        "down_block_types": dict(down_block_types=["SimpleCrossAttnDownBlock2D", *base["down_block_types"][1:]]),
        "must mirror": dict(up_block_types=["CrossAttnUpBlock2D"] * 4),
        "neither the head count nor the head width": dict(attention_head_dim=[5, 8, 20, 20]),
        "resnet_time_scale_shift": dict(resnet_time_scale_shift="scale_shift"),
        "unknown to this converter": dict(some_future_option=True),
        "multiple of the first": dict(block_out_channels=[320, 480, 1280, 1280]),
    }
    for words, change in cases.items():
        with pytest.raises(DiffusersConfigError, match=words):
            unet_config_from_diffusers({**base, **change})
    unet_config_from_diffusers({**base, "some_future_option": None, "dropout": 0.1})  # off / inference-only: fine
    with pytest.raises(DiffusersConfigError, match="use_post_quant_conv"):
        vae_config_from_diffusers({**read_config("sd14_vae"), "use_post_quant_conv": False})
    with pytest.raises(DiffusersConfigError, match="unknown engine setting"):
        unet_config_from_diffusers(base, sparse_everything=True)
    sd2 = unet_config_from_diffusers({**base, "attention_head_dim": [5, 10, 20, 20], "cross_attention_dim": 1024})
    assert sd2.num_head_channels == 64 and sd2.context_dim == 1024  # SD 2.x: heads of width 64
    with pytest.raises(DiffusersConfigError, match="text context width: 768 vs 1024"):
        check_same_architecture(unet_config_from_diffusers(base), sd2, "sd14", "an SD 2 config")
    with pytest.raises(FileNotFoundError, match="sd14_unet"):
        read_config("no_such_config")


def test_foreign_state_dicts_are_clear_errors():
    theirs = tiny.unet("sd")
    theirs.register_buffer("lora_A_weight", torch.zeros(2))  # an adapter left in the model
    with pytest.raises(CheckpointError, match="unexpected key.*lora.*fuse_lora"):
        from_diffusers(theirs)
    with pytest.raises(TypeError, match="UNet2DConditionModel or AutoencoderKL"):
        from_diffusers(torch.nn.Linear(2, 2))
