"""Measuring a SIGEModel's variants on one edit: dense (``original``), the paper's sparse configuration
(``sige``) and our tuned one (``sige_fast``); MACs in both counting conventions, latency, peak memory, active
fraction, optional sparse-vs-dense PSNR. The columns are the benchmark contract's (see README); provenance is
added by :mod:`sigebench.tasks`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sige import backends
from sige.mask import num_blocks
from sige.nn.base import SIGEModel
from sige.nn.conv_algorithms import set_conv_algorithm
from sige.nn.gather import Gather
from sige.profile import macs_by_convention, measure_latency, peak_memory_mb

VARIANTS = ("original", "sige", "sige_fast")
# Block grid per sparse variant: "sige" reproduces the paper's counts, "sige_fast" drops out-of-map blocks.
VARIANT_GRID = {"sige": "original", "sige_fast": "trimmed"}
CONV_ALGORITHM = {"sige": "conv", "sige_fast": "auto"}


@dataclass
class Timing:
    """How latency is measured (warm-up calls, at least ``repeats`` timed calls, time caps in seconds)."""

    warmup: int = 2
    repeats: int = 5
    min_time_s: float = 0.0
    max_time_s: float | None = 60.0
    enabled: bool = True


def active_fraction(model: torch.nn.Module, block_grid: str = "trimmed") -> float:
    """Active blocks over candidate blocks (of ``block_grid``), summed over every Gather that has a mask."""
    active = total = 0
    for m in model.modules():
        if isinstance(m, Gather) and m.active_indices is not None and m.input_res is not None:
            geo = m.geometry
            out = m.output_res
            grid = block_grid if out is not None else "original"
            nh = num_blocks(m.input_res[0], geo.block_size[0], geo.block_stride[0], geo.offset[0],
                            geo.conv_stride[0], out[0] if out else 0, grid)  # fmt: skip
            nw = num_blocks(m.input_res[1], geo.block_size[1], geo.block_stride[1], geo.offset[1],
                            geo.conv_stride[1], out[1] if out else 0, grid)  # fmt: skip
            active += int(m.active_indices.shape[0])
            total += nh * nw
    return active / total if total else 0.0


def timed(fn: Callable[[], Any], timing: Timing, device: str) -> dict[str, float | None]:
    """The latency and peak-memory columns of a row for ``fn()`` (None everywhere when timing is off)."""
    if not timing.enabled:
        return {"latency_ms": None, "latency_ms_min": None, "latency_ms_max": None, "peak_mem_mb": None}
    lat = measure_latency(fn, timing.warmup, timing.repeats, device, timing.min_time_s, timing.max_time_s)
    return {
        "latency_ms": round(lat.median_ms, 4),
        "latency_ms_min": round(lat.min_ms, 4),
        "latency_ms_max": round(lat.max_ms, 4),
        "peak_mem_mb": round(peak_memory_mb(fn, device), 2),
    }


def timed_calls(fn: Callable[[], Any], timing: Timing, device: str, count: int, warmup: int) -> list[float]:
    """``warmup`` untimed calls, then ``count`` (at least 1) timed ones in ms; after ``max_time_s`` / 2 (the
    dense figure is timed in two halves) it stops once 2 are taken. Empty when timing is off."""
    if not timing.enabled:
        return []
    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
        if timing.max_time_s is not None and elapsed >= timing.max_time_s / 2 and len(times) >= 2:
            break
        if len(times) >= max(count, 1) and elapsed >= timing.min_time_s / 2:
            break
    return times


def latency_columns(times: Sequence[float]) -> dict[str, float | None]:
    """The latency columns of a row from its timed calls (ms; None everywhere without any)."""
    if not times:
        return {"latency_ms": None, "latency_ms_min": None, "latency_ms_max": None}
    return {"latency_ms": round(statistics.median(times), 4), "latency_ms_min": round(min(times), 4),
            "latency_ms_max": round(max(times), 4)}  # fmt: skip


def timed_rounds(
    runs: Mapping[str, tuple[Callable[[], None], Callable[[], Any]]], timing: Timing, device: str
) -> dict[str, dict[str, float | None]]:
    """The latency and peak-memory columns of several configurations of one model, ``{name: (set_up, fn)}``,
    timed in rounds: each round sets up each configuration in turn, runs it once untimed (the first time
    ``timing.warmup`` times), then times one call. A shared machine's drift (this project's VMs vary by 10-30 %
    over minutes) then falls on every configuration alike instead of on whichever ran last, so their
    latencies compare within noise. Rounds: at least ``timing.repeats`` and until ``min_time_s``; stop after at
    least 3 once ``max_time_s`` has passed."""
    if not timing.enabled:
        return {name: timed(fn, timing, device) for name, (_, fn) in runs.items()}
    if timing.repeats < 1 or timing.warmup < 0:
        raise ValueError(f"need timing.repeats >= 1 and timing.warmup >= 0, got {timing.repeats}, {timing.warmup}")
    samples: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    while True:
        for name, (set_up, fn) in runs.items():
            set_up()
            for _ in range(1 if samples[name] else max(timing.warmup, 1)):
                fn()  # after switching: the configuration's first call (index rebuilds, buffer reuse)
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append((time.perf_counter() - t0) * 1e3)
        rounds, elapsed = len(next(iter(samples.values()))), time.perf_counter() - start
        if timing.max_time_s is not None and elapsed >= timing.max_time_s and rounds >= 3:
            break
        if rounds >= timing.repeats and elapsed >= timing.min_time_s:
            break
    out = {}
    for name, (set_up, fn) in runs.items():
        set_up()
        out[name] = {**latency_columns(samples[name]), "peak_mem_mb": round(peak_memory_mb(fn, device), 2)}
    return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def output_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR (dB) of an output ``x`` against a reference output, with the reference's range (max - min) as
    the peak; ``inf`` when they are identical."""
    x, ref = x.double(), ref.double()
    mse = float(torch.nn.functional.mse_loss(x, ref))
    if mse == 0.0:
        return math.inf
    rng = float(ref.max() - ref.min()) or 1.0
    return 10.0 * math.log10(rng * rng / mse)


