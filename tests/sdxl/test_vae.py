"""The KL autoencoder: encoder and decoder written once, dense or sparse (tiny configurations)."""

import pytest
import torch

from sdxl.vae import AutoencoderKL, Decoder, Encoder

from .tiny import box_mask, pyramid, vae_like


def pair(cls, **kw):
    torch.manual_seed(0)
    sparse = cls(vae_like(**kw)).eval()
    dense = cls(vae_like(sparse=False, **kw)).eval()
    dense.load_state_dict(sparse.state_dict())
    return sparse, dense


CASES = [(Encoder, (1, 3, 32, 48)), (Decoder, (1, 4, 8, 12))]


@pytest.mark.parametrize("cls, shape", CASES)
@pytest.mark.parametrize("impl", ["bmm", "sdpa"])
@torch.no_grad()
def test_full_mode_equals_dense_and_full_mask_sparse_equals_dense_frozen(cls, shape, impl):
    sparse, dense = pair(cls, attn_impl=impl)
    x0 = torch.randn(*shape)
    x1 = x0 + 0.3 * torch.randn_like(x0)
    torch.testing.assert_close(sparse(x0), dense(x0), atol=1e-5, rtol=1e-5)
    H, W = shape[2:]
    if cls is Decoder:
        H, W = H * 4, W * 4
    masks = pyramid(torch.ones(H, W, dtype=torch.bool))
    for m in (sparse, dense):
        m(x0)
        m.set_masks(masks)
        m.set_mode("sparse")
    torch.testing.assert_close(sparse(x1), dense(x1), atol=5e-5, rtol=5e-5)


@torch.no_grad()
def test_decoder_unchanged_latent_reproduces_the_cached_image():
    dec, _ = pair(Decoder)
    z = torch.randn(1, 4, 8, 12)
    ref = dec(z).clone()
    dec.set_masks(pyramid(box_mask(32, 48, 10, 20, 6, 6)))
    dec.set_mode("sparse")
    torch.testing.assert_close(dec(z), ref, atol=1e-5, rtol=1e-5)
    assert dec.cache_nbytes() > ref.numel() * 4  # cached outputs, statistics, key/value maps
    dec.clear_cache()
    assert dec.cache_nbytes() == 0


def test_bad_inputs_are_clear_errors():
    enc, dec = Encoder(vae_like()), Decoder(vae_like())
    with pytest.raises(ValueError, match="multiples of 4"):
        enc(torch.randn(1, 3, 30, 48))
    with pytest.raises(ValueError, match="latents"):
        dec(torch.randn(1, 3, 8, 8))


def test_full_size_layout_matches_the_released_autoencoder():
    with torch.device("meta"):
        vae = AutoencoderKL(vae_like(ch=128, ch_mult=[1, 2, 4, 4], num_res_blocks=2, num_groups=32))
    sd = vae.state_dict()
    assert sum(v.numel() for v in vae.encoder.state_dict().values()) == 34_163_592
    assert sum(v.numel() for v in vae.decoder.state_dict().values()) == 49_490_179
    assert sum(v.numel() for v in sd.values()) == 83_653_863
    for k, shape in {
        "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.conv_out.weight": (8, 512, 3, 3),
        "decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "decoder.up.0.block.2.conv2.weight": (128, 128, 3, 3),
        "decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
        "quant_conv.weight": (8, 8, 1, 1),
        "post_quant_conv.weight": (4, 4, 1, 1),
    }.items():
        assert tuple(sd[k].shape) == shape, k
