"""``task=throughput``: images per second and peak memory by batch size, dense against sparse.

The family prepares its one-sample case; a batch of ``B`` repeats the original input, and with
``task.edits=own`` every sample gets its own edit: the case's edit moved across the image (rolled by a
per-sample offset, a multiple of the model's coarsest mask cell so that every mask level moves with it,
wrapping around the border). With ``task.edits=shared`` every sample carries the same edit. The engine
keeps one set of active blocks per batch (the union of the samples' masks), so with ``own`` edits the
sparse work grows with the union: the rows show what that costs.

Batch sizes double from 1 (or follow ``task.batch_sizes``) until ``task.max_batch``, or until the next
batch would not fit: on the CPU the projected peak (this batch's peak tensor memory and caches, scaled to
the next batch) must stay under ``task.memory_fraction`` of the available memory; on CUDA an out-of-memory
error ends the sweep (reported in the last row's ``stopped`` column). Rows go to ``task.output``
(``results/throughput.csv``, shards under ``results/rows/throughput/``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from sigebench.config import ConfigError
from sigebench.provenance import code_version, machine_id, provenance, settings_key
from sigebench.results import ResultsStore
from sigebench.tasks import _component, absolute_output, edit_label, ordered, prepare_config
from sigebench.variants import VARIANT_GRID, Timing, _cast, timed

DEFAULTS = {"batch_sizes": None, "max_batch": 64, "memory_fraction": 0.8, "edits": "own",
            "output": "results/throughput.csv"}  # fmt: skip


def available_memory_mb() -> float:
    """MemAvailable of /proc/meminfo (what the kernel can give without swapping), in MiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import os

    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def _batched(args: Sequence[Any], base: int, times: int) -> tuple:
    """Tensor arguments whose leading dimension is the case's batch, repeated ``times`` times."""
    return tuple(
        a.repeat(times, *([1] * (a.dim() - 1))) if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == base
        else a
        for a in args
    )  # fmt: skip


def _roll_edit(original: Any, edited: Any, shift: tuple[int, int], base: int) -> Any:
    """``original + roll(edited - original)`` for the spatial tensors of the case (4-D, full resolution)."""
    if isinstance(edited, torch.Tensor) and edited.dim() == 4 and edited.is_floating_point():
        return original + torch.roll(edited - original, shifts=shift, dims=(2, 3))
    return edited


