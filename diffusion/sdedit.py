"""SDEdit editing with a SIGE model: the reference's per-step protocol and a cached editing session.

Both trajectories start from the same noise: ``x_T = q(x_T | x0)`` for the original and the edited image.
After every step the edited sample is reset outside the difference mask to ``q(x_t | x0_original)`` (the
SDEdit mask trick), so it differs from the original trajectory only inside the mask; the original
trajectory is therefore exactly ``q(x_t | x0_original)`` at every step and is never sampled itself.

* :func:`sdedit` with ``mode="sige"`` (the reference protocol): per model evaluation, a full pass on the
  original trajectory (refreshing every cache), then a sparse pass on the edited sample.
* :func:`sdedit` with ``mode="dense"``: the original model on the edited sample (the quality baseline).
* :class:`EditSession`: the original trajectory is run once, densely, with one cache slot per model
  evaluation (``cache_id = step``); every later :meth:`EditSession.edit` costs only sparse passes and gives
  the same result as the per-step protocol. :meth:`EditSession.cache_nbytes` reports the memory it holds.
"""

from __future__ import annotations

from typing import Any

import torch

from diffusion.build import model_input
from diffusion.edits import mask_pyramid
from sige.nn import SIGEModel
from sigebench.samplers import sampler_from_config
from sigebench.schedules import Schedule, q_sample


def _as_batch_mask(mask: torch.Tensor, batch: int) -> torch.Tensor:
    if mask.dim() == 2:
        mask = mask[None].expand(batch, *mask.shape)
    if mask.dim() != 3 or mask.shape[0] != batch:
        raise ValueError(f"the difference mask must be [H, W] or [B, H, W] with B={batch}, got {tuple(mask.shape)}")
    return mask.bool()


def _blend(original: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor, schedule: Schedule):
    keep = mask[:, None].to(original.dtype)

    def post(x: torch.Tensor, t_next: int, step: int) -> torch.Tensor:
        return q_sample(original, t_next, noise, schedule) * (1 - keep) + x * keep

    return post


def _check(original: torch.Tensor, edited: torch.Tensor, noise: torch.Tensor) -> None:
    if original.shape != edited.shape or original.shape != noise.shape or original.dim() != 4:
        raise ValueError(
            f"original, edited and noise must be [B, C, H, W] of one shape, got {tuple(original.shape)}, "
            f"{tuple(edited.shape)}, {tuple(noise.shape)}"
        )


@torch.no_grad()
def sdedit(
    model: SIGEModel,
    sampler_cfg: dict[str, Any],
    schedule: Schedule,
    seq: list[int],
    original: torch.Tensor,
    edited: torch.Tensor,
    mask: torch.Tensor,
    noise: torch.Tensor,
    *,
    mode: str = "sige",
    block_grid: str = "trimmed",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Edit ``original`` into ``edited`` (``[B, 3, H, W]`` in [-1, 1]) inside ``mask``; returns x0 ``[B, 3, H, W]``."""
    _check(original, edited, noise)
    sample, options = sampler_from_config(sampler_cfg)
    B = original.shape[0]
    mask = _as_batch_mask(mask.to(original.device), B)
    post = _blend(original, noise, mask, schedule)
    x = q_sample(edited, seq[-1], noise, schedule)
    model.clear_cache()
    model.set_cache_id(0)
    model.set_mode("full")
    if mode == "dense":

        def dense_fn(x: torch.Tensor, t: int, step: int) -> torch.Tensor:
            return model(x, model_input(schedule, t, B, x.device))

        return sample(dense_fn, x, seq, schedule, generator=generator, post=post, **options)
    if mode != "sige":
        raise ValueError(f"mode must be 'sige' or 'dense', got {mode!r} (use EditSession for the cached mode)")
    model(q_sample(original, seq[-1], noise, schedule), model_input(schedule, seq[-1], B, x.device))  # shapes
    model.set_masks(mask_pyramid(mask, model.min_resolution(tuple(original.shape[-2:]))), block_grid=block_grid)

    def sige_fn(x: torch.Tensor, t: int, step: int) -> torch.Tensor:
        cond = model_input(schedule, t, B, x.device)
        model.set_mode("full")
        model(q_sample(original, t, noise, schedule), cond)
        model.set_mode("sparse")
        return model(x, cond)

    try:
        return sample(sige_fn, x, seq, schedule, generator=generator, post=post, **options)
    finally:
        model.set_mode("full")


class EditSession:
    """A cached editing session: the original trajectory once (one cache slot per model evaluation), then
    edits that cost sparse passes only."""

    @torch.no_grad()
    def __init__(
        self,
        model: SIGEModel,
        sampler_cfg: dict[str, Any],
        schedule: Schedule,
        seq: list[int],
        original: torch.Tensor,
        noise: torch.Tensor,
    ):
        _check(original, original, noise)
        self.model, self.schedule, self.seq = model, schedule, list(seq)
        self.sample, self.options = sampler_from_config(sampler_cfg)
        self.original, self.noise = original, noise
        self.steps = list(reversed(self.seq))  # every sampler evaluates the model once per t, in this order
        B = original.shape[0]
        model.clear_cache()
        model.set_mode("full")
        for step, t in enumerate(self.steps):
            model.set_cache_id(step)
            model(q_sample(original, t, noise, schedule), model_input(schedule, t, B, original.device))
        model.set_cache_id(0)

    def cache_nbytes(self) -> int:
        """Bytes held by the session's caches (cached outputs, working buffers, frozen statistics)."""
        return self.model.cache_nbytes()

    @torch.no_grad()
    def edit(
        self,
        edited: torch.Tensor,
        mask: torch.Tensor,
        block_grid: str = "trimmed",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The SDEdit result for ``edited`` (same shape as the original) with difference ``mask``."""
        _check(self.original, edited, self.noise)
        model, schedule, B = self.model, self.schedule, edited.shape[0]
        mask = _as_batch_mask(mask.to(edited.device), B)
        model.set_masks(mask_pyramid(mask, model.min_resolution(tuple(edited.shape[-2:]))), block_grid=block_grid)
        model.set_mode("sparse")

        def fn(x: torch.Tensor, t: int, step: int) -> torch.Tensor:
            if self.steps[step] != t:
                raise RuntimeError(
                    f"the sampler evaluated t={t} at step {step}, but the session cached t={self.steps[step]}"
                )
            model.set_cache_id(step)
            return model(x, model_input(schedule, t, B, x.device))

        try:
            x = q_sample(edited, self.seq[-1], self.noise, schedule)
            post = _blend(self.original, self.noise, mask, schedule)
            return self.sample(fn, x, self.seq, schedule, generator=generator, post=post, **self.options)
        finally:
            model.set_cache_id(0)
            model.set_mode("full")
