"""Peak tensor memory of a call, from the allocator's own records.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``). CPU: the allocation and
free events that torch's CPU allocator reports to the profiler (``profile_memory=True``), replayed in
time order. Both count the tensor bytes live during the call above what was live when it started
(weights and caches held before the call are excluded; caches the call fills are included). The
resident set is not used: after a warm-up, malloc reuses freed pages, so RSS growth reads ~0 for a
pass that allocates gigabytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # silences kineto on stderr (read at its first use)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()
    except AttributeError as exc:  # the record layout changed in this torch version
        raise RuntimeError(
            f"sige.profile.peak_memory_mb cannot read the profiler's memory events in torch {torch.__version__} "
            f"({exc}); report it with your torch version"
        ) from exc
    cpu = torch.autograd.DeviceType.CPU
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]" and e.device_type() == cpu)
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


@torch.no_grad()
def peak_memory_mb(fn: Callable[[], object], device: str = "cpu") -> float:
    """Peak tensor memory (MiB) live while ``fn()`` runs, above what was live before the call."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    return _cpu_peak_bytes(fn) / 2**20
