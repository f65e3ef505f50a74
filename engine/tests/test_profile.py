import torch
from helpers import ResStack, random_mask

from sige.example import ExampleModel
from sige.profile import macs, measure_latency, peak_memory_mb


def test_sparse_macs_equal_the_derived_count():
    model = ExampleModel().eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 40, 36, generator=gen)
    mask = random_mask((40, 36), "blobs", gen)
    with torch.no_grad():
        model(x)
        assert macs(model, (x,)) == 2 * 32 * 16 * 9 * 40 * 36
        model.set_masks({(40, 36): mask})
        model.set_mode("sparse")
        n = model.example_module.gather.active_indices.shape[0]
        assert macs(model, (x,)) == 2 * n * 16 * 32 * 16 * 9  # batch x blocks x 4x4 tile x Cin x Cout x 3x3
        assert model.mode == "sparse"  # macs() switched to profile mode and back


def test_resblock_profile_counts_fused_elementwise_work():
    model = ResStack((4, 8)).eval()
    x = torch.randn(1, 4, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[5, 5] = True
    with torch.no_grad():
        model(x)
        model.set_masks({(16, 16): mask})
        model.set_mode("sparse")
        sparse = macs(model, (x,))
    g = model.blocks[0].main_gather
    n = g.active_indices.shape[0]
    s = model.blocks[0].shortcut_gather.active_indices.shape[0]
    convs = n * 16 * (4 * 8 * 9 + 8 * 8 * 9) + s * 16 * 4 * 8
    elementwise = n * 36 * (4 + 8) * 2  # per gathered block: scale multiply + swish multiply, for 4 and 8 channels
    assert sparse == convs + elementwise


def test_latency_and_memory_helpers():
    r = measure_latency(lambda: torch.ones(100).sum(), warmup=1, repeats=3)
    assert r.repeats >= 3 and r.min_ms <= r.median_ms <= r.max_ms and r.threads == torch.get_num_threads()
    assert peak_memory_mb(lambda: torch.ones(4096, 4096).sum()) >= 0.0