def set_up_sparse(
    model: SIGEModel,
    variant: str,
    masks: Mapping[tuple[int, int], torch.Tensor],
    configure: Callable[[SIGEModel, str], None] | None = None,
) -> None:
    """Put a model whose caches hold the original's full pass into a sparse variant's configuration: ``sige``
    the original engine's computation (paper block grid, library conv), ``sige_fast`` the trimmed grid and each
    conv layer's faster algorithm (measured on its first sparse pass), plus the family's ``configure``."""
    set_conv_algorithm(model, CONV_ALGORITHM[variant])
    if configure is not None:
        configure(model, variant)
    model.set_masks(masks, block_grid=VARIANT_GRID[variant])
    model.set_mode("sparse")


@torch.no_grad()
def measure_variants(
    model: SIGEModel,
    original_args: Sequence[Any],
    edited_args: Sequence[Any],
    masks: Mapping[tuple[int, int], torch.Tensor],
    variants: Sequence[str] = VARIANTS,
    timing: Timing | None = None,
    device: str = "cpu",
    configure: Callable[[SIGEModel, str], None] | None = None,
    fidelity: bool = False,
    dtype: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """Measure a SIGEModel's variants on one edit: MACs (both conventions), latency, peak memory, active
    fraction and, with ``fidelity``, the PSNR of each sparse output against the dense one.

    ``original``: the dense model (full mode) on the edited input. ``sige`` / ``sige_fast``: sparse passes
    on the edited input with the variant's block grid, after one full pass on the original input (the
    caches do not depend on the block grid, so it serves every sparse variant). ``configure(model,
    variant)`` may change the model per variant (block sizes, attention mode) before it runs.

    ``dtype`` (e.g. bfloat16) different from the model's: the dense float output of the edited input is
    computed first, then the model and the inputs are converted and every variant's row gets
    ``psnr_vs_float32_db``, the PSNR of its output against that float output.
    """
    timing = timing or Timing()
    for variant in variants:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; use {', '.join(VARIANTS)}")
    backend = backends.name_for(device.split(":")[0])
    rows: dict[str, dict[str, Any]] = {}
    model.clear_cache()
    model.set_mode("full")
    if configure is not None and "original" in variants:
        configure(model, "original")
    reference = None  # the float output the reduced-precision outputs are compared with
    if dtype is not None and dtype != _param_dtype(model):
        reference = model(*edited_args).float()
        model.clear_cache()
        model.to(dtype)
        original_args, edited_args = _cast(original_args, dtype), _cast(edited_args, dtype)

    def vs_float(out: torch.Tensor) -> dict[str, float | None]:
        if reference is None:
            return {}
        q = output_psnr(out.float(), reference)
        return {"psnr_vs_float32_db": None if math.isinf(q) else round(q, 3)}

    dense = model(*edited_args).clone() if fidelity or reference is not None else None
    if "original" in variants:
        paper, total = macs_by_convention(model, tuple(edited_args))
        rows["original"] = {
            "variant": "original", "backend": backend, "block_grid": "", "macs": paper,
            "macs_with_fused_attention": total, "active_fraction": 1.0,
            **({"psnr_vs_dense_db": None} if fidelity else {}), **(vs_float(dense) if dense is not None else {}),
        }  # fmt: skip
    sparse_variants = [v for v in variants if v != "original"]
    dense_ms: list[float] = []
    if "original" in variants:
        # with sparse variants, half the dense repeats now and half after theirs (the full pass on the edited
        # input replaces the original's caches, so it cannot join their rounds): the drift of the machine over
        # the sparse rounds then weighs on the dense figure too, not on the speedup alone
        first = math.ceil(timing.repeats / 2) if sparse_variants else timing.repeats
        dense_ms = timed_calls(lambda: model(*edited_args), timing, device, first, timing.warmup)
        rows["original"]["peak_mem_mb"] = (
            round(peak_memory_mb(lambda: model(*edited_args), device), 2) if timing.enabled else None
        )
    if sparse_variants:
        model.clear_cache()
        model.set_mode("full")
        model(*original_args)

        def set_up(variant: str) -> None:
            set_up_sparse(model, variant, masks, configure)

        for variant in sparse_variants:
            set_up(variant)
            grid = VARIANT_GRID[variant]
            if CONV_ALGORITHM[variant] == "auto" and timing.enabled:
                model(*edited_args)  # the per-layer measurements happen here, outside the timed passes
            row = {"variant": variant, "backend": backend, "block_grid": grid}
            if dense is not None:
                out = model(*edited_args)
                if fidelity:
                    quality = output_psnr(out, dense)
                    row["psnr_vs_dense_db"] = None if math.isinf(quality) else round(quality, 3)
                row.update(vs_float(out))
            paper, total = macs_by_convention(model, tuple(edited_args))
            row.update(macs=paper, macs_with_fused_attention=total)
            row["active_fraction"] = round(active_fraction(model, grid), 6)
            row["cache_mb"] = round(model.cache_nbytes() / 2**20, 2)  # what the session holds besides the weights
            rows[variant] = row
        # the sparse variants' latencies in interleaved rounds, so that `sige_fast` vs `sige` is not the drift of
        # the machine between two blocks of repeats
        runs = {v: (lambda v=v: set_up(v), lambda: model(*edited_args)) for v in sparse_variants}
        for variant, columns in timed_rounds(runs, timing, device).items():
            rows[variant].update(columns)
        model.set_mode("full")
        if "original" in variants and timing.enabled:
            if configure is not None:
                configure(model, "original")
            dense_ms += timed_calls(lambda: model(*edited_args), timing, device, timing.repeats - len(dense_ms), 1)
    if "original" in variants:
        rows["original"].update(latency_columns(dense_ms))
    set_conv_algorithm(model, "conv")
    model.clear_cache()
    model.set_mode("full")
    return [rows[v] for v in variants]


def _param_dtype(model: torch.nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _cast(args: Any, dtype: torch.dtype) -> Any:
    """Floating-point tensors in ``args`` (nested tuples, lists, dicts) in ``dtype``; integer tensors such as
    timesteps or labels stay."""
    if isinstance(args, torch.Tensor):
        return args.to(dtype) if args.is_floating_point() else args
    if isinstance(args, tuple | list):
        return type(args)(_cast(a, dtype) for a in args)
    if isinstance(args, dict):
        return {k: _cast(v, dtype) for k, v in args.items()}
    return args


def active_tiles_mask(gather: Gather) -> torch.Tensor:
    """``bool [H_out, W_out]``: the output pixels a Gather's active blocks recompute (for figures)."""
    if gather.active_indices is None or gather.output_res is None:
        raise RuntimeError("run a full pass and set_masks before asking for the active tiles")
    geo = gather.geometry
    H, W = gather.output_res
    out = torch.zeros(H, W, dtype=torch.bool)
    th, tw = geo.tile_size
    for i, j in gather.active_indices.tolist():
        r, c = (i + geo.offset[0]) // geo.conv_stride[0], (j + geo.offset[1]) // geo.conv_stride[1]
        out[r : r + th, c : c + tw] = True
    return out


@torch.no_grad()
def panel_outputs(
    model: SIGEModel,
    original_args: Sequence[Any],
    edited_args: Sequence[Any],
    masks: Mapping[tuple[int, int], torch.Tensor],
    image_size: tuple[int, int],
    block_grid: str = "trimmed",
) -> dict[str, Any]:
    """Dense and sparse outputs of one edit plus the active tiles of the highest-resolution Gather, scaled to
    ``image_size`` (for the qualitative figures of ``make figures``)."""
    model.clear_cache()
    model.set_mode("full")
    dense = model(*edited_args).clone()
    model(*original_args)
    model.set_masks(masks, block_grid=block_grid)
    model.set_mode("sparse")
    sparse = model(*edited_args).clone()
    gathers = [m for m in model.modules() if isinstance(m, Gather) and m.active_indices is not None and m.output_res]
    top = max(gathers, key=lambda g: g.output_res[0] * g.output_res[1])
    tiles = active_tiles_mask(top).float()[None, None]
    blocks = torch.nn.functional.interpolate(tiles, size=image_size, mode="nearest")[0, 0] > 0.5
    model.set_mode("full")
    model.clear_cache()
    return {"dense": dense, "sparse": sparse, "blocks": blocks.cpu().numpy()}
