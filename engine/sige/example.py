"""The engine's worked example: a 16->32 3x3 conv at 256x256 with the paper's example mask.

    python -m sige.example [--mask PATH] [--device cpu|cuda] [--json]

Prints the dense and sparse MACs (the paper's 301.99 M and 57.73 M on the original block grid;
ours without the blocks that fall outside the map), the max |sparse - dense| error, and the
dense/sparse latency. Weights are random (MACs and latency do not depend on them).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from sige.nn import Gather, Scatter, SIGEConv2d, SIGEModel, SIGEModule
from sige.profile import macs, measure_latency


class ExampleModule(SIGEModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv = SIGEConv2d(16, 32, kernel_size=3, stride=1, padding=1, bias=True)
        self.gather = Gather(self.conv, block_size=6)
        self.scatter = Scatter(self.gather)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scatter(self.conv(self.gather(x)))


class ExampleModel(SIGEModel):
    def __init__(self) -> None:
        super().__init__()
        self.example_module = ExampleModule()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.example_module(x)


def load_example_mask(path: str | None = None) -> np.ndarray:
    """The paper's example mask (``engine/mask.npy`` of the example edits), fetched or from the mirror."""
    if path is None:
        from sige.data import data_path

        path = str(data_path("example_edits", "engine/mask.npy"))
    return np.load(path)


@torch.no_grad()
def run(mask: np.ndarray, device: str = "cpu", seed: int = 0, timing: bool = True) -> dict:
    torch.manual_seed(seed)
    m = torch.from_numpy(mask).to(device)
    original = torch.randn(1, 16, *m.shape, device=device)
    edited = original + torch.randn(1, 16, *m.shape, device=device) * m[None, None]
    model = ExampleModel().to(device).eval()

    model.set_mode("full")
    dense = model(edited).clone()
    dense_macs = macs(model, (edited,))
    dense_lat = measure_latency(lambda: model(edited), warmup=2, repeats=10, device=device) if timing else None
    model(original)  # cache the original's activations

    result = {"edited_fraction": float(m.float().mean()), "dense_macs": dense_macs}
    for grid in ("original", "trimmed"):
        model.set_masks({tuple(m.shape): m}, block_grid=grid)
        model.set_mode("sparse")
        sparse = model(edited)
        result[f"sparse_macs_{grid}_grid"] = macs(model, (edited,))
        result[f"active_blocks_{grid}_grid"] = int(model.example_module.gather.active_indices.shape[0])
        result[f"max_error_{grid}_grid"] = float((sparse - dense).abs().max())
        if timing:
            lat = measure_latency(lambda: model(edited), warmup=2, repeats=10, device=device)
            result[f"sparse_latency_ms_{grid}_grid"] = lat.median_ms
        model.set_mode("full")
    if timing:
        result["dense_latency_ms"] = dense_lat.median_ms
        result["threads"] = torch.get_num_threads()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mask", help="path of a bool [H, W] .npy mask (default: the paper's example mask)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    r = run(load_example_mask(args.mask), args.device)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"Masked region: {r['edited_fraction']:.2%}")
        print(f"Full MACs: {r['dense_macs'] / 1e6:.2f}M")
        print(f"SIGE MACs (original block grid, as published): {r['sparse_macs_original_grid'] / 1e6:.2f}M")
        print(f"SIGE MACs (out-of-map blocks dropped): {r['sparse_macs_trimmed_grid'] / 1e6:.2f}M")
        print(f"Max error: {max(r['max_error_original_grid'], r['max_error_trimmed_grid']):.2e}")
        print(
            f"Latency ({r['threads']} threads): dense {r['dense_latency_ms']:.2f} ms, "
            f"sparse {r['sparse_latency_ms_trimmed_grid']:.2f} ms"
        )
    ok = max(r["max_error_original_grid"], r["max_error_trimmed_grid"]) < 1e-4
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())


def efficiency(
    model_cfg: dict,
    edit: dict,
    component: str | None,
    variants: list[str],
    timing,
    device: str,
    dtype: torch.dtype,
    weights: str | None = None,
) -> list[dict]:
    """Benchmark-contract rows for the example conv (random weights) on a mask edit."""
    from sige.bench import measure_variants
    from sige.data import data_path
    from sige.edits import synthetic_stroke_mask

    H, W = model_cfg.get("resolution", (256, 256))
    if edit["kind"] == "mask":
        mask = np.load(data_path(edit["manifest"], edit["mask"]))
    elif edit["kind"] == "synthetic":
        mask = synthetic_stroke_mask(H, W, float(edit["area"]), int(edit["seed"]))
    elif edit["kind"] == "custom" and edit.get("mask"):
        mask = np.load(edit["mask"])
    else:
        raise ValueError(f"the engine example needs a mask edit (engine_example, synthetic, custom with mask=...), "
                         f"got {edit['name']!r}")  # fmt: skip
    if weights:
        raise ValueError("the engine example has no checkpoint; it always runs with random weights")
    m = torch.from_numpy(mask).bool().to(device)
    gen = torch.Generator().manual_seed(0)
    original = torch.randn(1, 16, *m.shape, generator=gen).to(device, dtype)
    edited = original + (torch.randn(1, 16, *m.shape, generator=gen).to(device, dtype) * m)
    model = ExampleModel().to(device, dtype).eval()
    rows = measure_variants(model, (original,), (edited,), {tuple(m.shape): m}, variants, timing, device)
    for r in rows:
        r["edited_fraction"] = round(float(m.float().mean()), 6)
    return rows


@torch.no_grad()
def panel(cfg: dict) -> dict:
    """Images for the qualitative figure: channel 0 of the input and output activations (random weights)."""
    from sige.bench import active_tiles_mask

    mask = load_example_mask()
    m = torch.from_numpy(mask)
    gen = torch.Generator().manual_seed(0)
    original = torch.randn(1, 16, *m.shape, generator=gen)
    edited = original + torch.randn(1, 16, *m.shape, generator=gen) * m
    model = ExampleModel().eval()
    dense = model(edited).clone()
    model(original)
    model.set_masks({tuple(m.shape): m})
    model.set_mode("sparse")
    sparse = model(edited)
    return {
        "title": "engine example: 16->32 3x3 conv, channel 0 (random weights)",
        "weights": "random",
        "original": original[0, 0].numpy(),
        "edited": edited[0, 0].numpy(),
        "dense": dense[0, 0].numpy(),
        "sparse": sparse[0, 0].numpy(),
        "mask": mask,
        "blocks": active_tiles_mask(model.example_module.gather).numpy(),
    }
