"""SIGE editing for diffusers pipelines: SDEdit (img2img) and inpainting with Stable Diffusion 1.x / 2.x and SDXL
(base, turbo; with the refiner as a second stage), built from an existing diffusers pipeline object.

    pipe = StableDiffusionPipeline.from_pretrained(...)          # or StableDiffusionXLPipeline, ...Img2Img...
    sige = SIGEPipeline.from_pipe(pipe)                          # UNet and VAE converted, weights shared
    session = sige.session(original, prompt="a photo of a house", num_inference_steps=50, strength=0.8)
    out = session.edit(edited)                                   # sparse passes only; out.images[0] is a PIL image
    out2 = session.edit(edited_again)                            # the same caches, another edit
    print(session.cache_bytes / 2**30, "GiB of caches")

Everything runs on this project's models and samplers: the UNet and VAE are converted by
:mod:`sdxl.diffusers_convert`, the denoising walks :mod:`sigebench.samplers` through :mod:`sdxl.session` (see there
for what a session caches). From the diffusers pipeline come the weights, the text encoding (``pipe.encode_prompt``;
or pass :class:`PromptEmbeds`, no tokenizer needed) and the noise schedule of ``pipe.scheduler.config`` (betas,
``prediction_type`` epsilon or v_prediction). The sampling algorithm is one of the project's, ``sampler=`` a name of
``configs/sampler/`` (default: the paper's, ``ldm_ddim`` for SD 1.x / 2.x, ``sgm_dpmpp2m`` for SDXL;
``sgm_euler_ancestral`` for SDXL-Turbo) or a full sampler config; ``num_inference_steps``, ``strength`` and
``guidance_scale`` override it. Latents are the encoder's posterior mean (the same for the original and every edit).
dtype and device are the pipeline's (float16 / bfloat16 on CUDA, float32 on the CPU); an SDXL VAE with
``force_upcast`` runs in float32 under a float16 pipeline (a float32 copy of the VAE), as diffusers does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sigebench.images import resize_mask, to_uint8
from sigebench.schedules import make_schedule

from .diffusers_convert import added_cond_vector, unet_from_diffusers, vae_from_diffusers
from .edits import resize_image
from .generate import Guided
from .session import EditResult, EditSession, Stage

DEFAULT_SAMPLERS = {"sd": "ldm_ddim", "sdxl": "sgm_dpmpp2m"}
REFINER_MODEL = "sdxl_refiner"  # the project's refiner config: its sampler and strength serve the refiner stage


@dataclass
class PromptEmbeds:
    """Text conditioning given directly (no tokenizer or text encoder needed), as diffusers names it:
    ``prompt_embeds [1, T, D]`` and, for SDXL, ``pooled_prompt_embeds [1, P]``; the negative ones are needed for
    classifier-free guidance (``guidance_scale > 1``)."""

    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None = None
    pooled_prompt_embeds: torch.Tensor | None = None
    negative_pooled_prompt_embeds: torch.Tensor | None = None


@dataclass
class EditOutput:
    images: list  # PIL images (one)
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1]
    latents: torch.Tensor
    result: EditResult = field(repr=False)


def sampler_preset(name: str) -> dict[str, Any]:
    """A sampler config of ``configs/sampler/<name>.yaml`` (composed by Hydra, as the harness does)."""
    from sigebench.config import plain
    from sigebench.jobs import CONFIGS, compose_job

    if not (CONFIGS / "sampler" / f"{name}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in (CONFIGS / "sampler").glob("*.yaml")))
        raise ValueError(f"unknown sampler {name!r}; use one of {known} or a sampler config mapping")
    return plain(compose_job(["model=sd14", f"sampler@model.sampler={name}"]))["model"]["sampler"]


def scheduler_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The noise schedule of a diffusers scheduler config as sampler-config fields (what the samplers here read)."""
    beta = config.get("beta_schedule", "linear")
    refused = {
        "beta_schedule": beta not in ("linear", "scaled_linear"),
        "trained_betas": config.get("trained_betas") is not None,
        "rescale_betas_zero_snr": bool(config.get("rescale_betas_zero_snr")),
        "thresholding": bool(config.get("thresholding")),
        "clip_sample": bool(config.get("clip_sample")),
        "prediction_type": config.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"),
    }
    bad = [k for k, v in refused.items() if v]
    if bad:
        raise ValueError(
            f"scheduler config {', '.join(f'{k}={config.get(k)!r}' for k in bad)} is not supported by this pipeline "
            "(linear / scaled_linear betas, epsilon or v_prediction, no thresholding or clipping)"
        )
    return dict(schedule="discrete", beta_schedule=beta, beta_start=float(config.get("beta_start", 1e-4)),
                beta_end=float(config.get("beta_end", 0.02)),
                total_steps=int(config.get("num_train_timesteps", 1000)))  # fmt: skip


