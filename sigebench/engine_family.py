"""The engine's worked example as a model family: :class:`sige.example.ExampleModel` (a 16->32 3x3 conv,
random weights) on a mask edit (the paper's ``engine_example``, a synthetic stroke, or a custom mask)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sige.example import ExampleModel
from sigebench.edits import load_edit, synthetic_stroke_mask
from sigebench.family import Case, Display
from sigebench.weights import resolve_weights

COMPONENTS = ("conv",)
MODEL_KEYS = {"name", "family", "resolution", "checkpoint"}


def prepare(
    model_cfg: Mapping[str, Any],
    edit: Mapping[str, Any],
    component: str,
    device: str,
    dtype: torch.dtype,
    weights: str | None,
) -> Case:
    if resolve_weights(weights, model_cfg.get("checkpoint"), model_cfg["name"]) is not None:
        raise ValueError(f"weights={weights!r}: the engine example has no checkpoint; it runs with random weights")
    e = load_edit(edit)
    H, W = model_cfg.get("resolution", (256, 256))
    if e.kind == "synthetic":
        mask = synthetic_stroke_mask(int(H), int(W), e.area, e.seed)
    elif e.mask is not None:
        mask = e.mask
    else:
        raise ValueError(
            f"the engine example (model {model_cfg['name']!r}) takes a mask edit: edit=engine_example, synthetic, "
            f"or custom with edit.mask=PATH; edit {e.name!r} has no mask"
        )
    m = torch.from_numpy(np.ascontiguousarray(mask)).bool().to(device)
    gen = torch.Generator().manual_seed(0)
    original = torch.randn(1, 16, *m.shape, generator=gen).to(device, dtype)
    edited = original + (torch.randn(1, 16, *m.shape, generator=gen).to(device, dtype) * m)
    model = ExampleModel().to(device, dtype).eval()
    return Case(
        model=model,
        original=(original,),
        edited=(edited,),
        masks={tuple(m.shape): m},
        edited_fraction=round(float(m.float().mean()), 6),
        display=Display(
            original=original[0, 0].float().cpu().numpy(),
            edited=edited[0, 0].float().cpu().numpy(),
            mask=mask,
            size=tuple(m.shape),
            output=lambda t: t[0, 0].float().cpu().numpy(),
        ),
    )