def batch_case(case: Any, batch: int, own_edits: bool) -> tuple[tuple, tuple, dict]:
    """(original args, edited args, masks) of a batch of ``batch`` samples of the family's case."""
    first = next(a for a in case.original if isinstance(a, torch.Tensor) and a.dim() == 4)
    base = int(first.shape[0])  # 1, or 2 for a classifier-free-guidance pair
    H, W = int(first.shape[2]), int(first.shape[3])
    coarse = min(case.masks, key=lambda r: r[0] * r[1])
    cell = (max(1, H // coarse[0]), max(1, W // coarse[1]))  # input pixels per coarsest mask pixel
    original = _batched(case.original, base, batch)
    if not own_edits or batch == 1:
        edited = _batched(case.edited, base, batch)
        masks = {res: m if m.dim() == 2 else m.repeat(batch, 1, 1) for res, m in case.masks.items()}
        return original, edited, masks
    step = max(1, coarse[1] // batch)  # spread the samples' edits over the width, in coarse cells
    shifts = [(0, i * step * cell[1]) for i in range(batch)]
    edited_parts = [[_roll_edit(o, e, s, base) for o, e in zip(case.original, case.edited)] for s in shifts]
    edited = tuple(
        torch.cat([part[j] for part in edited_parts]) if isinstance(case.edited[j], torch.Tensor)
        and case.edited[j].dim() == 4 else _batched((case.edited[j],), base, batch)[0]
        for j in range(len(case.edited))
    )  # fmt: skip
    masks = {}
    for (h, w), m in case.masks.items():
        m2 = m if m.dim() == 2 else m[0]
        per = [torch.roll(m2, shifts=(0, s[1] * w // W), dims=(0, 1)) for s in shifts]
        masks[(h, w)] = torch.stack([p for p in per for _ in range(base)])
    return original, edited, masks


def _sizes(task: Mapping[str, Any]) -> list[int]:
    if task["batch_sizes"]:
        sizes = [int(b) for b in task["batch_sizes"]]
        if any(b < 1 for b in sizes):
            raise ConfigError(f"task.batch_sizes must be positive integers, got {task['batch_sizes']}")
        return sorted(set(sizes))
    top = int(task["max_batch"])
    if top < 1:
        raise ConfigError(f"task.max_batch must be >= 1, got {top}")
    return [2**i for i in range(int(math.log2(top)) + 1)]


@torch.no_grad()
def measure_batch(case: Any, batch: int, own: bool, variants: Sequence[str], timing: Timing, device: str) -> list:
    """Rows of one batch size: every variant's latency, images/s, peak memory and cache memory."""
    original, edited, masks = batch_case(case, batch, own)
    model, rows = case.model, []
    model.clear_cache()
    model.set_mode("full")
    for variant in variants:
        if variant == "original":
            model.set_mode("full")
            t = timed(lambda: model(*edited), timing, device)
            cache = None
        else:
            if case.configure is not None:
                case.configure(model, variant)
            model.set_mode("full")
            model(*original)
            model.set_masks(masks, block_grid=VARIANT_GRID[variant])
            model.set_mode("sparse")
            t = timed(lambda: model(*edited), timing, device)
            cache = round(model.cache_nbytes() / 2**20, 2)
        lat = t["latency_ms"]
        rows.append({"variant": variant, "batch": batch, **t, "cache_mb": cache,
                     "images_per_s": round(batch * 1000.0 / lat, 4) if lat else None})  # fmt: skip
        model.set_mode("full")
    model.clear_cache()
    return rows


def throughput(cfg: Any) -> list[dict[str, Any]]:
    """The ``task=throughput`` sweep of one model component (see the module docstring)."""
    cfg, family = prepare_config(cfg)
    task = {**DEFAULTS, **{k: v for k, v in cfg["task"].items() if v is not None}}
    if task["edits"] not in ("own", "shared"):
        raise ConfigError(f"task.edits must be own or shared, got {task['edits']!r}")
    if not 0 < float(task["memory_fraction"]) <= 1:
        raise ConfigError(f"task.memory_fraction must be in (0, 1], got {task['memory_fraction']}")
    sizes = _sizes(task)
    timing = Timing(**cfg["timing"])
    if not timing.enabled:
        raise ConfigError("task=throughput measures time: timing.enabled=false makes it meaningless")
    component = _component(cfg, family)
    device, dtype = cfg["device"]["name"], getattr(torch, cfg["dtype"])
    variants = [v for v in cfg["variants"] if v in ("original", "sige", "sige_fast")]
    store = ResultsStore(absolute_output(task["output"]))
    case = family.prepare(cfg["model"], cfg["edit"], component, device, dtype, cfg.get("weights"))
    if dtype != torch.float32:
        case.model.to(dtype)
        case = dataclasses.replace(case, original=_cast(case.original, dtype), edited=_cast(case.edited, dtype))
    all_rows: list[dict[str, Any]] = []
    for i, batch in enumerate(sizes):
        settings = {"task": "throughput", "model": cfg["model"], "edit": cfg["edit"], "component": component,
                    "device": device, "threads": cfg["threads"], "dtype": cfg["dtype"], "weights": cfg.get("weights"),
                    "variants": variants, "timing": cfg["timing"], "edits": task["edits"], "batch": batch}  # fmt: skip
        done = [] if cfg.get("force") else store.measured(settings_key(settings), code_version(), machine_id())
        stopped = None
        if done:
            rows = done
        else:
            try:
                measured = measure_batch(case, batch, task["edits"] == "own", variants, timing, device)
            except torch.OutOfMemoryError:
                print(json.dumps({"batch": batch, "stopped": "out of memory"}), flush=True)
                break
            common = {"model": cfg["model"]["name"], "component": component, "edit": edit_label(cfg["edit"]),
                      "edits": task["edits"], "edited_fraction": case.edited_fraction, "threads": cfg["threads"],
                      "device": device, "dtype": cfg["dtype"], "weights": case.weights}  # fmt: skip
            common.update(provenance(settings))
            rows = [ordered({**common, **r}) for r in measured]
        nxt = sizes[i + 1] if i + 1 < len(sizes) else None
        if nxt is not None and device == "cpu":
            need = max((r.get("peak_mem_mb") or 0) + (r.get("cache_mb") or 0) for r in rows) * nxt / batch
            free = available_memory_mb() * float(task["memory_fraction"])
            if need > free:
                stopped = f"batch {nxt} would need ~{need:.0f} MiB, {free:.0f} MiB allowed"
        if stopped and not done:
            rows = [{**r, "stopped": stopped} for r in rows]
        if not done:
            store.write(rows)
        for r in rows:
            print(json.dumps({k: v for k, v in r.items() if k not in ("settings", "row_id")}), flush=True)
        all_rows += rows
        if stopped:
            break
    store.export_csv()
    return all_rows


THROUGHPUT_KEY = ["model", "component", "edit", "edits", "variant", "batch", "device", "threads", "dtype"]


def latest_throughput(rows: Any) -> Any:
    """The newest row of every (model, component, edit, edits, variant, batch, device, threads, dtype)."""
    if rows.empty:
        return rows
    df = rows.copy()
    for col in THROUGHPUT_KEY:
        if col not in df:
            df[col] = None
    df = df.sort_values("timestamp", kind="stable")
    df = df[~df[THROUGHPUT_KEY].astype(str).duplicated(keep="last")]
    return df.sort_values(["model", "component", "edit", "variant", "batch"])


def throughput_section(rows: Any) -> list[str]:
    """TABLE.md lines: images/s and memory by batch size, dense beside sparse."""
    frame = latest_throughput(rows)
    if frame.empty:
        return []
    out = [
        "",
        "## Throughput by batch size",
        "",
        "`task=throughput` (results/throughput.csv): images per second of one forward of the component, and the",
        "peak tensor memory of the pass plus the caches the sparse session holds (MiB, weights excluded). With",
        "`own` edits every sample has its own edit; the engine computes the union of the samples' active blocks.",
        "",
        "| model | component | edit | edits | batch | variant | images/s | vs dense | peak + caches (MiB) | stopped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, g in frame.groupby(["model", "component", "edit", "edits", "device", "threads", "dtype", "batch"]):
        dense = g[g["variant"] == "original"]
        base = float(dense["images_per_s"].iloc[0]) if len(dense) and dense["images_per_s"].notna().all() else None
        for r in g.to_dict("records"):
            ips = r.get("images_per_s")
            ips = None if ips is None or ips != ips else float(ips)
            mem = sum(float(r.get(k) or 0) if r.get(k) == r.get(k) else 0.0 for k in ("peak_mem_mb", "cache_mb"))
            stop = r.get("stopped") if isinstance(r.get("stopped"), str) else ""
            out.append(
                f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {int(key[7])} | {r['variant']} "
                f"| {f'{ips:.2f}' if ips else ''} | {f'{ips / base:.2f}x' if ips and base else ''} | {mem:.0f} "
                f"| {stop} |"
            )
    return out
