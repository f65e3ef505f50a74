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


def test_non_finite_inputs_are_refused_by_the_difference_mask():
    from sige.mask import compute_difference_mask

    a = torch.zeros(3, 8, 8)
    b = a.clone()
    b[0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="edited input has 1 non-finite"):
        compute_difference_mask(a, b)
    a[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="original input has 1 non-finite"):
        compute_difference_mask(a, a)


def test_input_dtype_other_than_the_weights_is_named():
    model, x = model_and_input()
    model(x)
    model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool)})
    model.set_mode("sparse")
    with pytest.raises(TypeError, match="input is float16 but the model's weights are float32"):
        model(x.half())


def test_masks_on_another_device_type_are_named():
    model, x = model_and_input()
    model(x)
    with pytest.raises(ValueError, match=r"mask for \(16, 16\) is on meta but the model is on cpu"):
        model.set_masks({(16, 16): torch.ones(16, 16, dtype=torch.bool, device="meta")})


def test_per_sample_masks_must_match_the_batch():
    model = ConvModel(3, 4, 3, 1, 1, 6).eval()
    model(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="5 samples but the full pass had a batch of 2"):
        model.set_masks({(16, 16): torch.ones(5, 16, 16, dtype=torch.bool)})
    model.set_masks({(16, 16): torch.ones(2, 16, 16, dtype=torch.bool)})  # one per sample is fine
    model.set_masks({(16, 16): torch.ones(1, 16, 16, dtype=torch.bool)})


def test_undilated_pyramids_warn_once_for_chained_sparse_convs():
    import warnings

    from sige.mask import downsample_mask

    model, x = ResStack(), torch.randn(1, 8, 16, 16)
    model(x)
    m = torch.zeros(16, 16, dtype=torch.bool)
    m[4, 4] = True
    with pytest.warns(RuntimeWarning, match="dilation 0"):
        model.set_masks(downsample_mask(m, min_res=16, dilation=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.set_masks(downsample_mask(m, min_res=16, dilation=0))  # once per model
        model.set_masks(downsample_mask(m, min_res=16, dilation=1))


def test_odd_sizes_follow_the_models_own_resolutions():
    """A stride-2 conv rounds up (37 -> 19) where halving rounds down (18): sizes= builds the model's pyramid."""
    from torch import nn

    from sige.mask import downsample_mask
    from sige.nn import SIGEModel
    from sige.nn.blocks import Downsample, ResBlock

    class Net(SIGEModel):
        def __init__(self):
            super().__init__()
            self.a, self.down, self.b = ResBlock(8, 8, num_groups=4), Downsample(8, padding="symmetric"), nn.Identity()
            self.c = ResBlock(8, 8, num_groups=4)

        def forward(self, x):
            return self.c(self.down(self.a(x)))

    net, ref = Net().eval(), Net().eval()
    ref.load_state_dict(net.state_dict())
    for m in (ref.a, ref.down, ref.c):
        m.sparse = False  # dense, with the frozen statistics of the full pass, in sparse mode
    x0 = torch.randn(1, 8, 37, 53)
    x1 = x0.clone()
    x1[..., 10:14, 20:26] += 1
    with torch.no_grad():
        ref(x0)
        ref.set_mode("sparse")
        dense = ref(x1)
        net(x0)
        assert net.mask_resolutions() == [(37, 53), (19, 27)]
        with pytest.raises(KeyError, match=r"\(19, 27\).*sizes=model.mask_resolutions"):
            net.set_masks(downsample_mask(torch.ones(37, 53, dtype=torch.bool), min_res=4))
        mask = torch.zeros(37, 53, dtype=torch.bool)
        mask[10:14, 20:26] = True
        net.set_masks(downsample_mask(mask, dilation=4, sizes=net.mask_resolutions()))
        net.set_mode("sparse")
        torch.testing.assert_close(net(x1), dense, atol=1e-4, rtol=1e-4)
