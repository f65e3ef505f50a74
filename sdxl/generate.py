"""``task=generate``: SDEdit and inpainting with SD 1.4 and SDXL (base, refiner, turbo), dense or with SIGE.

    python scripts/run.py task=generate model=sd14 edit=sd_sdedit0 weights=PATH/sd-v1-4.ckpt \\
        model.text.tokenizer=PATH/clip-tokenizer [model.pipeline.sige=false] [model.pipeline.seed=11]
    python scripts/run.py task=generate model=sdxl_base edit=sd_inpainting weights=PATH/sd_xl_base_1.0.safetensors \\
        model.text.tokenizer=... [model.pipeline.refiner_weights=PATH/sd_xl_refiner_1.0.safetensors]

Pipelines as in the reference runners: SDEdit encodes the original densely and the edit sparsely, runs two
trajectories with the same noise (full pass on the original, sparse pass on the edit, every step) and
decodes the edit sparsely against the decoded original; inpainting encodes the original, blends the
noised original outside the mask before every step (full pass on it, sparse pass on the blend) and decodes
sparsely against the decoded original. ``model.pipeline.sige=false`` runs the dense model on the edit only.
The posterior mean is used as the latent (the reference sampled the posterior, so original and edit got
independent noise). All noise comes from one generator seeded with the edit's seed: same seed, same image.
Weights are never downloaded; a missing checkpoint or tokenizer is an error that says what to pass.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointReader, load_component
from .config import unet_config, vae_config
from .edits import EditCase, complete_pyramid, load_edit
from .sampling import Guided, denoise_loop, make_sampler
from .text import EOT, Tokenizer, load_clip_l, load_openclip, size_embedding
from .unet import UNet
from .vae import AutoencoderKL

PIPELINE_DEFAULTS = {
    "sige": True,
    "prompt": None,  # default: the edit's prompt
    "negative_prompt": "",
    "seed": None,  # default: the edit's seed
    "out_dir": "results/images",
    "refiner_weights": None,  # SDXL base: refine the latents with the refiner checkpoint
    "block_grid": "original",
}


@dataclass
class Components:
    unet: UNet
    vae: AutoencoderKL
    scale_factor: float


def encode_text(model_cfg: Mapping[str, Any], reader: CheckpointReader, prompt: str, negative: str, size, dtype):
    """``(cond, uncond)`` dicts with ``context`` [1, T, D] and, for SDXL, ``y`` [1, adm]; encoders freed after."""
    text = model_cfg.get("text") or {}
    tok = Tokenizer(text.get("tokenizer"))
    cond_cfg = model_cfg.get("conditioning") or {}
    parts: dict[str, list[torch.Tensor]] = {"c": [], "u": []}
    pooled: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if "clip_l" in text:
            enc = load_clip_l(reader, text["clip_l"]["prefix"], text["clip_l"].get("layer", "last"), dtype)
            ids = tok([prompt, negative], pad=EOT)
            h = enc(ids)
            parts["c"].append(h[:1])
            parts["u"].append(h[1:])
            del enc
        if "openclip_bigg" in text:
            enc = load_openclip(reader, text["openclip_bigg"]["prefix"], dtype)
            h, p = enc(tok([prompt, negative], pad=0))
            parts["c"].append(h[:1])
            parts["u"].append(h[1:])
            pooled = {"c": p[:1], "u": p[1:]}
            del enc
        gc.collect()
    cond = {"context": torch.cat(parts["c"], dim=-1)}
    uncond = {"context": torch.cat(parts["u"], dim=-1)}
    if cond_cfg.get("zero_uncond_text"):
        uncond["context"] = torch.zeros_like(uncond["context"])
        pooled["u"] = torch.zeros_like(pooled["u"])
    if pooled:
        H, W = size
        orig = cond_cfg.get("original_size", [H, W])
        crop = cond_cfg.get("crop_coords_top_left", [0, 0])
        for key, score in (("c", "aesthetic_score"), ("u", "negative_aesthetic_score")):
            vec = [pooled[key], size_embedding(orig, 1), size_embedding(crop, 1)]
            vec.append(size_embedding([cond_cfg[score]], 1) if score in cond_cfg else size_embedding([H, W], 1))
            (cond if key == "c" else uncond)["y"] = torch.cat(vec, dim=-1)
    return cond, uncond


def build_components(model_cfg: Mapping[str, Any], reader: CheckpointReader, dtype: torch.dtype) -> Components:
    unet = UNet(unet_config(model_cfg["unet"]))
    load_component(unet, reader, "unet", dtype)
    vae = AutoencoderKL(vae_config(model_cfg["vae"]))
    load_component(vae, reader, "vae", dtype)
    return Components(unet.eval(), vae.eval(), float(model_cfg.get("scale_factor", 0.18215)))


@torch.no_grad()
def run_pipeline(
    comp: Components,
    case: EditCase,
    cond: Mapping[str, torch.Tensor],
    uncond: Mapping[str, torch.Tensor] | None,
    sampling: Mapping[str, Any],
    seed: int,
    sige: bool = True,
    block_grid: str = "original",
    refine: tuple[Components, Mapping, Mapping | None, Mapping[str, Any]] | None = None,
) -> torch.Tensor:
    """Edit ``case``; returns the image ``[1, 3, H, W]`` in [-1, 1]."""
    g = torch.Generator().manual_seed(int(seed))
    dtype = next(comp.unet.parameters()).dtype
    enc, dec = comp.vae.encoder, comp.vae.decoder
    sf = comp.scale_factor

    def encode(img):
        mean, _ = comp.vae.encode(img.to(dtype))
        return mean * sf

    H, W = case.size
    h, w = H // enc.downsampling, W // enc.downsampling
    model = Guided(comp.unet, cond, uncond, float(sampling.get("guidance", 1.0)))
    f = comp.unet.latent_downsampling
    masks = complete_pyramid(case.masks, (h // f, w // f)) if sige else None
    sampler = make_sampler(sampling)
    if case.kind == "sdedit":
        strength = float(sampling.get("strength", 0.8))
        if sige:
            enc.set_mode("full")
            z_init = encode(case.original)
            enc.set_masks(case.masks, block_grid=block_grid)
            enc.set_mode("sparse")
        z = encode(case.edited)
        enc.set_mode("full")
        enc.clear_cache()
        plan = sampler.plan(strength)
        noise = torch.randn(z.shape, generator=g).to(dtype)
        x = sampler.start_noise(z, noise, strength)
        init = sampler.start_noise(z_init, noise, strength) if sige else None
        x, init = denoise_loop(
            sampler, model, x, plan, g, init=init, init_mode="sdedit", masks=masks, block_grid=block_grid
        )
        base, dec_masks = init, case.decoder_masks
        keep = x0 = None
    else:  # inpainting
        strength = float(sampling.get("inpaint_strength", 1.0))
        x0 = encode(case.original)
        keep = 1.0 - case.masks[(h, w)].to(dtype)[None, None]
        plan = sampler.plan(strength)
        x = sampler.start_noise(x0, torch.randn(x0.shape, generator=g).to(dtype), strength)
        x, _ = denoise_loop(sampler, model, x, plan, g, init_mode="inpaint", x0=x0, keep=keep, masks=masks,
                            block_grid=block_grid)  # fmt: skip
        base, dec_masks = x0, masks
    if refine is not None:
        rcomp, rcond, runcond, rsampling = refine
        rmodel = Guided(rcomp.unet, rcond, runcond, float(rsampling.get("guidance", 1.0)))
        rs = make_sampler(rsampling)
        rstrength = float(rsampling.get("strength", 0.15))
        rplan = rs.plan(rstrength)
        noise = torch.randn(x.shape, generator=g).to(dtype)
        xr = rs.start_noise(x, noise, rstrength)
        if case.kind == "sdedit":
            rinit = rs.start_noise(base, noise, rstrength) if sige else None
            x, base_r = denoise_loop(rs, rmodel, xr, rplan, g, init=rinit, init_mode="sdedit", masks=masks,
                                     block_grid=block_grid)  # fmt: skip
            base = base_r if base_r is not None else base
        else:
            x, _ = denoise_loop(rs, rmodel, xr, rplan, g, init_mode="inpaint", x0=x0, keep=keep, masks=masks,
                                block_grid=block_grid)  # fmt: skip
    if sige:
        comp.vae.decode(base / sf)
        dec.set_masks(dec_masks, block_grid=block_grid)
        dec.set_mode("sparse")
    img = comp.vae.decode(x / sf)
    dec.set_mode("full")
    dec.clear_cache()
    return img.float().clamp(-1, 1)


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = ((img[0].permute(1, 2, 0).cpu().numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


def generate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Entry of ``task=generate`` (called with the whole composed config as a plain dict)."""
    model_cfg, edit = cfg["model"], cfg["edit"]
    p = {**PIPELINE_DEFAULTS, **(model_cfg.get("pipeline") or {})}
    weights = cfg.get("weights")
    if not weights:
        raise FileNotFoundError(
            f"task=generate needs the {model_cfg['name']} checkpoint ({model_cfg.get('checkpoint')}, listed in "
            "datasets/sd_checkpoints.yaml): pass weights=PATH; nothing is downloaded at run time"
        )
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    size = tuple(model_cfg.get("image_size", (512, 1024)))
    case = load_edit(edit, size)  # type: ignore[arg-type]
    prompt = p["prompt"] or case.meta.get("prompt") or edit.get("prompt")
    if not prompt:
        raise ValueError("no prompt: set model.pipeline.prompt=... (the edit config has none)")
    seed = p["seed"] if p["seed"] is not None else (edit.get("seed") or 0)
    sampling = dict(model_cfg.get("sampling") or {})
    if model_cfg["name"].startswith("sdxl") and "inpaint_strength" not in sampling:
        sampling["inpaint_strength"] = 0.8 if sampling.get("sampler") != "euler_ancestral" else 1.0
    reader = CheckpointReader(weights)
    cond, uncond = encode_text(model_cfg, reader, prompt, p["negative_prompt"], size, dtype)
    if float(sampling.get("guidance", 1.0)) == 1.0:
        uncond = None  # turbo: no classifier-free guidance (batch 1)
    comp = build_components(model_cfg, reader, dtype)
    refine = None
    if p["refiner_weights"]:
        import yaml

        rcfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs/model/sdxl_refiner.yaml").read_text())
        rcfg["text"]["tokenizer"] = (model_cfg.get("text") or {}).get("tokenizer")
        rreader = CheckpointReader(p["refiner_weights"])
        rc, ru = encode_text(rcfg, rreader, prompt, p["negative_prompt"], size, dtype)
        refine = (build_components(rcfg, rreader, dtype), rc, ru, rcfg["sampling"])
    img = run_pipeline(comp, case, cond, uncond, sampling, seed, bool(p["sige"]), p["block_grid"], refine)
    variant = "sige" if p["sige"] else "original"
    out = save_image(img, Path(p["out_dir"]) / model_cfg["name"] / f"{case.name}-{variant}-seed{seed}.png")
    print(f"wrote {out}")
    return {"image": str(out), "seed": seed, "prompt": prompt, "variant": variant}
