"""The generators: dense == an independent reference, sparse == dense where the math says so, every
sparse-layer count, original-layout checkpoints."""

import pytest
import torch

from gaugan.checkpoints import load_state_dict
from gaugan.models import SPADEGenerator, build_generator, decode_config, gaugan_spec, sub_mobile_spec
from sige.profile import macs

from .helpers import (
    edit_rect,
    full_pyramid,
    original_state_dict,
    random_semantics,
    reference_forward,
    tiny,
)

KINDS = ["gaugan", "gan_compression"]


def loaded(kind, gen, **kw):
    model = tiny(kind, **kw)
    sd = original_state_dict(model, gen)
    load_state_dict(model, sd)
    return model, sd


def not_saturated(out):
    """Guard against comparisons that pass only because tanh saturates."""
    assert (out.abs() > 0.99).float().mean() < 0.2 and out.std() > 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_dense_equals_reference_from_original_layout(kind):
    gen = torch.Generator().manual_seed(1)
    model, sd = loaded(kind, gen, crop_size=128, aspect_ratio=2.0)  # non-square, as Cityscapes
    seg = random_semantics(model, batch=2, gen=gen)
    with torch.no_grad():
        out = model(seg)
        ref = reference_forward(sd, model, seg)
    assert out.shape == (2, 3, *model.output_size)
    not_saturated(ref)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_sparse_layers", range(8))
def test_every_sparse_layer_count_full_mask_exact(kind, num_sparse_layers):
    """With every block active, a sparse pass computes the dense network; GauGAN's BatchNorm folding is
    exact, GAN Compression's separable convs use the original's frozen InstanceNorm statistics."""
    gen = torch.Generator().manual_seed(2)
    model, sd = loaded(kind, gen, num_sparse_layers=num_sparse_layers)
    sparse_names = set(model.sparse_block_names())
    assert len(sparse_names) == num_sparse_layers
    original = random_semantics(model, gen=gen)
    edited = edit_rect(original, slice(10, 30), slice(20, 50))
    grid = ("original", "trimmed")[num_sparse_layers % 2]
    with torch.no_grad():
        cached = model(original).clone()
        model.set_masks(full_pyramid(model), block_grid=grid)
        model.set_mode("sparse")
        out = model(edited)
    stats: dict = {}
    torch.testing.assert_close(cached, reference_forward(sd, model, original, stats), atol=2e-5, rtol=1e-4)
    ref = reference_forward(sd, model, edited, stats, frozen_blocks=sparse_names)
    not_saturated(ref)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("sparse_rgb", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_local_edit_with_covering_masks_is_exact(kind, sparse_rgb):
    """All blocks sparse, a local edit, masks covering everything the edit can change: sparse == dense
    (exactly for GauGAN; for GAN Compression up to the frozen InstanceNorm statistics, which the
    reference reproduces); also with conv_img on the blocks (sige_fast)."""
    gen = torch.Generator().manual_seed(3)
    model, sd = loaded(kind, gen, num_sparse_layers=7)
    model.sparse_rgb = sparse_rgb
    original = random_semantics(model, gen=gen)
    edited = edit_rect(original, slice(50, 53), slice(50, 53))
    diff = (original - edited).abs().amax(dim=(0, 1)) > 0
    import torch.nn.functional as F

    masks, m, r = {}, diff.float()[None, None], 24
    for H, W in full_pyramid(model):
        scale = model.output_size[0] // H
        masks[(H, W)] = (
            F.max_pool2d(F.max_pool2d(m, scale) if scale > 1 else m, 2 * max(r // scale, 2) + 1, 1, max(r // scale, 2))[
                0, 0
            ]
            > 0
        )
    assert masks[model.output_size].float().mean() < 0.5  # really a local edit at the finest level
    with torch.no_grad():
        model(original)
        model.set_masks(masks, block_grid="trimmed")
        model.set_mode("sparse")
        out = model(edited)
    stats: dict = {}
    reference_forward(sd, model, original, stats)
    ref = reference_forward(sd, model, edited, stats, frozen_blocks=set(model.sparse_block_names()))
    not_saturated(ref)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-4)
    model.set_mode("profile")
    counted = macs(model, (edited,))
    model.sparse_rgb = not sparse_rgb
    other = macs(model, (edited,))
    rgb_dense = 9 * model.conv_img.in_channels * 3 * model.output_size[0] * model.output_size[1]
    assert (counted < other) == sparse_rgb and abs(counted - other) < rgb_dense  # the blocks' share of conv_img
    assert (out - model_dense(model, original)).abs().amax() > 1e-3  # the edit did change the image


def model_dense(model, x):
    model.set_mode("full")
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("kind", KINDS)
def test_unchanged_input_gives_cached_output(kind):
    """An edit that changes nothing: empty masks, no active blocks, the original image comes back."""
    gen = torch.Generator().manual_seed(4)
    model, _ = loaded(kind, gen, num_sparse_layers=7)
    x = random_semantics(model, gen=gen)
    with torch.no_grad():
        cached = model(x).clone()
        model.set_masks({k: torch.zeros_like(v) for k, v in full_pyramid(model).items()})
        model.set_mode("sparse")
        torch.testing.assert_close(model(x), cached, atol=1e-6, rtol=0)


def test_batch_of_edits_with_per_sample_masks():
    gen = torch.Generator().manual_seed(5)
    model, sd = loaded("gaugan", gen, num_sparse_layers=7)
    original = random_semantics(model, batch=2, gen=gen)
    edited = edit_rect(original, slice(5, 9), slice(5, 9))
    with torch.no_grad():
        model(original)
        model.set_masks(full_pyramid(model, batch=2))
        model.set_mode("sparse")
        out = model(edited)
    torch.testing.assert_close(out, reference_forward(sd, model, edited), atol=2e-5, rtol=1e-4)


def test_sparse_placement_thresholds():
    names = ["head_0", "G_middle_0", "G_middle_1", "up_0", "up_1", "up_2", "up_3"]
    for n in range(8):
        model = build_generator("gaugan", ngf=2, crop_size=128, num_sparse_layers=n)
        assert model.sparse_block_names() == names[len(names) - n :]
    assert build_generator("gaugan", ngf=2, crop_size=128).sparse_block_names() == names[2:]  # default 5
    assert build_generator("gan_compression", crop_size=128).sparse_block_names() == names[3:]  # default 4
    most = build_generator("gaugan", ngf=2, crop_size=256, num_upsampling_layers="most")
    assert most.sparse_block_names() == ["G_middle_1", "up_0", "up_1", "up_2", "up_3", "up_4"]
    assert most.output_size == (128, 256)


def test_architecture_shapes():
    spec = gaugan_spec()
    assert spec.latent_size == (4, 8) and spec.label_nc == 36 and spec.fc_channels == 1024
    assert [(b.in_channels, b.out_channels, b.learned_shortcut) for b in spec.blocks][3:] == [
        (1024, 512, True), (512, 256, True), (256, 128, True), (128, 64, True)]  # fmt: skip
    gc = sub_mobile_spec("32_32_32_48_32_24_24_32")
    assert gc.fc_channels == 512
    assert [(b.in_channels, b.mid_channels, b.out_channels, b.hidden) for b in gc.blocks] == [
        (512, 512, 512, 64), (512, 512, 512, 64), (512, 768, 512, 96), (512, 256, 256, 64),
        (256, 96, 96, 48), (96, 48, 48, 48), (48, 32, 32, 64)]  # fmt: skip
    model = build_generator("gaugan", ngf=2, crop_size=128, use_instance=False)
    assert model.spec.label_nc == 35


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_sparse_layers": 8}, "num_sparse_layers"),
        ({"num_sparse_layers": -1}, "num_sparse_layers"),
        ({"crop_size": 32}, "crop_size"),
        ({"num_upsampling_layers": "lots"}, "num_upsampling_layers"),
        ({"main_block_size": 0}, "main_block_size"),
    ],
)
def test_bad_configuration_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_generator("gaugan", ngf=2, **{"crop_size": 128, **kwargs})


