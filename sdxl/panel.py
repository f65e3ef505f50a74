"""Qualitative panel of one SD / SDXL example edit for `make figures` (random weights unless ``weights``).

One component forward (by default the VAE decoder, the cheapest component that runs sparsely for every
example edit): the benchmark's inputs for the edit, dense and sparse outputs, and the active tiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .edits import load_edit
from .efficiency import build_component, component_inputs


def panel(model_cfg: Mapping[str, Any], edit: Mapping[str, Any], component: str | None = None) -> dict:
    """Panel data (see ``scripts/make_figures.py``) of ``component`` on the example ``edit``."""
    from sige.bench import panel_outputs

    spec = model_cfg.get("panel") or {}
    component = component or str(spec.get("component", "decoder"))
    weights = spec.get("weights")
    size = tuple(model_cfg.get("image_size", (512, 1024)))
    case = load_edit(edit, size)  # type: ignore[arg-type]
    model = build_component(model_cfg, component, weights, torch.float32, "cpu")
    original, edited, masks = component_inputs(
        component, case, model_cfg, torch.float32, "cpu", int(edit.get("seed") or 0)
    )
    out = panel_outputs(model, original, edited, masks, size)
    del model

    def image(x: torch.Tensor) -> Any:  # the first sample, first three channels (a latent shows as RGB of 3 of 4)
        return x[0, :3].float().numpy()

    return {
        "title": f"{model_cfg['name']} {component}: {edit['name']} ({'random weights' if not weights else weights})",
        "weights": weights or "random",
        "original": case.original[0].numpy(),
        "edited": case.edited[0].numpy(),
        "dense": image(out["dense"]),
        "sparse": image(out["sparse"]),
        "mask": case.region.numpy(),
        "blocks": out["blocks"],
    }
