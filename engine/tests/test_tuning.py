import torch
import torch.nn.functional as F
from helpers import ConvModel, ResStack, random_mask

from sige.nn.tuning import autotune_block_sizes, block_size_candidates, set_block_sizes


def test_resize_changes_geometry_and_stays_exact():
    model = ConvModel(3, 4, 3, 1, 1, 6).eval()
    x0 = torch.randn(1, 3, 30, 26)
    mask = random_mask((30, 26), "random", torch.Generator().manual_seed(0))
    x1 = x0 + torch.randn(1, 3, 30, 26) * mask
    with torch.no_grad():
        model(x0)
        for b in (3, 6, 10, 18):
            set_block_sizes(model, {3: b})
            assert model.gather.block_size == (b, b)
            model.set_masks({(30, 26): mask})
            model.set_mode("sparse")
            dense = F.conv2d(x1, model.conv.weight, model.conv.bias, padding=1)
            torch.testing.assert_close(model(x1), dense, atol=1e-5, rtol=1e-5)
            model.set_mode("full")


def test_autotune_picks_one_of_the_candidates_and_leaves_masks_set():
    model = ResStack((4, 8)).eval()
    x0 = torch.randn(1, 4, 24, 24)
    mask = random_mask((24, 24), "random", torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(x0)
        model.set_mode("sparse")
        cands = [{3: 6, 1: 4}, {3: 10, 1: 8}]
        best, tried = autotune_block_sizes(model, lambda: model(x0), {(24, 24): mask}, cands, repeats=1)
        assert best in cands and len(tried) == 2
        assert model.blocks[0].main_gather.block_size == (best[3], best[3])
        assert model.blocks[0].main_gather.active_indices is not None
        model(x0)
        set_block_sizes(model, {3: 18, 1: 16})
        again, tried_again = autotune_block_sizes(model, lambda: model(x0), {(24, 24): mask}, cands, repeats=1)
        assert again == best and tried_again == []  # cached for this model class, mask and thread count
        assert model.blocks[0].main_gather.block_size == (best[3], best[3])


def test_block_size_candidates_give_whole_tiles():
    assert block_size_candidates(3) == [6, 8, 10, 14, 18]
    assert block_size_candidates(3, stride=2) == [9, 13, 17, 25, 33]
