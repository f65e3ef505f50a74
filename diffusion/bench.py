"""The efficiency benchmark of the diffusion UNets (one denoising step), behind ``scripts/run.py task=efficiency``.

Inputs follow the SDEdit protocol at the sampler's start step ``t = seq[-1]``: the original and the edited
image noised with the same noise; variant ``original`` runs the dense model on the edited input,
``sige`` / ``sige_fast`` a full pass on the original, then sparse passes on the edited input (``sige``
with the original's block grid, which reproduces the published MACs). Weights are random unless a
checkpoint is given; MACs and latency do not depend on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

from diffusion.build import build_model, model_input, schedule_and_sequence
from diffusion.edits import load_edit, mask_pyramid
from diffusion.samplers import q_sample
from sige.bench import Timing, measure_variants
from sige.nn import SIGEModel
from sige.nn.tuning import set_block_sizes


def default_block_sizes(model_cfg: dict[str, Any]) -> dict[int, int]:
    unet = model_cfg.get("unet") or {}
    return {3: int(unet.get("main_block_size", 6)), 1: int(unet.get("shortcut_block_size", 4))}


def efficiency(
    model_cfg: dict,
    edit: dict,
    component: str | None,
    variants: list[str],
    timing: Timing,
    device: str,
    dtype: torch.dtype,
    weights: str | None = None,
) -> list[dict]:
    """Benchmark-contract rows (MACs of one denoising step, latency, peak memory) for one edit."""
    if component not in (None, "unet"):
        raise ValueError(f"model {model_cfg['name']!r} has one component, 'unet'; got component={component!r}")
    res = int(model_cfg["resolution"])
    model = build_model(model_cfg, weights).to(device=device, dtype=dtype)
    case = load_edit(edit, res, float(model_cfg["edit_eps"]), int(model_cfg["mask_dilate_radius"]))
    schedule, seq = schedule_and_sequence(model_cfg)
    t = seq[-1]
    noise = torch.randn(case.original.shape, generator=torch.Generator().manual_seed(0))
    xo = q_sample(case.original, t, noise, schedule).to(device, dtype)
    xe = q_sample(case.edited, t, noise, schedule).to(device, dtype)
    cond = model_input(schedule, t, 1, device)
    masks = {k: v.to(device) for k, v in mask_pyramid(case.mask, model.min_resolution()).items()}
    fast = model_cfg.get("sige_fast_block_sizes")
    defaults = default_block_sizes(model_cfg)

    def configure(m: SIGEModel, variant: str) -> None:
        if fast:
            set_block_sizes(m, {int(k): int(v) for k, v in fast.items()} if variant == "sige_fast" else defaults)

    rows = measure_variants(model, (xo, cond), (xe, cond), masks, variants, timing, device, configure)
    for r in rows:
        r.update(edited_fraction=round(case.edited_fraction, 6), resolution=res, timestep=t)
        r["block_sizes"] = str(fast if (fast and r["variant"] == "sige_fast") else defaults)
    return rows


def panel(model_cfg: dict) -> dict:
    """Qualitative figure of the church example: one denoising step's prediction, dense vs sparse (random weights)."""
    from sige.bench import panel_outputs

    res = int(model_cfg["resolution"])
    model = build_model(model_cfg, None).eval()
    edit = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "edit" / "church_example.yaml").read_text()
    )
    case = load_edit(edit, res, float(model_cfg["edit_eps"]), int(model_cfg["mask_dilate_radius"]))
    schedule, seq = schedule_and_sequence(model_cfg)
    t = seq[-1]
    noise = torch.randn(case.original.shape, generator=torch.Generator().manual_seed(0))
    xo, xe = q_sample(case.original, t, noise, schedule), q_sample(case.edited, t, noise, schedule)
    cond = model_input(schedule, t, 1, "cpu")
    out = panel_outputs(model, (xo, cond), (xe, cond), mask_pyramid(case.mask, model.min_resolution()), (res, res))
    return {
        "title": f"{model_cfg['name']}: church example, one denoising step at t={t} (random weights)",
        "weights": "random",
        "original": case.original[0].numpy(),
        "edited": case.edited[0].numpy(),
        "dense": out["dense"][0, :3].numpy(),
        "sparse": out["sparse"][0, :3].numpy(),
        "mask": case.mask.numpy(),
        "blocks": out["blocks"],
    }
