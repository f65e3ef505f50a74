"""Latency measurement: warm-up, repeats, median and spread, thread count recorded."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class LatencyResult:
    median_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    repeats: int
    warmup: int
    threads: int
    device: str

    def as_dict(self) -> dict:
        return asdict(self)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device.startswith("mps"):
        torch.mps.synchronize()


@torch.no_grad()
def measure_latency(
    fn: Callable[[], object],
    warmup: int = 3,
    repeats: int = 10,
    device: str = "cpu",
    min_time_s: float = 0.0,
    max_time_s: float | None = None,
) -> LatencyResult:
    """Time ``fn()``: ``warmup`` untimed calls, then at least ``repeats`` timed calls (more until
    ``min_time_s`` has passed; stop early, after at least 3 timed calls, once ``max_time_s`` has passed).
    The device is synchronised around every call."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if max_time_s is not None and elapsed >= max_time_s and len(times) >= 3:
            break
        if len(times) >= repeats and elapsed >= min_time_s:
            break
    return LatencyResult(
        median_ms=statistics.median(times),
        min_ms=min(times),
        max_ms=max(times),
        mean_ms=statistics.fmean(times),
        std_ms=statistics.pstdev(times) if len(times) > 1 else 0.0,
        repeats=len(times),
        warmup=warmup,
        threads=torch.get_num_threads(),
        device=device,
    )
