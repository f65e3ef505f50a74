"""Editing sessions: the original runs once with every denoising step's cache kept, then each edit costs only sparse
passes (encoder, every UNet step of every stage, decoder); repeated edits of the same original reuse the caches.

``EditSession(vae, scale_factor, stages, original, kind)`` runs the original at once:

* SDEdit (``kind="sdedit"``): the encoder's full pass on the original, then each stage's sampler from the original
  latent noised to the start timestep, one full UNet pass per step under ``cache_id = step``, and the decoder's full
  pass on the final latent. An edit (``edit(edited)``) encodes the edited image sparsely, samples with the same
  start noise and the same sampler noise (the generator state is replayed), every UNet pass sparse under the step's
  cache id, and decodes sparsely.
* Inpainting (``kind="inpaint"``): the original latent noised to every step's timestep (noise drawn once) gets a
  full UNet pass per step; an edit (``edit(mask=...)``) samples the masked region from noise, blending that same
  noised original in outside the mask before every step (so each sparse pass differs from its cached full pass
  inside the mask only) and the clean original after the last (as diffusers' inpainting does), and decodes sparsely
  against the decoded original.

``stages`` are the denoising stages in order (SDXL: the base model, then the refiner on the base's latents).
The masks are the reference pipelines' (:mod:`sdxl.edits`). ``edit(..., dense=True)`` runs the same edit densely
(full passes under a scratch cache id), the reference a sparse edit approximates. Memory: every step's caches are
kept (``cache_bytes``; SD 1.4 at 512x1024 in float32 with the CFG batch: about 1.9 GB per UNet step, the
``cache_mb`` of the benchmark's sparse rows), or one step's with ``keep_steps=False``. A session ends with
:meth:`close`, or when another session of the same models starts (its caches are the models').
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sige.nn import SIGEModel
from sige.nn.attention import set_kv_mode
from sigebench.samplers import sampler_from_config
from sigebench.schedules import make_schedule, q_sample

from .edits import Masks, complete_pyramid, inpainting_masks, sdedit_masks
from .generate import Guided, img2img_plan, start_sample
from .vae import AutoencoderKL

KINDS = ("sdedit", "inpaint")
DENSE = "dense"  # the cache id of dense reference passes (never one of a session's step slots)


@dataclass
class Stage:
    """One denoising stage: a guided UNet (a SIGEModel), its sampler config and the stage's strength."""

    model: Guided
    sampler: Mapping[str, Any]
    strength: float


@dataclass
class EditResult:
    image: torch.Tensor  # [1, 3, H, W] in [-1, 1], float32
    latents: torch.Tensor  # the final latents (before the decoder)
    masks: Masks  # the UNet's mask pyramid of this edit
    decoder_masks: Masks


@dataclass
class _Plan:
    seq: list[int]
    start_t: int | None
    noise: torch.Tensor  # the stage's start noise
    state: torch.Tensor  # the generator state the stage's sampler starts from
    noised: dict[int, torch.Tensor]  # inpainting: the original noised to each timestep
    inputs: list[torch.Tensor]  # the original's UNet input at every step (to refresh one slot: keep_steps=False)