def test_bad_inputs_are_explained():
    model = tiny("gaugan")
    with pytest.raises(ValueError, match="input channels"):
        model(torch.zeros(1, 35, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        model(torch.zeros(1, 36, 32, 64))
    with pytest.raises(ValueError, match="config string"):
        decode_config("32_32")
    with pytest.raises(ValueError, match="quote it"):
        decode_config(2_2_2_3_2_2_2_2)
    with pytest.raises(ValueError, match="architecture"):
        build_generator("pix2pix")
    assert isinstance(model, SPADEGenerator)


@pytest.mark.parametrize("size", [(4, 8), (8, 16), (64, 128), (128, 256), (32, 48), (20, 10)])
def test_nearest_resize_equals_interpolate(size):
    from gaugan.models import nearest_resize

    x = torch.randn(2, 3, 32, 64)
    expect = torch.nn.functional.interpolate(x, size=size, mode="nearest")
    assert torch.equal(nearest_resize(x, size), expect)


@pytest.mark.parametrize("shape", [(2, 16, 4, 8, 32), (1, 8, 16, 16, 3), (2, 5, 9, 7, 1), (1, 4, 20, 20, 8)])
def test_fast_conv_paths_equal_the_convolution(shape):
    from gaugan.models import Conv2d

    B, C, H, W, n_out = shape
    conv = Conv2d(C, n_out, 3, padding=1)
    x = torch.randn(B, C, H, W)
    with torch.no_grad():
        expect = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
        torch.testing.assert_close(conv(x), expect, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_changing_masks_between_sparse_passes_stays_exact(kind):
    """Sparse passes after a sparse block upsample only its tiles into a working copy of the full pass's map;
    new active blocks (another set_masks) restore it first: edits with full, empty and full masks in turn
    all equal the reference."""
    gen = torch.Generator().manual_seed(6)
    model, sd = loaded(kind, gen, num_sparse_layers=7)
    model.sparse_rgb = True
    original = random_semantics(model, gen=gen)
    edited = edit_rect(original, slice(10, 30), slice(20, 50))
    stats: dict = {}
    with torch.no_grad():
        cached = model(original).clone()
        reference_forward(sd, model, original, stats)
        ref = reference_forward(sd, model, edited, stats, frozen_blocks=set(model.sparse_block_names()))
        for masks, x, want in [(full_pyramid(model), edited, ref),
                               ({k: torch.zeros_like(v) for k, v in full_pyramid(model).items()}, original, cached),
                               (full_pyramid(model), edited, ref)]:  # fmt: skip
            model.set_masks(masks)
            model.set_mode("sparse")
            torch.testing.assert_close(model(x), want, atol=2e-5, rtol=1e-4)
            model.set_mode("full")
