"""MAC counts: the models' torchprofile counts equal the hand derivation (tiny configurations, exact), and the
derivation at full size with the example edits' masks gives the published figures."""

import pytest
import torch

from sdxl.config import unet_config, vae_config
from sdxl.edits import load_case
from sdxl.unet import UNet
from sdxl.vae import Decoder, Encoder
from sige.profile import macs_by_convention as count_macs

from .derived_macs import decoder_macs, encoder_macs, unet_macs
from .tiny import box_mask, edit_cfg, model_cfg, pyramid, sd_like, sdxl_like, unet_inputs, vae_like

MASK = box_mask(32, 48, 9, 30, 7, 5)  # touches several tiles, no border


@pytest.mark.parametrize("make", [sd_like, sdxl_like], ids=["sd_like", "sdxl_like"])
@torch.no_grad()
def test_unet_counts_equal_the_derivation(make):
    cfg = make()
    model = UNet(cfg).eval()
    x, t, ctx, y = unet_inputs(cfg, h=16, w=24)
    args = (x, t, ctx) if y is None else (x, t, ctx, y)
    dense = unet_macs(cfg, 2, 16, 24, ctx.shape[1])
    assert count_macs(model, args) == (dense.paper, dense.total)
    latent = pyramid(MASK, min_res=2)
    model(*args)
    model.set_masks(latent, block_grid="original")
    model.set_mode("sparse")
    sparse = unet_macs(cfg, 2, 16, 24, ctx.shape[1], latent)
    assert count_macs(model, args) == (sparse.paper, sparse.total)
    assert sparse.paper < dense.paper
    if cfg.self_attn_impl == "sdpa":
        assert sparse.total > sparse.paper and dense.total > dense.paper


@pytest.mark.parametrize("cls, shape, impl", [(Encoder, (1, 3, 32, 48), "bmm"), (Decoder, (1, 4, 8, 12), "sdpa")])
@torch.no_grad()
def test_vae_counts_equal_the_derivation(cls, shape, impl):
    cfg = vae_like(attn_impl=impl)
    model = cls(cfg).eval()
    x = torch.randn(*shape)
    derive = encoder_macs if cls is Encoder else decoder_macs
    dense = derive(cfg, 1, *shape[2:])
    assert count_macs(model, (x,)) == (dense.paper, dense.total)
    model(x)
    masks = pyramid(MASK, min_res=2)
    model.set_masks(masks, block_grid="original")
    model.set_mode("sparse")
    sparse = derive(cfg, 1, *shape[2:], masks)
    assert count_macs(model, (x,)) == (sparse.paper, sparse.total)


@pytest.fixture(scope="module")
def cases():
    return {n: load_case(edit_cfg(n)) for n in ("sd_sdedit0", "sd_sdedit1", "sd_inpainting")}


# (model, component, case or None for dense) -> published GMACs (sige-reference.md 5.3 / 5.4)
PUBLISHED = {
    ("sd14", "unet", None): "1854.8",
    ("sd14", "unet", "sd_sdedit0"): "224.9",
    ("sd14", "unet", "sd_sdedit1"): "352.6",
    ("sd14", "unet", "sd_inpainting"): "514.5",
    ("sd14", "encoder", None): "1152.1",
    ("sd14", "encoder", "sd_sdedit0"): "39.2",
    ("sd14", "encoder", "sd_sdedit1"): "76.3",
    ("sd14", "decoder", None): "2550.8",
    ("sd14", "decoder", "sd_sdedit0"): "154.2",
    ("sd14", "decoder", "sd_sdedit1"): "318.3",
    ("sd14", "decoder", "sd_inpainting"): "343.5",
    ("sdxl_base", "unet", "sd_sdedit0"): "592.03",
    ("sdxl_base", "unet", "sd_sdedit1"): "876.87",
    ("sdxl_base", "unet", "sd_inpainting"): "974.42",
    ("sdxl_base", "encoder", None): "1083.27",
    ("sdxl_base", "encoder", "sd_sdedit0"): "39.18",
    ("sdxl_base", "encoder", "sd_sdedit1"): "76.29",
    ("sdxl_base", "decoder", None): "2481.99",
    ("sdxl_base", "decoder", "sd_sdedit0"): "154.22",
    ("sdxl_base", "decoder", "sd_sdedit1"): "318.28",
    ("sdxl_base", "decoder", "sd_inpainting"): "343.51",
    ("sdxl_refiner", "unet", None): "3058.80",
    ("sdxl_refiner", "unet", "sd_sdedit0"): "521.47",
    ("sdxl_refiner", "unet", "sd_sdedit1"): "777.37",
}
# Two published figures our count misses by a rounding step (see sdxl/README.md): ours / published.
NEAR = {
    ("sdxl_base", "unet", None): (3015.8147, "3015.82"),
    ("sdxl_refiner", "unet", "sd_inpainting"): (985.2588, "985.25"),
}


def _derive(model, component, case):
    cfg = model_cfg(model)
    if component == "unet":
        u = unet_config(cfg["unet"])
        return unet_macs(u, 2, 64, 128, 77, None if case is None else case.masks).paper
    v = vae_config(cfg["vae"])
    if component == "encoder":
        return encoder_macs(v, 1, 512, 1024, None if case is None else case.masks).paper
    return decoder_macs(v, 1, 64, 128, None if case is None else case.decoder_masks).paper


@pytest.mark.parametrize("key", list(PUBLISHED), ids=lambda k: "-".join(str(p) for p in k))
def test_full_size_derivation_gives_the_published_figures(key, cases):
    model, component, case = key
    g = _derive(model, component, cases[case] if case else None) / 1e9
    pub = PUBLISHED[key]
    assert round(g, len(pub.split(".")[1])) == float(pub), (key, g)


@pytest.mark.parametrize("key", list(NEAR), ids=lambda k: "-".join(str(p) for p in k))
def test_the_two_near_misses_stay_within_one_rounding_step(key, cases):
    model, component, case = key
    g = _derive(model, component, cases[case] if case else None) / 1e9
    ours, pub = NEAR[key]
    assert round(g, 4) == ours and abs(g - float(pub)) < 0.01
