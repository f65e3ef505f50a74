"""`make bench-engine`: engine speed on this machine -> results/engine_bench.csv (rows of the latest run).

1. Per-op times (gather, scatter_, scatter_gather, copy_tiles_) of the native and reference backends
   on a 128-channel 256x256 map with about 5 % active blocks.
2. A stack of residual blocks shaped like the DDPM church UNet's high-resolution levels (128 ch at
   256x256 and 128x128, 256 ch at 64x64, with the downsamplers), random weights, at stroke edits of
   0.5 %, 1.2 %, 5 %, 15 % and 30 %: dense vs
     original_design - the original engine's design: 6/4 blocks, a whole-tensor copy per scatter;
     sige            - 6/4 blocks (the paper's MACs), in-place working buffers;
     sige_fast       - block sizes autotuned on this machine, out-of-map blocks dropped;
   with MAC ratio (dense / sparse MACs), speedup (dense / sparse latency) and efficiency = speedup / MAC ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial

import torch
from torch import nn

from sige import backends, ops
from sige.mask import downsample_mask, reduce_mask
from sige.nn import SIGEModel
from sige.nn.blocks import Downsample, ResBlock
from sige.nn.scatter import CachedOutput
from sige.nn.tuning import autotune_block_sizes, set_block_sizes
from sige.profile import macs, measure_latency
from sigebench.edits import synthetic_stroke_mask
from sigebench.provenance import ROOT, provenance
from sigebench.results import ResultsStore

AREAS = (0.005, 0.012, 0.05, 0.15, 0.30)


class HighResStack(SIGEModel):
    """DDPM church UNet encoder levels at 256, 128 and 64 (the levels SIGE runs sparse)."""

    def __init__(self) -> None:
        super().__init__()
        self.temb = nn.Linear(128, 512)
        self.level256 = nn.ModuleList([ResBlock(128, 128, 512), ResBlock(128, 128, 512)])
        self.down256 = Downsample(128)
        self.level128 = nn.ModuleList([ResBlock(128, 128, 512), ResBlock(128, 128, 512)])
        self.down128 = Downsample(128)
        self.level64 = nn.ModuleList([ResBlock(128, 256, 512), ResBlock(256, 256, 512)])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        e = self.temb(t)
        for b in self.level256:
            x = b(x, e)
        x = self.down256(x)
        for b in self.level128:
            x = b(x, e)
        x = self.down128(x)
        for b in self.level64:
            x = b(x, e)
        return x


def op_rows(timing_repeats: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 128, 256, 256, generator=gen)
    mask = torch.from_numpy(synthetic_stroke_mask(256, 256, 0.02, seed=0))
    idx = reduce_mask(mask, 6, 4, 1)
    scale, shift = torch.rand(1, 128, 1, 1) + 0.5, torch.randn(1, 128, 1, 1)
    tiles = torch.randn(idx.shape[0], 128, 4, 4, generator=gen)
    smap = ops.get_scatter_map(256, 256, (6, 6), (3, 3), (1, 1), (1, 1), idx)
    buf = x.clone()
    cases = {
        "gather(swish, scale/shift)": lambda: ops.gather(x, (6, 6), idx, scale, shift, "swish"),
        "scatter_": lambda: ops.scatter_(buf, tiles, idx, (1, 1), (1, 1)),
        "scatter_(residual)": lambda: ops.scatter_(buf, tiles, idx, (1, 1), (1, 1), x),
        "scatter_gather(swish, scale/shift)": lambda: ops.scatter_gather(
            tiles, x, (6, 6), idx, smap, scale, shift, "swish"
        ),
        "copy_tiles_": lambda: ops.copy_tiles_(buf, x, idx, (4, 4), (1, 1), (1, 1)),
    }
    rows = []
    for name, fn in cases.items():
        times = {}
        for backend in ("reference", "native"):
            if backend == "native" and "native" not in backends.available()["cpu"]:
                continue
            with backends.use_backend(backend):
                times[backend] = measure_latency(fn, warmup=3, repeats=timing_repeats).median_ms
        row = {
            "kind": "op",
            "case": name,
            "active_blocks": int(idx.shape[0]),
            "reference_ms": round(times["reference"], 4),
            "native_ms": round(times["native"], 4) if "native" in times else "",
            "native_speedup": round(times["reference"] / times["native"], 2) if "native" in times else "",
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def stack_rows(areas: tuple[float, ...], repeats: int, tune: bool) -> list[dict]:
    torch.manual_seed(0)
    model = HighResStack().eval()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 128, 256, 256, generator=gen)
    t = torch.randn(1, 128, generator=gen)
    rows = []
    with torch.no_grad():
        model.set_mode("full")
        dense_macs = macs(model, (x0, t))
        dense = measure_latency(lambda: model(x0, t), warmup=1, repeats=repeats)
        for area in areas:
            stroke = torch.from_numpy(synthetic_stroke_mask(256, 256, area, seed=0))
            x1 = x0 + torch.randn(1, 128, 256, 256, generator=gen) * stroke
            masks = downsample_mask(stroke, min_res=64, dilation=1)
            for variant in ("original_design", "sige", "sige_fast"):
                set_block_sizes(model, {3: 6, 1: 4})
                model.clear_cache()
                model.set_mode("full")
                model(x0, t)
                model.set_mode("sparse")
                CachedOutput.reuse_buffers = variant != "original_design"
                grid = "trimmed" if variant == "sige_fast" else "original"
                tuned = ""
                if variant == "sige_fast" and tune:
                    cands = [{3: b3, 1: b1} for b3, b1 in ((6, 4), (8, 6), (10, 8), (14, 12), (18, 16))]
                    best, _ = autotune_block_sizes(model, partial(model, x1, t), masks, cands, block_grid=grid)
                    tuned = json.dumps(best)
                else:
                    model.set_masks(masks, block_grid=grid)
                try:
                    sparse = measure_latency(partial(model, x1, t), warmup=1, repeats=repeats)
                    sparse_macs = macs(model, (x1, t))
                finally:
                    CachedOutput.reuse_buffers = True
                ratio = dense_macs / sparse_macs
                speedup = dense.median_ms / sparse.median_ms
                row = {
                    "kind": "stack",
                    "case": f"stroke {area:.1%}",
                    "edited_fraction": round(float(stroke.float().mean()), 5),
                    "variant": variant,
                    "block_sizes": tuned or json.dumps({3: 6, 1: 4}),
                    "block_grid": grid,
                    "dense_macs": dense_macs,
                    "sparse_macs": sparse_macs,
                    "mac_ratio": round(ratio, 3),
                    "dense_ms": round(dense.median_ms, 3),
                    "sparse_ms": round(sparse.median_ms, 3),
                    "sparse_ms_min": round(sparse.min_ms, 3),
                    "sparse_ms_max": round(sparse.max_ms, 3),
                    "speedup": round(speedup, 3),
                    "efficiency": round(speedup / ratio, 3),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--areas", type=float, nargs="*", default=list(AREAS))
    parser.add_argument("--no-tune", action="store_true", help="sige_fast without the block-size autotune")
    parser.add_argument("--output", default=str(ROOT / "results" / "engine_bench.csv"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = op_rows(max(args.repeats, 10)) + stack_rows(tuple(args.areas), args.repeats, not args.no_tune)
    common = {
        "threads": torch.get_num_threads(),
        "backend": backends.name_for("cpu"),
        "weights": "random",
        **provenance(vars(args)),
    }
    store = ResultsStore(args.output, columns=[])
    session = store.write([{**common, "session": common["timestamp"], **r} for r in rows])
    # the CSV shows one measurement session: this run's rows (earlier runs stay in their shards)
    out = store.export_csv(select=lambda r: r.get("session") == common["timestamp"])
    print(f"wrote {session} and {out} in {time.time() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