class EditSession:
    """See the module docstring. ``block_grid`` / ``kv_mode``: the sparse configuration (default: the project's fast
    one, ``trimmed`` blocks and self-attention keys/values of the active tokens only; ``original`` / ``dense`` is the
    paper's computation); both give the same images up to rounding. ``keep_steps=False``: one cache slot instead of one
    per step, and each edit step reruns the original's full pass (from its stored input latents) before the sparse
    pass: the memory of one step for about twice the compute of an edit (the reference pipelines' protocol)."""

    def __init__(
        self,
        vae: AutoencoderKL,
        scale_factor: float,
        stages: Sequence[Stage],
        original: torch.Tensor,
        kind: str = "sdedit",
        seed: int = 0,
        block_grid: str = "trimmed",
        kv_mode: str = "scatter",
        shift_factor: float = 0.0,
        keep_steps: bool = True,
    ):
        if kind not in KINDS:
            raise ValueError(f"session kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not stages:
            raise ValueError("a session needs at least one denoising stage")
        for s in stages:
            if not isinstance(s.model.unet, SIGEModel):
                raise TypeError(f"stage UNets must be SIGEModels (sdxl.unet.UNet), got {type(s.model.unet).__name__}")
        self.vae, self.scale_factor, self.shift_factor = vae, float(scale_factor), float(shift_factor)
        self.stages, self.kind, self.block_grid, self.kv_mode = list(stages), kind, block_grid, kv_mode
        self.keep_steps = bool(keep_steps)
        p = next(vae.parameters())
        self.device, self.dtype = p.device, p.dtype
        # latents in the UNets' dtype (an upcast VAE may run in float32 beside float16 UNets)
        self.latent_dtype = next(self.stages[0].model.unet.parameters()).dtype
        self.original = original.to(self.device, self.dtype)
        self.closed = False
        self._plans: list[_Plan] = []
        for m in self._models():
            previous = getattr(m, "_edit_session", lambda: None)()
            if previous is not None and previous is not self:
                previous.closed = True  # the caches it relied on are about to be replaced
            m._edit_session = weakref.ref(self)
            m.set_mode("full")
            m.set_sparse_update(False)
            m.clear_cache()
        with torch.no_grad():
            self._run_original(torch.Generator().manual_seed(int(seed)))
        for s in self.stages:
            set_kv_mode(s.model.unet, kv_mode)

    # -- helpers ---------------------------------------------------------------------------------------------------
    def _models(self) -> list[SIGEModel]:
        unets = list({id(s.model.unet): s.model.unet for s in self.stages}.values())
        return [self.vae.encoder, self.vae.decoder, *unets]

    def _randn(self, like: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return torch.randn(like.shape, generator=g, dtype=torch.float32).to(like.device, like.dtype)

    def _encode(self, image: torch.Tensor) -> torch.Tensor:
        mean, _ = self.vae.encode(image.to(self.device, self.dtype))
        return ((mean - self.shift_factor) * self.scale_factor).to(self.latent_dtype)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode((z / self.scale_factor + self.shift_factor).to(self.dtype))

    def _step_fn(
        self, stage: Stage, plan: _Plan, mode: str, masks: Masks | None = None
    ) -> Callable[[torch.Tensor, int, int], torch.Tensor]:
        """The sampler's ``model_fn``: step ``k`` evaluates under cache id ``k`` (the original's pass at that step;
        ``keep_steps=False``: slot 0, refreshed by the original's full pass before every sparse one)."""
        unet, visited = stage.model.unet, list(reversed(plan.seq))

        def fn(z: torch.Tensor, t: int, step: int) -> torch.Tensor:
            if step >= len(visited) or visited[step] != t:
                raise RuntimeError(f"the sampler evaluated timestep {t} at step {step}; the session cached {visited}")
            unet.set_cache_id(DENSE if mode == DENSE else step if self.keep_steps else 0)
            if mode == "full":
                plan.inputs.append(z.clone())
            if mode == "sparse" and not self.keep_steps:
                unet.set_mode("full")
                stage.model.eps(plan.inputs[step], t)
                unet.set_masks(masks, block_grid=self.block_grid)
            unet.set_mode("sparse" if mode == "sparse" else "full")
            return stage.model.eps(z, t)

        return fn

    # -- the original ------------------------------------------------------------------------------------------------
    def _run_original(self, g: torch.Generator) -> None:
        enc, dec = self.vae.encoder, self.vae.decoder
        self.x0 = self._encode(self.original)  # the encoder's full pass (its cache serves SDEdit's sparse encodes)
        x = self.x0
        for stage in self.stages:
            fn, options = sampler_from_config(stage.sampler)
            schedule = make_schedule(stage.sampler)
            seq, start_t = img2img_plan(stage.sampler, stage.strength)
            noise = self._randn(x, g)
            noised: dict[int, torch.Tensor] = {}
            if self.kind == "inpaint":  # the noised original of every step, drawn once
                noised = {t: q_sample(self.x0, t, self._randn(x, g), schedule) for t in reversed(seq)}
            plan = _Plan(seq, start_t, noise, g.get_state(), noised, [])
            self._plans.append(plan)
            step_fn = self._step_fn(stage, plan, "full")
            if self.kind == "sdedit":
                x = fn(step_fn, start_sample(x, noise, start_t, schedule), seq, schedule, generator=g, **options)
            else:
                for step, t in enumerate(reversed(seq)):
                    step_fn(noised[t], t, step)
        self.base = x if self.kind == "sdedit" else self.x0
        self.original_image = self._decode(self.base).float().clamp(-1, 1)  # the decoder's full pass
        enc.set_cache_id(0)
        dec.set_cache_id(0)

    # -- edits -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def edit(
        self,
        edited: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        dense: bool = False,
    ) -> EditResult:
        """Edit the session's original: SDEdit ``edited`` (``[1, 3, H, W]`` in [-1, 1]; ``mask`` [H, W] replaces the
        difference mask), or inpaint ``mask`` (``[H, W]``, True = repaint). ``dense``: the dense reference."""
        if self.closed:
            raise RuntimeError(
                "this session is closed (a newer session of the same models replaced it); start a new one"
            )
        H, W = (int(s) for s in self.original.shape[2:])
        if self.kind == "sdedit":
            if edited is None:
                raise ValueError("an SDEdit session edits with edit(edited=IMAGE [, mask=REGION])")
            if tuple(edited.shape) != tuple(self.original.shape):
                raise ValueError(
                    f"edited image {tuple(edited.shape)} differs from the original {tuple(self.original.shape)}"
                )
            region = None if mask is None else torch.as_tensor(mask).bool().cpu()
            _, masks, dec_masks = sdedit_masks(self.original.float().cpu(), edited.float().cpu(), region)
        else:
            if mask is None or edited is not None:
                raise ValueError("an inpainting session edits with edit(mask=MASK) (True = region to repaint)")
            m = torch.as_tensor(mask).bool().cpu()
            if tuple(m.shape) != (H, W):
                raise ValueError(f"inpainting mask {tuple(m.shape)} differs from the image size {(H, W)}")
            masks = dec_masks = inpainting_masks(m)
        masks = {k: v.to(self.device) for k, v in masks.items()}
        dec_masks = {k: v.to(self.device) for k, v in dec_masks.items()}
        h, w = (int(s) for s in self.x0.shape[2:])
        f = max(s.model.unet.latent_downsampling for s in self.stages)
        unet_masks = complete_pyramid(masks, (h // f, w // f))
        mode = DENSE if dense else "sparse"
        enc, dec = self.vae.encoder, self.vae.decoder
        try:
            if self.kind == "sdedit":
                self._prepare(enc, masks, mode)
                x = self._encode(edited)
                keep = None
            else:
                x = self.x0
                keep = 1.0 - masks[(h, w)].to(self.latent_dtype)[None, None]
            for stage, plan in zip(self.stages, self._plans):
                x = self._run_stage(stage, plan, x, keep, unet_masks, mode)
            self._prepare(dec, dec_masks, mode)
            image = self._decode(x).float().clamp(-1, 1)
        finally:
            for m in self._models():
                m.set_mode("full")
            enc.set_cache_id(0)
            dec.set_cache_id(0)
        return EditResult(image, x, unet_masks, dec_masks)

    def _prepare(self, model: SIGEModel, masks: Masks, mode: str) -> None:
        if mode == DENSE:
            model.set_cache_id(DENSE)
            model.set_mode("full")
        else:
            model.set_masks(masks, block_grid=self.block_grid)
            model.set_mode("sparse")

    def _run_stage(self, stage: Stage, plan: _Plan, x: torch.Tensor, keep, masks: Masks, mode: str) -> torch.Tensor:
        fn, options = sampler_from_config(stage.sampler)
        schedule = make_schedule(stage.sampler)
        final_t = int(options.get("final_t", -1))
        if mode != DENSE:
            stage.model.unet.set_masks(masks, block_grid=self.block_grid)
        g = torch.Generator()
        g.set_state(plan.state)  # the sampler noise of the original's run
        x = start_sample(x, plan.noise, plan.start_t, schedule)
        post = None
        if keep is not None:  # inpainting: the noised original outside the mask, before every step
            x = plan.noised[plan.seq[-1]] * keep + x * (1 - keep)

            def post(z: torch.Tensor, t_next: int, step: int) -> torch.Tensor:
                known = self.x0 if t_next == final_t else plan.noised[t_next]  # the last step: the clean original
                return known * keep + z * (1 - keep)

        return fn(self._step_fn(stage, plan, mode, masks), x, plan.seq, schedule, generator=g, post=post, **options)

    # -- memory ------------------------------------------------------------------------------------------------------
    @property
    def cache_bytes(self) -> int:
        """Bytes the session's caches hold (every step's UNet caches, the encoder's and the decoder's)."""
        return sum(m.cache_nbytes() for m in self._models())

    def close(self) -> None:
        """Free the caches; the session cannot edit any more."""
        if not self.closed:
            for m in self._models():
                m.clear_cache()
            self.closed = True
