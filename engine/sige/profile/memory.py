"""Peak tensor memory of a call, from the allocator's own records.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``). CPU: the allocation and
free events that torch's CPU allocator reports to the profiler (``profile_memory=True``), replayed in
time order. The profiler drops the frees of blocks allocated before it started (their size is unknown to
it), so a call that replaces what an earlier call left (a full pass renewing its caches) would read as
if nothing were freed: the call runs twice under the profiler and the second run is read, whose frees of
the first run's blocks are all known. Both count the tensor bytes live during the call above what was
live when it started (weights and caches held before the call are excluded; caches the call fills are
included, net of those it replaces). The
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
        with torch.profiler.record_function(_MARK):
            fn()
    try:
        events = prof.profiler.kineto_results.events()
        start = min(e.start_ns() for e in events if e.name() == _MARK)
    except (AttributeError, ValueError) as exc:  # the record layout changed in this torch version
        raise RuntimeError(
            f"sige.profile.peak_memory_mb cannot read the profiler's memory events in torch {torch.__version__} "
            f"({exc!r}); report it with your torch version"
        ) from exc
    cpu = torch.autograd.DeviceType.CPU
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]" and e.device_type() == cpu)
    live = peak = 0
    for t, nbytes in deltas:
        if t < start:
            continue  # the first run: only brings the state the measured run starts from
        live += nbytes
        peak = max(peak, live)
    return peak


_MARK = "sige.peak_memory.measured_call"


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