def to_image(image: Any, size: tuple[int, int] | None, what: str = "image") -> torch.Tensor:
    """A PIL image, ``uint8 [H, W, 3]`` array or ``[1|-, 3, H, W]`` tensor in [-1, 1] as ``[1, 3, H, W]`` at ``size``
    (LANCZOS-resized as the project's pipelines do; ``None``: the image's own size, cut to multiples of 32)."""
    if isinstance(image, torch.Tensor):
        t = image[None] if image.dim() == 3 else image
        if t.dim() != 4 or t.shape[:2] != (1, 3):
            raise ValueError(
                f"{what}: a tensor image must be [3, H, W] or [1, 3, H, W] in [-1, 1], got {tuple(t.shape)}"
            )
        if size is not None and tuple(t.shape[2:]) != tuple(size):
            raise ValueError(f"{what}: tensor of size {tuple(t.shape[2:])}, the session's images are {tuple(size)}")
        return t.float()
    if hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise TypeError(f"{what}: give a PIL image, a uint8 [H, W, 3] array or a tensor, got {a.dtype} {a.shape}")
    return resize_image(a, size)


def to_mask(mask: Any, size: tuple[int, int]) -> torch.Tensor:
    """A mask (PIL image: white = selected; array or tensor: non-zero = selected) as ``bool [H, W]`` at ``size``."""
    if hasattr(mask, "convert"):
        mask = np.asarray(mask.convert("L"))
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return torch.from_numpy(resize_mask(np.asarray(mask), size))


def _pil(image: torch.Tensor) -> Any:
    from PIL import Image

    return Image.fromarray(to_uint8(image[0]))


class _Model:
    """One denoising model of a diffusers pipeline: the converted UNet and how to condition it."""

    def __init__(self, pipe: Any, engine: Mapping[str, Any] | None = None):
        self.pipe = pipe
        self.config = dict(pipe.unet.config)
        self.unet = unet_from_diffusers(pipe.unet, **dict(engine or {}))
        self.family = "sdxl" if self.config.get("addition_embed_type") == "text_time" else "sd"
        self.scheduler = dict(pipe.scheduler.config)
        self.schedule_fields = scheduler_settings(self.scheduler)

    def sampler(self, sampler: str | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(sampler, Mapping):
            cfg = dict(sampler)
        else:
            cfg = sampler_preset(sampler or DEFAULT_SAMPLERS[self.family])
        cfg.update(self.schedule_fields)
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        return cfg

    def embeds(self, prompt: str | PromptEmbeds, negative: str | None, cfg: bool) -> PromptEmbeds:
        if isinstance(prompt, PromptEmbeds):
            e = prompt
        elif isinstance(prompt, str):
            if not hasattr(self.pipe, "encode_prompt") or not any(
                getattr(self.pipe, n, None) is not None for n in ("text_encoder", "text_encoder_2")
            ):
                raise ValueError("this pipeline has no text encoder: pass prompt=PromptEmbeds(...) instead of a string")
            device = next(self.unet.parameters()).device
            out = self.pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=cfg, negative_prompt=negative)  # fmt: skip
            e = PromptEmbeds(*out)
        else:
            raise TypeError(f"prompt must be a string or PromptEmbeds, got {type(prompt).__name__}")
        if e.prompt_embeds.dim() != 3 or e.prompt_embeds.shape[0] != 1:
            raise ValueError(
                f"prompt_embeds must be [1, T, D] (one prompt per session), got {tuple(e.prompt_embeds.shape)}"
            )
        if cfg and e.negative_prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative_prompt_embeds (PromptEmbeds) or a text encoder")
        if self.family == "sdxl" and (
            e.pooled_prompt_embeds is None or (cfg and e.negative_pooled_prompt_embeds is None)
        ):
            raise ValueError("SDXL needs pooled_prompt_embeds (and negative_pooled_prompt_embeds with guidance)")
        return e

    def time_ids(self, pooled: int, size: tuple[int, int], opts: Mapping[str, Any], negative: bool) -> list[float]:
        """SDXL's micro-conditioning: (original size, crop, target size) for the base model, (original size, crop,
        aesthetic score) for the refiner; which, the UNet's added-conditioning width says. Defaults as diffusers'."""
        dim = int(self.config["addition_time_embed_dim"])
        n, rest = divmod(int(self.config["projection_class_embeddings_input_dim"]) - pooled, dim)
        head = [*(opts.get("original_size") or size), *opts.get("crops_coords_top_left", (0, 0))]
        if rest == 0 and n == 6:
            return [*head, *(opts.get("target_size") or size)]
        if rest == 0 and n == 5:
            return [*head, opts.get("negative_aesthetic_score" if negative else "aesthetic_score")]
        raise ValueError(
            f"pooled text embeddings of width {pooled} do not fit this UNet's added conditioning "
            f"({self.config['projection_class_embeddings_input_dim']} = pooled + 6 or 5 x {dim})"
        )

    def guided(self, e: PromptEmbeds, scale: float, sampler: Mapping[str, Any], size, opts) -> Guided:
        p = next(self.unet.parameters())

        def cond(context: torch.Tensor, pooled: torch.Tensor | None, negative: bool) -> dict[str, torch.Tensor]:
            out = {"context": context.to(p.device, p.dtype)}
            if self.family == "sdxl":
                ids = torch.tensor([self.time_ids(int(pooled.shape[-1]), size, opts, negative)], dtype=torch.float32)
                dim = int(self.config["addition_time_embed_dim"])
                out["y"] = added_cond_vector(pooled.float().cpu(), ids, dim).to(p.device, p.dtype)
            return out

        use_cfg = scale > 1.0
        c = cond(e.prompt_embeds, e.pooled_prompt_embeds, False)
        u = cond(e.negative_prompt_embeds, e.negative_pooled_prompt_embeds, True) if use_cfg else None
        prediction = self.scheduler.get("prediction_type", "epsilon")
        return Guided(self.unet, c, u, scale, prediction, make_schedule(sampler))


