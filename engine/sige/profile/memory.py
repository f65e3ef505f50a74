"""Peak memory of a call: CUDA allocator peak on GPUs, resident-set growth (sampled) on the CPU."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch


def _rss_bytes() -> int:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # non-Linux: fall back to the high-water mark
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@torch.no_grad()
def peak_memory_mb(fn: Callable[[], object], device: str = "cpu", interval_s: float = 0.002) -> float:
    """Peak memory (MiB) used while ``fn()`` runs, above what was in use before the call.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the resident set sampled every ``interval_s``
    (an estimate: allocations freed between samples can be missed)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    base = _rss_bytes()
    peak = base
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _rss_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        stop.set()
        thread.join()
    peak = max(peak, _rss_bytes())
    return max(peak - base, 0) / 2**20
