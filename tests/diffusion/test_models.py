"""The DDPM and PD UNets: full mode is the plain network (values and MAC counts), sparse mode is exact where the
math says so (every block active; an unchanged input), batches and non-square inputs work."""

import pytest
import torch

from diffusion.edits import mask_pyramid
from sige.profile import macs

from .reference import Plain, ddpm_forward, pd_forward, tiny_ddpm, tiny_pd

MODELS = {
    "ddpm": (tiny_ddpm, ddpm_forward, lambda b: torch.full((b,), 37.0)),
    "pd": (tiny_pd, pd_forward, lambda b: torch.full((b,), 1.25)),
    "pd_mixed": (lambda **kw: tiny_pd(**{"sparse_resolution_threshold": 32, **kw}), pd_forward,
                 lambda b: torch.full((b,), -3.0)),
}  # fmt: skip


def dense_twin(kind, model):
    """The same network with every block dense (frozen statistics in sparse mode)."""
    make = MODELS[kind][0]
    twin = make(sparse_resolution_threshold=None, **({"sparse_upsample": False} if kind == "ddpm" else {}))
    twin.load_state_dict(model.state_dict())
    return twin


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("shape", [(2, 32, 32), (1, 32, 64)])
def test_full_mode_is_the_plain_network(kind, shape):
    make, plain, cond = MODELS[kind]
    model = make()
    x = torch.randn(shape[0], 3, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(model(x, cond(shape[0])), plain(model, x, cond(shape[0])), atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", list(MODELS))
def test_full_mode_counts_the_plain_networks_macs(kind):
    make, plain, cond = MODELS[kind]
    model = make()
    x = torch.randn(1, 3, 32, 32)
    assert macs(model, (x, cond(1))) == tensor_macs(Plain(model, plain), (x, cond(1)))


def tensor_macs(model, inputs):
    """torchprofile's count without the 1-MAC multiplies of traced shape arithmetic (``h * w`` in a reshape),
    which the plain re-statement records and the model avoids."""
    import warnings

    from torchprofile import profile_macs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes = profile_macs(model, inputs, reduction=None)
    return sum(v for node, v in nodes.items() if node.outputs[0].shape)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 32, 64)])
def test_sparse_with_every_block_active_equals_dense_with_frozen_statistics(kind, shape):
    make, _, cond = MODELS[kind]
    model = make()
    twin = dense_twin(kind, model)
    B, H, W = shape
    x0 = torch.randn(B, 3, H, W)
    x1 = x0 + 0.3 * torch.randn_like(x0)
    t = cond(B)
    with torch.no_grad():
        for m in (model, twin):
            m(x0, t)
            m.set_masks(mask_pyramid(torch.ones(H, W, dtype=torch.bool), model.min_resolution((H, W))))
            m.set_mode("sparse")
        torch.testing.assert_close(model(x1, t), twin(x1, t), atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", list(MODELS))
def test_unchanged_input_reproduces_the_full_pass(kind):
    """Frozen statistics equal the real ones when nothing changed: sparse passes (empty and partial masks)
    return the full pass's output."""
    make, _, cond = MODELS[kind]
    model = make()
    x = torch.randn(1, 3, 32, 32)
    t = cond(1)
    with torch.no_grad():
        ref = model(x, t).clone()
        for mask in (torch.zeros(32, 32, dtype=torch.bool), torch.rand(32, 32) < 0.05):
            model.set_masks(mask_pyramid(mask, model.min_resolution()))
            model.set_mode("sparse")
            torch.testing.assert_close(model(x, t), ref, atol=2e-4, rtol=1e-4)
            model.set_mode("full")


@pytest.mark.parametrize("kind", ["ddpm", "pd"])
def test_a_batch_equals_its_samples_run_alone(kind):
    make, _, cond = MODELS[kind]
    model = make()
    x0 = torch.randn(2, 3, 32, 32)
    x1 = x0.clone()
    x1[:, :, 4:12, 6:14] += 1.0
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[4:12, 6:14] = True
    masks = mask_pyramid(mask, model.min_resolution())
    with torch.no_grad():
        model(x0, cond(2))
        model.set_masks(masks)
        model.set_mode("sparse")
        both = model(x1, cond(2)).clone()
        for b in range(2):
            model.set_mode("full")
            model(x0[b : b + 1], cond(1))
            model.set_masks(masks)
            model.set_mode("sparse")
            torch.testing.assert_close(model(x1[b : b + 1], cond(1)), both[b : b + 1], atol=2e-4, rtol=1e-4)


def test_sparse_pass_changes_only_near_the_edit_at_high_resolution():
    """An edit in one corner: the last full-resolution block's output changes only in the active tiles near it
    (everything else is the cached original); only norm_out, which recomputes its statistics, spreads it."""
    model = tiny_ddpm()
    x0 = torch.randn(1, 3, 32, 32)
    x1 = x0.clone()
    x1[:, :, :6, :6] += 2.0
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:6, :6] = True
    t = torch.full((1,), 10.0)
    seen = []
    model.up[0].block[-1].register_forward_hook(lambda mod, args, out: seen.append(out.clone()))
    with torch.no_grad():
        model(x0, t)
        model.set_masks(mask_pyramid(mask, model.min_resolution()))
        model.set_mode("sparse")
        model(x1, t)
    changed = (seen[1] - seen[0]).abs().amax(dim=1)[0] > 1e-6
    assert changed[:6, :6].all()
    assert not changed[16:, :].any() and not changed[:, 16:].any()


def test_sparse_pass_needs_the_full_pass_timestep():
    model = tiny_ddpm()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        model(x, torch.full((1,), 5.0))
        model.set_masks(mask_pyramid(torch.ones(32, 32, dtype=torch.bool), 16))
        model.set_mode("sparse")
        with pytest.raises(ValueError, match="time embedding"):
            model(x, torch.full((1,), 6.0))
        model.set_cache_id(3)
        with pytest.raises(RuntimeError, match="cache_id=3"):
            model(x, torch.full((1,), 5.0))


def test_bad_input_sizes_are_explained():
    model = tiny_ddpm()
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.randn(1, 3, 31, 32), torch.zeros(1))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 4, 32, 32), torch.zeros(1))
    with pytest.raises(ValueError, match="timesteps"):
        model(torch.randn(2, 3, 32, 32), torch.zeros(3))


def test_attention_uses_statistics_frozen_per_cache_id():
    """The original's DDPM attention stored its statistics without the cache id; here two cache slots keep
    two sets, and sparse passes with each reproduce their own full pass."""
    model = tiny_ddpm()
    xa, xb = torch.randn(1, 3, 32, 32), 3 * torch.randn(1, 3, 32, 32)
    t = torch.full((1,), 2.0)
    with torch.no_grad():
        model.set_cache_id("a")
        ra = model(xa, t).clone()
        model.set_cache_id("b")
        rb = model(xb, t).clone()
        model.set_masks(mask_pyramid(torch.zeros(32, 32, dtype=torch.bool), 16))
        model.set_mode("sparse")
        model.set_cache_id("a")
        torch.testing.assert_close(model(xa, t), ra, atol=2e-4, rtol=1e-4)
        model.set_cache_id("b")
        torch.testing.assert_close(model(xb, t), rb, atol=2e-4, rtol=1e-4)
    s_a, s_b = model.mid.attn_1.stats["a"], model.mid.attn_1.stats["b"]
    assert not torch.allclose(s_a[0], s_b[0])
