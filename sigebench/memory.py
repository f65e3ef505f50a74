"""``task=memory``: the benchmark's peak-memory figure checked against the process's resident memory.

``peak_mem_mb`` (:func:`sige.profile.peak_memory_mb`) is the peak of the tensor memory a call allocates, read
from the allocator's own records. This task checks it, per variant, against what the operating system sees: a
fresh child process, whose malloc hands every freed block above 64 KiB straight back
(``MALLOC_MMAP_THRESHOLD_=65536``, ``MALLOC_TRIM_THRESHOLD_=0``, so that its resident set follows the live
tensors instead of keeping freed pages for reuse), prepares the case, warms each variant up, then runs one call
while a thread samples the resident set (``/proc/self/statm``, every ~0.2 ms) and one call under the allocator's
records. Rows (``results/memory.csv``, shards under ``results/rows/memory/``): ``peak_mem_mb``,
``rss_growth_mb`` (peak resident set during the call minus before it) and ``rss_over_peak``; ``cache_mb`` of
the sparse variants is what the session's caches hold. Linux CPU only: on CUDA, ``peak_mem_mb`` is the CUDA
allocator's own peak and the resident set does not hold the tensors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from sigebench.config import ConfigError
from sigebench.provenance import ROOT, code_version, machine_id, provenance, settings_key
from sigebench.results import ResultsStore
from sigebench.tasks import _component, absolute_output, edit_label, ordered, prepare_config
from sigebench.variants import _cast, set_up_sparse

DEFAULTS = {"output": "results/memory.csv", "timeout_s": 3600}
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_growth_mb(fn: Callable[[], Any], interval_s: float = 0.0002) -> float:
    """Peak resident set during ``fn()`` above the resident set before it, in MiB (sampled by a thread; torch's
    kernels release the GIL, so the sampler runs while they work)."""
    base, peak, stop = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(interval_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        stop.set()
        sampler.join()
    return max(peak[0] - base, 0) / 2**20


@torch.no_grad()
def probe(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """In the child: both figures for every variant of the case ``cfg`` describes (see the module docstring)."""
    from sige.nn.conv_algorithms import set_conv_algorithm
    from sige.profile import peak_memory_mb

    cfg, family = prepare_config(cfg)
    component = _component(cfg, family)
    dtype = getattr(torch, cfg["dtype"])
    case = family.prepare(cfg["model"], cfg["edit"], component, "cpu", torch.float32, cfg.get("weights"))
    model, original, edited = case.model, case.original, case.edited
    if dtype != torch.float32:
        model.to(dtype)
        original, edited = _cast(original, dtype), _cast(edited, dtype)
    rows = []
    for variant in cfg["variants"]:
        model.clear_cache()
        model.set_mode("full")
        if variant != "original":
            model(*original)  # the caches of the original, then the variant's sparse configuration
            set_up_sparse(model, variant, case.masks, case.configure)

        def call() -> None:
            model(*edited)

        call()
        call()  # warm: conv algorithm choices, index buffers, library plans
        row = {"variant": variant, "rss_growth_mb": round(rss_growth_mb(call), 2),
               "peak_mem_mb": round(peak_memory_mb(call, "cpu"), 2)}  # fmt: skip
        row["rss_over_peak"] = round(row["rss_growth_mb"] / row["peak_mem_mb"], 3) if row["peak_mem_mb"] else None
        if variant != "original":
            row["cache_mb"] = round(model.cache_nbytes() / 2**20, 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    set_conv_algorithm(model, "conv")
    return [{**r, "edited_fraction": case.edited_fraction, "weights": case.weights} for r in rows]


def memory(cfg: Any) -> list[dict[str, Any]]:
    """The ``task=memory`` check of one model component (see the module docstring)."""
    from sigebench.config import plain

    cfg = plain(cfg)
    task = {**DEFAULTS, **{k: v for k, v in cfg["task"].items() if v is not None}}
    if cfg["device"]["name"] != "cpu":
        raise ConfigError(
            f"task=memory checks CPU figures against the resident set; device={cfg['device']['name']} keeps its "
            "tensors outside it (on CUDA, peak_mem_mb of task=efficiency is the CUDA allocator's own peak)"
        )
    if not os.path.exists("/proc/self/statm"):
        raise ConfigError("task=memory reads /proc/self/statm (Linux): this system has none")
    cfg, family = prepare_config(cfg)
    component = _component(cfg, family)
    settings = {"task": "memory", "model": cfg["model"], "edit": cfg["edit"], "component": component,
                "threads": cfg["threads"], "dtype": cfg["dtype"], "weights": cfg.get("weights"),
                "variants": list(cfg["variants"])}  # fmt: skip
    store = ResultsStore(absolute_output(task["output"]))
    done = [] if cfg.get("force") else store.measured(settings_key(settings), code_version(), machine_id())
    if done:
        rows = done
    else:
        child_cfg = {**cfg, "task": {"name": "efficiency"}}
        env = {**os.environ, **CHILD_ENV, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
        try:
            res = subprocess.run(
                [sys.executable, "-m", "sigebench.memory", json.dumps(child_cfg)], env=env, stdout=subprocess.PIPE,
                text=True, timeout=float(task["timeout_s"]), cwd=ROOT,
            )  # fmt: skip
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(
                f"task=memory: the measuring process ran past task.timeout_s={task['timeout_s']} s; raise it"
            ) from e
        if res.returncode != 0:
            raise RuntimeError(f"task=memory: the measuring process failed (exit {res.returncode}; its error above)")
        measured = json.loads(res.stdout.strip().splitlines()[-1])
        common = {"model": cfg["model"]["name"], "component": component, "edit": edit_label(cfg["edit"]),
                  "threads": cfg["threads"], "device": "cpu", "dtype": cfg["dtype"]}  # fmt: skip
        common.update(provenance(settings))
        rows = [ordered({**common, **r}) for r in measured]
        store.write(rows)
        store.export_csv()
    for r in rows:
        print(json.dumps({k: v for k, v in r.items() if k not in ("settings", "row_id")}), flush=True)
    return rows


if __name__ == "__main__":  # the child process of memory()
    print(json.dumps(probe(json.loads(sys.argv[1]))), flush=True)


MEMORY_KEY = ["model", "component", "edit", "variant", "device", "threads", "dtype"]


def memory_section(rows: Any) -> list[str]:
    """TABLE.md lines: the newest memory check of every (model, component, edit, variant, threads, dtype)."""
    frame = rows.copy()
    for col in MEMORY_KEY:
        if col not in frame:
            frame[col] = None
    frame = frame.sort_values("timestamp", kind="stable")
    frame = frame[~frame[MEMORY_KEY].astype(str).duplicated(keep="last")].sort_values(MEMORY_KEY[:4])
    out = [
        "",
        "## Peak memory checked against the resident set",
        "",
        "`task=memory` (results/memory.csv): `peak_mem_mb`, the benchmark's figure (the allocator's records of one",
        "forward), beside the resident-set growth of the same forward in a fresh process whose malloc returns freed",
        "blocks at once; the sparse rows add the caches their session holds. Weights excluded (held before the call).",
        "",
        "| model | component | edit | variant | dtype | peak_mem_mb | RSS growth (MiB) | RSS / peak | caches (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in frame.to_dict("records"):
        cache = r.get("cache_mb")
        cache = f"{float(cache):.0f}" if cache is not None and cache == cache else ""
        ratio = r.get("rss_over_peak")
        ratio = f"{float(ratio):.2f}" if ratio is not None and ratio == ratio else ""
        out.append(
            f"| {r['model']} | {r['component']} | {r['edit']} | {r['variant']} | {r['dtype']} "
            f"| {float(r['peak_mem_mb']):.1f} | {float(r['rss_growth_mb']):.1f} | {ratio} | {cache} |"
        )
    return out
