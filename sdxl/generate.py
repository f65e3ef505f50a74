"""``task=generate``: SDEdit and inpainting with SD 1.4 and SDXL (base, refiner, turbo), dense or with SIGE.

    python scripts/run.py task=generate model=sd14 edit=sd_sdedit0 weights=PATH/sd-v1-4.ckpt \\
        model.text.tokenizer=PATH/clip-tokenizer [task.variants=[original]] [task.seed=11]
    python scripts/run.py task=generate model=sdxl_base edit=sd_inpainting weights=PATH/sd_xl_base_1.0.safetensors \\
        model.text.tokenizer=... [task.refiner_weights=PATH/sd_xl_refiner_1.0.safetensors]
    python scripts/run.py task=generate model=sd14 edit=sd_sdedit0 weights=PATH/stable-diffusion-v1-4   # a diffusers
        folder: its own tokenizer and text encoder (sdxl.diffusers_generate); task.refiner_weights may be one too

Pipelines as in the reference runners, on the samplers of :mod:`sigebench.samplers` (ldm's DDIM for SD 1.4,
sgm's DPM-Solver++(2M) for SDXL, Euler ancestral for turbo; see configs/sampler): SDEdit encodes the original
densely and the edit sparsely, runs two trajectories with the same start noise (full pass on the original,
sparse pass on the edit, every step) and decodes the edit sparsely against the decoded original; inpainting
encodes the original, blends the noised original outside the mask before every step (full pass on it, sparse
pass on the blend) and decodes sparsely against the decoded original. Variant ``original`` runs the dense model
on the edit only. The posterior mean is used as the latent (the reference sampled the posterior, so original
and edit got independent noise). All noise comes from one generator seeded with the edit's seed: same seed,
same image. Weights are never downloaded at run time; a missing checkpoint or tokenizer is an error that says
what to pass.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sige.nn import SIGEModel
from sigebench.images import save_image
from sigebench.samplers import sampler_from_config
from sigebench.schedules import Schedule, make_schedule, q_sample, sampler_timesteps
from sigebench.weights import resolve_weights

from .checkpoint import CheckpointReader, load_component
from .config import unet_config, vae_config
from .edits import EditCase, complete_pyramid, load_case
from .text import EOT, Tokenizer, load_clip_l, load_openclip, size_embedding
from .unet import UNet
from .vae import AutoencoderKL


@dataclass
class Guided:
    """Classifier-free guidance around a UNet: ``uncond`` None or ``scale`` 1 -> no CFG (batch 1). ``prediction``:
    what the UNet predicts, ``epsilon`` or ``v_prediction`` (SD 2.x 768; converted to eps with ``schedule``:
    ``eps = sigma_t x + alpha_t v``), so every sampler sees eps."""

    unet: torch.nn.Module
    cond: Mapping[str, torch.Tensor]  # {"context": [1, T, D], "y": [1, adm] (SDXL)}
    uncond: Mapping[str, torch.Tensor] | None
    scale: float
    prediction: str = "epsilon"
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if self.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction type {self.prediction!r} is not supported (epsilon, v_prediction)")
        if self.prediction == "v_prediction" and self.schedule is None:
            raise ValueError("v_prediction needs the noise schedule (Guided(..., schedule=...))")

    @property
    def cfg(self) -> bool:
        return self.uncond is not None and self.scale != 1.0

    def eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        tt = torch.tensor([float(t)], device=x.device)
        if not self.cfg:
            out = self.unet(x, tt.expand(x.shape[0]), self.cond["context"], self.cond.get("y"))
        else:
            args = [
                torch.cat([self.uncond[k], self.cond[k]]) if self.cond.get(k) is not None else None
                for k in ("context", "y")
            ]
            e_u, e_c = self.unet(torch.cat([x, x]), tt.expand(2 * x.shape[0]), *args).chunk(2)
            out = e_u + self.scale * (e_c - e_u)
        if self.prediction == "v_prediction":
            alpha, sigma = self.schedule.alpha_sigma(t)
            return sigma * x + alpha * out
        return out


def img2img_plan(sampler_cfg: Mapping[str, Any], strength: float) -> tuple[list[int], int | None]:
    """``(timesteps to run, start timestep)`` of an edit with ``strength`` (``None``: start from pure noise).

    ``img2img: ldm``: the first ``int(strength * steps)`` timesteps, the start noised one step higher (ldm's
    stochastic_encode); ``sgm``: the ``int(strength * (steps + 1)) - 1`` lowest timesteps, the start at the highest
    of them (the Img2ImgDiscretizationWrapper keeps that many sigmas, the final 0 included).
    """
    ts = sampler_timesteps(sampler_cfg)
    if strength >= 1.0:
        return ts, None
    if sampler_cfg.get("img2img", "sgm") == "ldm":
        k = int(strength * len(ts))
        if k < 1:
            raise ValueError(f"strength {strength} leaves no sampling step")
        return ts[:k], ts[min(k, len(ts) - 1)]
    k = max(int(strength * (len(ts) + 1)), 1) - 1
    if k < 1:
        raise ValueError(f"strength {strength} leaves no sampling step")
    return ts[:k], ts[k - 1]


def start_sample(x0: torch.Tensor, noise: torch.Tensor, start_t: int | None, schedule: Schedule) -> torch.Tensor:
    """The sampler's first sample: pure noise (``start_t`` None) or ``x0`` noised to ``start_t``."""
    return noise if start_t is None else q_sample(x0, start_t, noise, schedule)


