"""The harness's ``*_diffusers`` models (``sd14_diffusers``, ``sdxl_base_diffusers``, ``sdxl_refiner_diffusers``,
``sdxl_turbo_diffusers``): every component is a diffusers model converted by :mod:`sdxl.diffusers_convert`, so
the benchmark measures what a diffusers user gets from :func:`~sdxl.diffusers_convert.from_diffusers`.

The model config names the diffusers configs (``diffusers: {unet: sd14_unet, vae: sd14_vae}``: the official
``config.json`` files the project embeds in ``sdxl/diffusers_configs/``, or paths); with random weights the
diffusers model is built from them (``from_config``), with ``weights=<diffusers folder>`` loaded from the folder
(``from_pretrained``), and a single-file checkpoint loads into the converted model as for the project's own
models. The model config's ``unet:`` / ``vae:`` sections give the engine settings (sparse placement, block sizes,
how attention is counted) and must describe the same network as the diffusers config (an error names what differs).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sige.nn import SIGEModel

from .config import unet_config, vae_config
from .diffusers_arch import (
    UNET_ENGINE_FIELDS,
    VAE_ENGINE_FIELDS,
    check_same_architecture,
    read_config,
    unet_config_from_diffusers,
    vae_config_from_diffusers,
)
from .diffusers_convert import diffusers_model, dtype_kwargs, from_diffusers
from .diffusers_folder import component_folder, only_fp16

DIFFUSERS_KEYS = ("unet", "vae")


def _pretrained(folder: Path, config: Mapping[str, Any], dtype: torch.dtype) -> torch.nn.Module:
    """``from_pretrained`` of a component folder (the float16 variant when it is the only one there)."""
    import diffusers

    cls = getattr(diffusers, config["_class_name"])
    variant = "fp16" if only_fp16(folder) else None
    return cls.from_pretrained(str(folder), variant=variant, **dtype_kwargs(dtype)).eval()


def build_diffusers_component(
    model_cfg: Mapping[str, Any], component: str, folder: str | Path | None, dtype: torch.dtype
) -> SIGEModel:
    """``component`` (``unet``, ``encoder``, ``decoder``) of a ``*_diffusers`` model: a diffusers model (random, or
    from the diffusers ``folder``) converted to this project's sparse model, sharing its weights."""
    settings = dict(model_cfg.get("diffusers") or {})
    bad = sorted(set(settings) - set(DIFFUSERS_KEYS))
    if bad:
        raise ValueError(f"unknown setting(s) {', '.join('model.diffusers.' + k for k in bad)}; known: unet, vae")
    part = "unet" if component == "unet" else "vae"
    if folder is not None:
        where = component_folder(folder, component)
        config, source = read_config(where / "config.json"), str(where / "config.json")
    else:
        if not settings.get(part):
            raise ValueError(f"model {model_cfg['name']!r}: model.diffusers.{part} names no diffusers config")
        config, source = read_config(settings[part]), str(settings[part])
    if part == "unet":
        ours, fields = unet_config(model_cfg["unet"]), UNET_ENGINE_FIELDS
        theirs = unet_config_from_diffusers(config)
    else:
        ours, fields = vae_config(model_cfg["vae"]), VAE_ENGINE_FIELDS
        theirs = vae_config_from_diffusers(config)
    # before building anything large: the model config and the diffusers config must be one network
    check_same_architecture(ours, theirs, f"model.{part} of {model_cfg['name']}", source)
    module = _pretrained(where, config, dtype) if folder is not None else diffusers_model(config, dtype)
    converted = from_diffusers(module, **{k: getattr(ours, k) for k in fields})
    if part == "unet":
        return converted
    return converted.encoder if component == "encoder" else converted.decoder
