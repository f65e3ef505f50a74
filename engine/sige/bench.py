"""Benchmark plumbing shared by every subproject: measuring a SIGEModel's variants and writing rows.

Every row follows the benchmark contract of docs/architecture.md: what was measured (model,
component, edit, variant, MACs, latency median/min/max, peak memory, edited and active fractions)
and how (threads, device, dtype, weights, backend, settings, command, machine, torch and code
version, time).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sige import backends
from sige.mask import num_blocks
from sige.nn.base import SIGEModel
from sige.nn.gather import Gather
from sige.profile import macs_by_convention, measure_latency, peak_memory_mb

COLUMNS = [
    "model", "component", "edit", "variant", "macs", "latency_ms", "latency_ms_min", "latency_ms_max",
    "peak_mem_mb", "edited_fraction", "active_fraction", "threads", "device", "dtype", "weights",
    "backend", "block_grid", "settings", "settings_key", "command", "machine", "torch", "code_version", "timestamp",
]  # fmt: skip

VARIANTS = ("original", "sige", "sige_fast")
# Block grid per sparse variant: "sige" reproduces the paper's counts, "sige_fast" drops out-of-map blocks.
VARIANT_GRID = {"sige": "original", "sige_fast": "trimmed"}


@dataclass
class Timing:
    """How latency is measured (warm-up calls, at least ``repeats`` timed calls, time caps in seconds)."""

    warmup: int = 2
    repeats: int = 5
    min_time_s: float = 0.0
    max_time_s: float | None = 60.0
    enabled: bool = True


def machine_id() -> str:
    """A short description of this machine: CPU model and core count (or the GPU name)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} x{os.cpu_count()}"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Git commit of the checkout; with uncommitted changes to the code, ``+dirty-<hash of the changes>``
    (so rows measured on the same uncommitted code still count as the same version)."""
    root = Path(__file__).resolve().parents[2]
    paths = ["engine", "diffusion", "gaugan", "sdxl", "configs", "scripts"]

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout

    try:
        head = git("rev-parse", "--short=12", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=all", "--", *paths)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    if not status.strip():
        return head
    digest = hashlib.sha1(git("diff", "HEAD", "--", *paths).encode())
    for line in sorted(status.splitlines()):
        if line.startswith("??"):
            f = root / line[3:]
            digest.update(line.encode() + (f.read_bytes() if f.is_file() else b""))
    return f"{head}+dirty-{digest.hexdigest()[:8]}"


def settings_key(settings: Mapping[str, Any]) -> str:
    """Stable hash of the settings that determine a row (for resuming sweeps)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def provenance(settings: Mapping[str, Any], command: str | None = None) -> dict[str, Any]:
    """Columns that say how a row was produced."""
    return {
        "settings": json.dumps(settings, sort_keys=True, default=str),
        "settings_key": settings_key(settings),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine_id(),
        "torch": torch.__version__,
        "code_version": code_version(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def append_rows(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = COLUMNS) -> None:
    """Append rows to a CSV whose header starts with ``columns`` (the contract's, by default); other keys
    get trailing columns of their own (an existing file is rewritten when its header must grow)."""
    rows = list(rows)
    if not rows:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        _append_unlocked(path, rows, columns)


@contextmanager
def _locked(path: Path):
    """Exclusive lock beside ``path`` so parallel sweep jobs append whole rows (POSIX; no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _append_unlocked(path: Path, rows: list[Mapping[str, Any]], columns: Sequence[str]) -> None:
    existing = read_rows(path) if path.exists() else []
    header = list(columns)
    for r in [*existing, *rows]:
        header += [k for k in r if k not in header]
    rewrite = path.exists() and existing and list(existing[0].keys()) != header
    mode = "w" if rewrite or not path.exists() else "a"
    with open(path, mode, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        if mode == "w":
            writer.writeheader()
            if rewrite:
                writer.writerows(existing)
        writer.writerows(rows)


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


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


def output_psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR (dB) of an output ``x`` against a reference output, with the reference's range (max - min) as
    the peak; ``inf`` when they are identical."""
    x, ref = x.double(), ref.double()
    mse = float(torch.nn.functional.mse_loss(x, ref))
    if mse == 0.0:
        return math.inf
    rng = float(ref.max() - ref.min()) or 1.0
    return 10.0 * math.log10(rng * rng / mse)


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
) -> list[dict[str, Any]]:
    """Measure a SIGEModel's variants on one edit: MACs (both conventions), latency, peak memory, active
    fraction and, with ``fidelity``, the PSNR of each sparse output against the dense one.

    ``original``: the dense model (full mode) on the edited input. ``sige`` / ``sige_fast``: sparse passes
    on the edited input with the variant's block grid, after one full pass on the original input (the
    caches do not depend on the block grid, so it serves every sparse variant). ``configure(model,
    variant)`` may change the model per variant (block sizes, attention mode) before it runs.
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
    dense = model(*edited_args).clone() if fidelity else None
    if "original" in variants:
        paper, total = macs_by_convention(model, tuple(edited_args))
        rows["original"] = {
            "variant": "original", "backend": backend, "block_grid": "", "macs": paper,
            "macs_with_fused_attention": total, "active_fraction": 1.0,
            **({"psnr_vs_dense_db": None} if fidelity else {}),
            **timed(lambda: model(*edited_args), timing, device),
        }  # fmt: skip
    sparse_variants = [v for v in variants if v != "original"]
    if sparse_variants:
        model.clear_cache()
        model.set_mode("full")
        model(*original_args)
        for variant in sparse_variants:
            if configure is not None:
                configure(model, variant)
            grid = VARIANT_GRID[variant]
            model.set_masks(masks, block_grid=grid)
            model.set_mode("sparse")
            row = {"variant": variant, "backend": backend, "block_grid": grid}
            if dense is not None:
                quality = output_psnr(model(*edited_args), dense)
                row["psnr_vs_dense_db"] = None if math.isinf(quality) else round(quality, 3)
            paper, total = macs_by_convention(model, tuple(edited_args))
            row.update(macs=paper, macs_with_fused_attention=total)
            row["active_fraction"] = round(active_fraction(model, grid), 6)
            row.update(timed(lambda: model(*edited_args), timing, device))
            rows[variant] = row
            model.set_mode("full")
    model.clear_cache()
    model.set_mode("full")
    return [rows[v] for v in variants]


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
