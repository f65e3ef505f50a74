"""Building a diffusion model from its config (``configs/model/<name>.yaml``) and loading its weights."""

from __future__ import annotations

from typing import Any

import torch

from diffusion.checkpoints import load_ddpm, load_pd
from diffusion.models.ddpm import DDPMUNet
from diffusion.models.pd import PDUNet
from sige.nn import SIGEModel
from sigebench.schedules import Schedule, make_schedule, sampler_timesteps
from sigebench.weights import resolve_weights

ARCHS = {"ddpm": DDPMUNet, "pd": PDUNet}


def build_model(model_cfg: dict[str, Any], weights: str | None = None, **overrides: Any) -> tuple[SIGEModel, str]:
    """The UNet of a model config, in eval mode, and the ``weights`` label of its rows: random initialisation
    unless ``weights`` names a checkpoint or is ``"pretrained"`` (see :mod:`sigebench.weights`). ``overrides``
    replace entries of ``model_cfg["unet"]``."""
    arch = model_cfg.get("arch")
    if arch not in ARCHS:
        raise ValueError(f"model {model_cfg.get('name')!r}: arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    kwargs = {**dict(model_cfg.get("unet") or {}), **overrides}
    kwargs.setdefault("resolution", int(model_cfg["resolution"]))
    try:
        model = ARCHS[arch](**kwargs)
    except TypeError as e:
        raise ValueError(f"model {model_cfg.get('name')!r}: bad unet settings {kwargs}: {e}") from e
    path = resolve_weights(weights, model_cfg.get("checkpoint"), model_cfg.get("name", arch))
    if path is not None:
        use_ema = bool(model_cfg.get("use_ema", arch == "ddpm"))
        (load_ddpm if arch == "ddpm" else load_pd)(model, path, use_ema=use_ema)
    return model.eval(), "random" if path is None else str(path)


def schedule_and_sequence(model_cfg: dict[str, Any]) -> tuple[Schedule, list[int]]:
    """The sampler's noise schedule and the timesteps it visits (``seq[-1]`` is the SDEdit start)."""
    s = model_cfg.get("sampler")
    if not s:
        raise ValueError(f"model {model_cfg.get('name')!r} has no sampler config")
    return make_schedule(s), sampler_timesteps(s)


def model_input(schedule: Schedule, t: int, batch: int, device: str | torch.device) -> torch.Tensor:
    """The network's conditioning tensor ``[batch]`` at integer timestep ``t``."""
    return torch.full((batch,), schedule.model_input(t), dtype=torch.float32, device=device)
