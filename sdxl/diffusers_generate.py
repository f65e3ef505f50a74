"""``task=generate`` with ``weights=<diffusers folder>`` (and ``task.refiner_weights=<folder>``): the project's
SDEdit / inpainting pipeline (:func:`sdxl.generate.run_pipeline`) on the UNet and VAE of a diffusers pipeline folder,
converted with the model config's engine settings, and text encoded by the folder's own tokenizer and encoders
(``encode_prompt``; no separate tokenizer needed). The folder must hold the model config's network."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import unet_config, vae_config
from .diffusers_arch import UNET_ENGINE_FIELDS, VAE_ENGINE_FIELDS, check_same_architecture
from .diffusers_convert import dtype_kwargs, vae_from_diffusers
from .diffusers_folder import only_fp16
from .diffusers_pipeline import _Model
from .generate import Components


def load_pipeline(folder: str | Path, dtype: torch.dtype) -> Any:
    """``DiffusionPipeline.from_pretrained`` of a local folder (no safety checker: the images are the edits')."""
    import json

    from diffusers import DiffusionPipeline

    index = Path(folder) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"weights={folder}: task=generate needs a diffusers pipeline folder (model_index.json)")
    extra: dict[str, Any] = {}
    if "safety_checker" in json.loads(index.read_text()):
        extra.update(safety_checker=None, requires_safety_checker=False)
    if only_fp16(Path(folder) / "unet"):
        extra["variant"] = "fp16"
    return DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, **dtype_kwargs(dtype), **extra)


def folder_stage(
    model_cfg: Mapping[str, Any], folder: str | Path, prompt: str, negative: str, size: tuple[int, int], dtype
) -> tuple[Components, dict, dict | None]:
    """``(components, cond, uncond)`` of ``model_cfg`` from the diffusers pipeline ``folder``."""
    pipe = load_pipeline(folder, dtype)
    ucfg, vcfg = unet_config(model_cfg["unet"]), vae_config(model_cfg["vae"])
    model = _Model(pipe, {k: getattr(ucfg, k) for k in UNET_ENGINE_FIELDS})
    check_same_architecture(ucfg, model.unet.cfg, f"model.unet of {model_cfg['name']}", f"{folder}/unet")
    if model.scheduler.get("prediction_type", "epsilon") != "epsilon":
        raise ValueError(f"{folder}: a v-prediction model; the {model_cfg['name']} pipeline predicts epsilon")
    vae = vae_from_diffusers(pipe.vae, **{k: getattr(vcfg, k) for k in VAE_ENGINE_FIELDS})
    check_same_architecture(vcfg, vae.cfg, f"model.vae of {model_cfg['name']}", f"{folder}/vae")
    cond_cfg = model_cfg.get("conditioning") or {}
    scale = float(model_cfg["sampler"].get("guidance", 1.0))
    e = model.embeds(prompt, negative or None, scale > 1.0)
    if cond_cfg.get("zero_uncond_text") and e.negative_prompt_embeds is not None:  # as the single-file pipeline
        e.negative_prompt_embeds = torch.zeros_like(e.negative_prompt_embeds)
        e.negative_pooled_prompt_embeds = torch.zeros_like(e.negative_pooled_prompt_embeds)
    micro = {"original_size": cond_cfg.get("original_size"),
             "crops_coords_top_left": cond_cfg.get("crop_coords_top_left", (0, 0)),
             "aesthetic_score": cond_cfg.get("aesthetic_score", 6.0),
             "negative_aesthetic_score": cond_cfg.get("negative_aesthetic_score", 2.5)}  # fmt: skip
    guided = model.guided(e, scale, model_cfg["sampler"], size, micro)
    sf = float(dict(pipe.vae.config).get("scaling_factor", model_cfg.get("scale_factor", 0.18215)))
    return Components(model.unet, vae, sf), guided.cond, guided.uncond