class SIGEPipeline:
    """SDEdit / inpainting sessions with SIGE on a diffusers SD 1.x / 2.x / SDXL pipeline (and an SDXL refiner
    pipeline as a second stage). ``fast``: the project's fast sparse configuration (trimmed block grid, keys and
    values of the active tokens only); ``False``: the paper's computation."""

    def __init__(self, pipe: Any, refiner: Any | None = None, *, fast: bool = True):
        for name in ("unet", "vae", "scheduler"):
            if getattr(pipe, name, None) is None:
                raise ValueError(f"the diffusers pipeline has no {name}; SIGEPipeline needs unet, vae and scheduler")
        self.base = _Model(pipe)
        self.refiner = _Model(refiner) if refiner is not None else None
        if self.refiner is not None and self.refiner.family != "sdxl":
            raise ValueError("refiner= takes an SDXL refiner pipeline")
        unet_p = next(self.base.unet.parameters())
        cfg = dict(pipe.vae.config)
        upcast = bool(cfg.get("force_upcast")) and unet_p.dtype == torch.float16
        self.vae = vae_from_diffusers(pipe.vae, dtype=torch.float32 if upcast else None)
        if cfg.get("latents_mean") is not None or cfg.get("latents_std") is not None:
            raise ValueError("VAEs with latents_mean / latents_std are not supported by this pipeline")
        self.scale_factor = float(cfg.get("scaling_factor", 0.18215))
        self.shift_factor = float(cfg.get("shift_factor") or 0.0)
        self.block_grid, self.kv_mode = ("trimmed", "scatter") if fast else ("original", "dense")
        f = self.vae.encoder.downsampling
        self.size_multiple = f * max(m.unet.latent_downsampling for m in (self.base, self.refiner) if m is not None)
        self._session: EditSession | None = None

    @classmethod
    def from_pipe(cls, pipe: Any, refiner: Any | None = None, **kw: Any) -> SIGEPipeline:
        """A SIGE pipeline on ``pipe``'s UNet, VAE, scheduler and text encoders (weights shared, not copied)."""
        return cls(pipe, refiner, **kw)

    def _size(self, image: Any, height: int | None, width: int | None) -> tuple[int, int]:
        """``(height, width)`` given, or the image's own size cut to multiples of :attr:`size_multiple`."""
        m = self.size_multiple
        if height is not None and width is not None:
            size = (int(height), int(width))
        else:
            h, w = tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) else np.asarray(image).shape[:2]
            size = (int(h) - int(h) % m, int(w) - int(w) % m)
        if min(size) < m or size[0] % m or size[1] % m:
            raise ValueError(f"image size {size}: height and width must be positive multiples of {m}")
        return size

    def session(
        self,
        image: Any,
        prompt: str | PromptEmbeds,
        *,
        mode: str = "sdedit",
        negative_prompt: str | None = None,
        sampler: str | Mapping[str, Any] | None = None,
        num_inference_steps: int | None = None,
        strength: float | None = None,
        guidance_scale: float | None = None,
        seed: int = 0,
        height: int | None = None,
        width: int | None = None,
        refiner_prompt: str | PromptEmbeds | None = None,
        refiner_strength: float | None = None,
        keep_steps: bool = True,
        **micro: Any,
    ) -> PipelineSession:
        """Run the original ``image`` once (every step's cache kept) and return a session for its edits.

        ``mode``: ``sdedit`` (edit with an edited image) or ``inpaint`` (edit with a mask). ``micro``: SDXL's
        ``original_size``, ``crops_coords_top_left``, ``target_size``, ``aesthetic_score`` (6.0),
        ``negative_aesthetic_score`` (2.5), as in diffusers. ``keep_steps=False`` keeps one step's caches instead of
        all (see :class:`sdxl.session.EditSession`). Starting a session ends the previous one of this pipeline.
        """
        known = {"original_size", "crops_coords_top_left", "target_size", "aesthetic_score", "negative_aesthetic_score"}
        bad = sorted(set(micro) - known)
        if bad:
            raise TypeError(f"unknown argument(s) {bad}; SDXL micro-conditioning takes {sorted(known)}")
        opts = {"aesthetic_score": 6.0, "negative_aesthetic_score": 2.5, **micro}
        if mode not in ("sdedit", "inpaint"):
            raise ValueError(f"mode must be 'sdedit' or 'inpaint', got {mode!r}")
        size = self._size(image, height, width)
        original = to_image(image, size, "image")
        key = "strength" if mode == "sdedit" else "inpaint_strength"
        cfg = self.base.sampler(sampler, {"sample_steps": num_inference_steps, key: strength,
                                          "guidance": guidance_scale})  # fmt: skip
        stages = [self._stage(self.base, prompt, negative_prompt, cfg, float(cfg[key]), size, opts)]
        if self.refiner is not None:
            from sigebench.config import plain
            from sigebench.jobs import compose_job

            rcfg = self.refiner.sampler(plain(compose_job([f"model={REFINER_MODEL}"]))["model"]["sampler"],
                                        {"strength": refiner_strength})  # fmt: skip
            rprompt = refiner_prompt if refiner_prompt is not None else prompt
            if isinstance(rprompt, PromptEmbeds) and refiner_prompt is None:
                raise ValueError("with embeddings, give the refiner's own: refiner_prompt=PromptEmbeds(...)")
            stages.append(
                self._stage(self.refiner, rprompt, negative_prompt, rcfg, float(rcfg["strength"]), size, opts)
            )
        if self._session is not None:
            self._session.close()
        self._session = EditSession(
            self.vae, self.scale_factor, stages, original, "sdedit" if mode == "sdedit" else "inpaint", seed,
            self.block_grid, self.kv_mode, self.shift_factor, keep_steps,
        )  # fmt: skip
        return PipelineSession(self._session, size)

    def _stage(self, model: _Model, prompt, negative, cfg, strength, size, opts) -> Stage:
        scale = float(cfg.get("guidance", 1.0))
        e = model.embeds(prompt, negative, scale > 1.0)
        return Stage(model.guided(e, scale, cfg, size, opts), cfg, strength)

    def __call__(
        self,
        image: Any,
        prompt: str | PromptEmbeds,
        edited_image: Any | None = None,
        mask_image: Any | None = None,
        dense: bool = False,
        **kw: Any,
    ) -> EditOutput:
        """One edit: an SDEdit of ``edited_image`` (``mask_image`` optional: the edited region) or, with only
        ``mask_image``, inpainting; the session is closed after it (use :meth:`session` for repeated edits)."""
        mode = "sdedit" if edited_image is not None else "inpaint"
        if mode == "inpaint" and mask_image is None:
            raise ValueError("give edited_image (SDEdit) or mask_image (inpainting)")
        s = self.session(image, prompt, mode=mode, **kw)
        try:
            return s.edit(edited_image, mask_image, dense=dense)
        finally:
            s.close()


class PipelineSession:
    """A session of :class:`SIGEPipeline` (images in and out as PIL images, arrays or tensors); see
    :class:`sdxl.session.EditSession`."""

    def __init__(self, session: EditSession, size: tuple[int, int]):
        self.session, self.size = session, size

    @property
    def original_image(self) -> Any:
        """The original as the pipeline reproduces it (decoded from its final latents), a PIL image."""
        return _pil(self.session.original_image)

    @property
    def cache_bytes(self) -> int:
        return self.session.cache_bytes

    def edit(self, image: Any | None = None, mask_image: Any | None = None, dense: bool = False) -> EditOutput:
        """SDEdit session: ``image`` is the edited image (``mask_image``: the edited region, instead of the pixel
        difference); inpainting session: ``mask_image`` (white / non-zero = repaint). ``dense``: the dense reference."""
        edited = None if image is None else to_image(image, self.size, "edited image")
        mask = None if mask_image is None else to_mask(mask_image, self.size)
        r = self.session.edit(edited, mask, dense=dense)
        return EditOutput([_pil(r.image)], r.image, r.latents, r)

    def close(self) -> None:
        self.session.close()
