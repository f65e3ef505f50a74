"""Bad input gets a clear error that says what was wrong and what to do."""

import pytest
import torch
from helpers import ConvModel, ResStack


def model_and_input():
    return ConvModel(3, 4, 3, 1, 1, 6).eval(), torch.randn(1, 3, 16, 16)


def test_sparse_before_full_pass():
    model, x = model_and_input()
    with pytest.raises(RuntimeError, match="full forward pass"):
        model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})


def test_sparse_without_masks():
    model, x = model_and_input()
    model(x)
    model.set_mode("sparse")
    with pytest.raises(RuntimeError, match="set_masks"):
        model(x)


def test_missing_resolution():
    model, x = model_and_input()
    model(x)
    with pytest.raises(KeyError, match=r"resolution \(16, 16\).*\(8, 8\)"):
        model.set_masks({(8, 8): torch.ones(8, 8, dtype=torch.bool)})


def test_bad_masks_argument():
    model, x = model_and_input()
    model(x)
    with pytest.raises(TypeError, match="dict"):
        model.set_masks(torch.ones(16, 16))
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        model.set_masks({(16, 16): torch.ones(8, 8)})
    with pytest.raises(ValueError, match="block_grid"):
        model.set_masks({(16, 16): torch.ones(16, 16)}, block_grid="dense")


def test_wrong_rank_and_dtype():
    model, x = model_and_input()
    with pytest.raises(ValueError, match="4-D"):
        model(x[0])
    with pytest.raises(TypeError, match="float64"):
        model(x.double())


def test_mismatched_cache_shapes():
    model, x = model_and_input()
    model(x)
    model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})
    model.set_mode("sparse")
    with pytest.raises(ValueError, match="full pass recorded"):
        model(torch.randn(1, 3, 20, 20))
    with pytest.raises(ValueError, match="batch"):
        model(torch.randn(2, 3, 16, 16))


def test_missing_cache_id():
    model, x = model_and_input()
    model(x)
    model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})
    model.set_mode("sparse")
    model.set_cache_id(7)
    with pytest.raises(RuntimeError, match="cache_id=7"):
        model(x)


def test_cached_output_modified_in_place():
    model, x = model_and_input()
    out = model(x)
    out += 1  # corrupts the cache the Scatter holds by reference
    model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})
    model.set_mode("sparse")
    with pytest.raises(RuntimeError, match="modified in place"):
        model(x)


def test_scatter_gather_with_a_different_geometry():
    model = ResStack((4, 4)).eval()
    block = model.blocks[0]
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        model(x)
        model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})
        model.set_mode("sparse")
        # feed ScatterGather tiles from a conv of another geometry (a 1x1 conv keeps 6x6 blocks)
        blocks = block.main_gather(x)
        wrong = torch.nn.functional.conv2d(blocks, torch.randn(4, 4, 1, 1))
        with pytest.raises(ValueError, match="geometry"):
            block.scatter_gather(wrong)


def test_unknown_mode_and_activation():
    model, _ = model_and_input()
    with pytest.raises(ValueError, match="unknown mode"):
        model.set_mode("dense")
    from sige.nn import Gather

    with pytest.raises(ValueError, match="unknown activation"):
        Gather(torch.nn.Conv2d(2, 2, 3, padding=1), 6, activation_name="mish")


def test_block_size_adjustment_warns():
    from sige.nn import Gather

    with pytest.warns(UserWarning, match=r"\(6, 6\) to \(5, 5\)"):
        g = Gather(torch.nn.Conv2d(2, 2, 3, stride=2), 6)
    assert g.block_size == (5, 5) and g.block_stride == (4, 4)
