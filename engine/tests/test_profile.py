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
    assert 64.0 <= peak_memory_mb(lambda: torch.ones(4096, 4096).sum()) < 64.01  # the tensor and a scalar


def test_peak_memory_counts_what_a_call_frees_of_state_allocated_before_it():
    """A call that renews a cache allocated before it (as a full pass does) frees the old one first: the
    profiler cannot see that free for a block it did not see allocated, so the measured run is the second."""
    state = {"cache": torch.ones(2048, 4096)}  # 32 MiB, allocated before any measurement

    def renew():
        state["cache"] = None  # the old cache goes first
        state["cache"] = torch.ones(2048, 4096)  # the new one: the same size
        torch.ones(1024, 4096).sum()  # 16 MiB of temporaries on top

    assert 16.0 <= peak_memory_mb(renew) < 16.01


def test_peak_memory_matches_the_resident_set_when_malloc_returns_every_block(tmp_path):
    """With glibc returning every large block to the system (mmap threshold 64 KiB), the resident set
    tracks live memory; its peak growth during a conv stack must match the allocator figure."""
    import os
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text(
        """
import os, threading, time, torch
from sige.profile import peak_memory_mb
torch.set_num_threads(1)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
x, conv = torch.randn(1, 32, 192, 192), torch.nn.Conv2d(32, 32, 3, padding=1)
def work():
    h = x
    for _ in range(4):
        h = torch.relu(conv(h)) + h
    return h.sum()
with torch.no_grad():
    work()
    base, peak, stop = rss(), [0], threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss()); time.sleep(0.0002)
    t = threading.Thread(target=sample); t.start(); work(); stop.set(); t.join()
    print((peak[0] - base) / 2**20, peak_memory_mb(work))
"""
    )
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rss_mb, alloc_mb = (float(v) for v in out.stdout.split())
    assert alloc_mb > 4 * 32 * 192 * 192 * 4 / 2**20 / 2  # at least the conv outputs that are alive at once
    assert abs(rss_mb - alloc_mb) <= 0.1 * alloc_mb, (rss_mb, alloc_mb)