@torch.no_grad()
def sample(
    model: Guided,
    sampler_cfg: Mapping[str, Any],
    x: torch.Tensor,
    seq: list[int],
    generator: torch.Generator,
    *,
    init: torch.Tensor | None = None,
    x0: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    masks: Mapping[tuple[int, int], torch.Tensor] | None = None,
    block_grid: str = "original",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run one sampler over ``seq``; returns the edited (and, for SIGE SDEdit, the original) final latents.

    SIGE (``masks`` given, the UNet a SIGEModel): every step first runs the full pass on the original
    trajectory - SDEdit (``init``): its own trajectory, sampled alongside as the first half of one stacked
    sample; inpainting (``x0``): ``x0`` noised to the step - then the sparse pass on the edited sample.
    Inpainting (``keep`` = 1 where the original is kept) blends ``x0`` noised to the next step into the sample
    after every step but the last, with the noise the next full pass uses.
    """
    fn, options = sampler_from_config(sampler_cfg)
    schedule = make_schedule(sampler_cfg)
    unet = model.unet
    sige = masks is not None
    if sige and not isinstance(unet, SIGEModel):
        raise TypeError("SIGE sampling needs a SIGEModel UNet")
    final_t = int(options.get("final_t", -1))

    def noise_like(z: torch.Tensor) -> torch.Tensor:
        return torch.randn(z.shape, generator=generator, dtype=torch.float32).to(z.device, z.dtype)

    def sparse_eps(z: torch.Tensor, t: int) -> torch.Tensor:
        unet.set_masks(masks, block_grid=block_grid)
        unet.set_mode("sparse")
        try:
            return model.eps(z, t)
        finally:
            unet.set_mode("full")

    noised: dict[str, torch.Tensor] = {}
    post: Callable | None = None
    if keep is not None:  # inpainting: blend the noised original in before every step
        noised["x"] = q_sample(x0, seq[-1], noise_like(x0), schedule)
        x = noised["x"] * keep + x * (1 - keep)

        def post(z: torch.Tensor, t_next: int, step: int) -> torch.Tensor:
            if t_next == final_t:
                return z
            noised["x"] = q_sample(x0, t_next, noise_like(x0), schedule)
            return noised["x"] * keep + z * (1 - keep)

    try:
        if not sige:
            return fn(
                lambda z, t, step: model.eps(z, t), x, seq, schedule, generator=generator, post=post, **options
            ), None
        if init is not None:  # SDEdit: the original trajectory is the first half of the stacked sample

            def paired(z: torch.Tensor, t: int, step: int) -> torch.Tensor:
                zo, ze = z.chunk(2)
                unet.set_mode("full")
                eo = model.eps(zo, t)
                return torch.cat([eo, sparse_eps(ze, t)])

            out = fn(paired, torch.cat([init, x]), seq, schedule, generator=generator, **options)
            base, edited = out.chunk(2)
            return edited, base

        def inpaint(z: torch.Tensor, t: int, step: int) -> torch.Tensor:
            unet.set_mode("full")
            model.eps(noised["x"], t)  # refreshes every cache; the output is not needed
            return sparse_eps(z, t)

        return fn(inpaint, x, seq, schedule, generator=generator, post=post, **options), None
    finally:
        if sige:
            unet.set_mode("full")
            unet.clear_cache()


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
        if text.get("clip_l"):
            enc = load_clip_l(reader, text["clip_l"]["prefix"], text["clip_l"].get("layer", "last"), dtype)
            ids = tok([prompt, negative], pad=EOT)
            h = enc(ids)
            parts["c"].append(h[:1])
            parts["u"].append(h[1:])
            del enc
        if text.get("openclip_bigg"):
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
    sampler_cfg: Mapping[str, Any],
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
    schedule = make_schedule(sampler_cfg)

    def encode(img):
        mean, _ = comp.vae.encode(img.to(dtype))
        return mean * sf

    H, W = case.size
    h, w = H // enc.downsampling, W // enc.downsampling
    model = Guided(comp.unet, cond, uncond, float(sampler_cfg.get("guidance", 1.0)))
    f = comp.unet.latent_downsampling
    masks = complete_pyramid(case.masks, (h // f, w // f)) if sige else None
    keep = x0 = None
    if case.kind == "sdedit":
        if sige:
            enc.set_mode("full")
            z_init = encode(case.original)
            enc.set_masks(case.masks, block_grid=block_grid)
            enc.set_mode("sparse")
        z = encode(case.edited)
        enc.set_mode("full")
        enc.clear_cache()
        seq, start_t = img2img_plan(sampler_cfg, float(sampler_cfg.get("strength", 0.8)))
        noise = torch.randn(z.shape, generator=g).to(dtype)
        x = start_sample(z, noise, start_t, schedule)
        init = start_sample(z_init, noise, start_t, schedule) if sige else None
        x, base = sample(model, sampler_cfg, x, seq, g, init=init, masks=masks, block_grid=block_grid)
        dec_masks = case.decoder_masks
    else:  # inpainting
        x0 = encode(case.original)
        keep = 1.0 - case.masks[(h, w)].to(dtype)[None, None]
        seq, start_t = img2img_plan(sampler_cfg, float(sampler_cfg.get("inpaint_strength", 1.0)))
        x = start_sample(x0, torch.randn(x0.shape, generator=g).to(dtype), start_t, schedule)
        x, _ = sample(model, sampler_cfg, x, seq, g, x0=x0, keep=keep, masks=masks, block_grid=block_grid)
        base, dec_masks = x0, masks
    if refine is not None:
        rcomp, rcond, runcond, rsampler = refine
        rmodel = Guided(rcomp.unet, rcond, runcond, float(rsampler.get("guidance", 1.0)))
        rschedule = make_schedule(rsampler)
        rseq, rstart = img2img_plan(rsampler, float(rsampler.get("strength", 0.15)))
        noise = torch.randn(x.shape, generator=g).to(dtype)
        xr = start_sample(x, noise, rstart, rschedule)
        if case.kind == "sdedit":
            rinit = start_sample(base, noise, rstart, rschedule) if sige else None
            x, base_r = sample(rmodel, rsampler, xr, rseq, g, init=rinit, masks=masks, block_grid=block_grid)
            base = base_r if base_r is not None else base
        else:
            x, _ = sample(rmodel, rsampler, xr, rseq, g, x0=x0, keep=keep, masks=masks, block_grid=block_grid)
    if sige:
        comp.vae.decode(base / sf)
        dec.set_masks(dec_masks, block_grid=block_grid)
        dec.set_mode("sparse")
    img = comp.vae.decode(x / sf)
    dec.set_mode("full")
    dec.clear_cache()
    return img.float().clamp(-1, 1)


def generate(cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Entry of ``task=generate`` (called with the whole composed config as a plain dict)."""
    from sigebench.config import plain
    from sigebench.jobs import compose_job

    from .diffusers_folder import is_diffusers_folder

    model_cfg, edit, task = cfg["model"], cfg["edit"], cfg["task"]
    folder = cfg["weights"] if is_diffusers_folder(cfg.get("weights")) else None
    weights = folder or resolve_weights(cfg.get("weights"), model_cfg.get("checkpoint"), model_cfg["name"])
    if weights is None:
        raise FileNotFoundError(
            f"task=generate needs the {model_cfg['name']} checkpoint ({model_cfg.get('checkpoint')}, listed in "
            "datasets/sd_checkpoints.yaml): pass weights=PATH (or weights=pretrained with the file in SIGE_DATA); "
            "random weights make no image"
        )
    variants = list(task.get("variants") or ["sige"])
    bad = [v for v in variants if v not in ("original", "sige")]
    if bad:
        raise ValueError(f"task.variants for the SD / SDXL models: original and/or sige, got {bad}")
    dtype = getattr(torch, cfg.get("dtype", "float32"))
    size = tuple(model_cfg.get("image_size", (512, 1024)))
    case = load_case(edit, size)  # type: ignore[arg-type]
    prompt = task.get("prompt") or case.meta.get("prompt")
    if not prompt:
        raise ValueError("no prompt: set task.prompt=... (the edit config has none)")
    seed = int(task["seed"] if task.get("seed") is not None else (edit.get("seed") or 0))
    sampler_cfg = dict(model_cfg["sampler"])
    negative = task.get("negative_prompt") or ""

    def stage(mcfg: Mapping[str, Any], source: Any) -> tuple[Components, Mapping, Mapping | None]:
        """The components and text conditioning of a checkpoint file or a diffusers folder (sdxl.diffusers_generate)."""
        if is_diffusers_folder(source):
            from .diffusers_generate import folder_stage

            return folder_stage(mcfg, source, prompt, negative, size, dtype)
        reader = CheckpointReader(source)
        c, u = encode_text(mcfg, reader, prompt, negative, size, dtype)
        return build_components(mcfg, reader, dtype), c, u

    comp, cond, uncond = stage(model_cfg, weights)
    if float(sampler_cfg.get("guidance", 1.0)) == 1.0:
        uncond = None  # turbo: no classifier-free guidance (batch 1)
    refine = None
    if task.get("refiner_weights"):
        rcfg = plain(compose_job(["model=sdxl_refiner"]))["model"]
        rcfg["text"]["tokenizer"] = (model_cfg.get("text") or {}).get("tokenizer")
        refine = (*stage(rcfg, task["refiner_weights"]), rcfg["sampler"])
    rows = []
    for variant in variants:
        img = run_pipeline(comp, case, cond, uncond, sampler_cfg, seed, variant == "sige",
                           task.get("block_grid", "original"), refine)  # fmt: skip
        out = (
            Path(task.get("out_dir", "results/generate")) / model_cfg["name"] / f"{case.name}-{variant}-seed{seed}.png"
        )
        save_image(img, out)
        print(f"wrote {out}")
        rows.append({"image": str(out), "seed": seed, "prompt": prompt, "variant": variant})
    return rows
