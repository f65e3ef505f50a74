"""Samplers of the SD 1.4 and SDXL pipelines, and the SIGE denoising loop (full pass on the original
trajectory, sparse pass on the edited one, every step).

* :class:`DDIM` (SD 1.4; ``ldm`` DDIMSampler, uniform 50 steps, eta 0): the model predicts eps at integer
  timesteps; ``scaled linear`` betas 0.00085 -> 0.012.
* :class:`DPMPP2M` (SDXL; sgm ``DPMPP2MSampler`` on the ``LegacyDDPMDiscretization`` sigmas, EpsScaling
  denoiser) and :class:`EulerAncestral` (SDXL-Turbo; sgm ``SubstepSampler``: sigma indices of the 1000-step
  schedule, eta 1). Both predict the denoised latent from sigma; ``strength`` < 1 keeps the low-noise end
  (``Img2ImgDiscretizationWrapper``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sige.nn import SIGEModel


def alphas_cumprod(n: int = 1000, start: float = 0.00085, end: float = 0.012) -> torch.Tensor:
    """Cumulative alphas of the ``scaled linear`` schedule of SD / SDXL (float64)."""
    betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass
class Guided:
    """Classifier-free guidance around an eps-predicting UNet: ``uncond`` None or ``scale`` 1 -> no CFG (batch 1)."""

    unet: torch.nn.Module
    cond: Mapping[str, torch.Tensor]  # {"context": [1, T, D], "y": [1, adm] (SDXL)}
    uncond: Mapping[str, torch.Tensor] | None
    scale: float

    @property
    def cfg(self) -> bool:
        return self.uncond is not None and self.scale != 1.0

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.cfg:
            return self.unet(x, t.expand(x.shape[0]), self.cond["context"], self.cond.get("y"))
        args = [
            torch.cat([self.uncond[k], self.cond[k]]) if self.cond.get(k) is not None else None
            for k in ("context", "y")
        ]
        e_u, e_c = self.unet(torch.cat([x, x]), t.expand(2 * x.shape[0]), *args).chunk(2)
        return e_u + self.scale * (e_c - e_u)


class DDIM:
    """Deterministic DDIM over ``steps`` uniform timesteps (``ldm``: 1, 21, ..., 981 for 50 steps)."""

    predicts = "eps"

    def __init__(self, steps: int = 50, eta: float = 0.0, num_train: int = 1000):
        if not 1 <= steps <= num_train:
            raise ValueError(f"DDIM steps must be in [1, {num_train}], got {steps}")
        self.ac = alphas_cumprod(num_train)
        self.timesteps = np.arange(steps) * (num_train // steps) + 1  # ldm: range(0, T, T // steps) + 1
        self.a = self.ac[self.timesteps]
        self.a_prev = torch.cat([self.ac[:1], self.ac[self.timesteps[:-1]]])
        self.sigma = eta * ((1 - self.a_prev) / (1 - self.a) * (1 - self.a / self.a_prev)).sqrt()

    def plan(self, strength: float = 1.0) -> list[int]:
        """Step indices to run, high noise first; SDEdit with ``strength`` starts at index int(strength * steps)."""
        start = len(self.timesteps) if strength >= 1.0 else int(strength * len(self.timesteps))
        if start < 1:
            raise ValueError(f"strength {strength} leaves no DDIM step")
        return list(range(start - 1, -1, -1))

    def start_noise(self, x0: torch.Tensor, noise: torch.Tensor, strength: float) -> torch.Tensor:
        if strength >= 1.0:
            return noise
        i = int(strength * len(self.timesteps))  # stochastic_encode at t_enc
        return self.a[i].sqrt().float() * x0 + (1 - self.a[i]).sqrt().float() * noise

    def noised(self, x0: torch.Tensor, i: int, noise: torch.Tensor) -> torch.Tensor:
        """``q_sample`` at this step's timestep (the inpainting pipeline's original trajectory)."""
        a = self.ac[int(self.timesteps[i])]
        return a.sqrt().float() * x0 + (1 - a).sqrt().float() * noise

    def predict(self, model: Guided, x: torch.Tensor, i: int) -> torch.Tensor:
        return model.eps(x, torch.tensor([float(self.timesteps[i])], device=x.device))

    def update(self, x, eps, i: int, state: Any, noise_fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, Any]:
        a, ap, s = (float(v[i]) for v in (self.a, self.a_prev, self.sigma))
        pred_x0 = (x - (1 - a) ** 0.5 * eps) / a**0.5
        x = ap**0.5 * pred_x0 + (1 - ap - s * s) ** 0.5 * eps
        return (x + s * noise_fn() if s > 0 else x), state


class _KSampler:
    """Sigma-space samplers on the LegacyDDPM discretisation with the EpsScaling denoiser of sgm."""

    predicts = "denoised"

    def __init__(self, num_train: int = 1000):
        ac = alphas_cumprod(num_train)
        self.train_sigmas = ((1 - ac) / ac).sqrt()  # ascending, index = timestep
        self.sigmas = self._sigmas()

    def _sigmas(self) -> torch.Tensor:
        raise NotImplementedError

    def plan(self, strength: float = 1.0) -> list[int]:
        n = len(self.sigmas)
        if strength < 1.0:  # Img2ImgDiscretizationWrapper: keep the low-noise end
            keep = max(int(strength * n), 1)
            self.sigmas = self.sigmas[n - keep :]
        if len(self.sigmas) < 2:
            raise ValueError(f"strength {strength} leaves no sampling step")
        return list(range(len(self.sigmas) - 1))

    def start_noise(self, x0: torch.Tensor, noise: torch.Tensor, strength: float) -> torch.Tensor:
        s0 = float(self.sigmas[0])
        # txt2img: sgm scales unit noise by sqrt(1 + s0^2); img2img: z + s0 * noise
        return noise * (1.0 + s0 * s0) ** 0.5 if strength >= 1.0 else x0 + noise * s0

    def noised(self, x0: torch.Tensor, i: int, noise: torch.Tensor) -> torch.Tensor:
        return x0 + noise * float(self.sigmas[i])

    def predict(self, model: Guided, x: torch.Tensor, i: int) -> torch.Tensor:
        sigma = float(self.sigmas[i])
        idx = int((self.train_sigmas - sigma).abs().argmin())
        eps = model.eps(x / (sigma * sigma + 1.0) ** 0.5, torch.tensor([float(idx)], device=x.device))
        return x - sigma * eps


class DPMPP2M(_KSampler):
    """DPM-Solver++(2M) over ``steps`` roughly equally spaced timesteps (sgm ``DPMPP2MSampler``)."""

    def __init__(self, steps: int = 50, num_train: int = 1000):
        self.steps = steps
        super().__init__(num_train)

    def _sigmas(self) -> torch.Tensor:
        n = len(self.train_sigmas)
        idx = (
            np.linspace(n - 1, 0, self.steps, endpoint=False).astype(int)[::-1].copy()
            if self.steps < n
            else np.arange(n)
        )
        return torch.cat([self.train_sigmas[idx].flip(0), torch.zeros(1, dtype=torch.float64)])

    def update(self, x, denoised, i: int, state: Any, noise_fn) -> tuple[torch.Tensor, Any]:
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        if s_next == 0.0:
            return denoised, denoised
        t, t_next = -np.log(s), -np.log(s_next)
        h = t_next - t
        mult1, mult2 = s_next / s, float(np.expm1(-h))
        if state is None:
            return mult1 * x - mult2 * denoised, denoised
        r = (t - (-np.log(float(self.sigmas[i - 1])))) / h
        d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * state
        return mult1 * x - mult2 * d, denoised


class EulerAncestral(_KSampler):
    """Euler ancestral (eta 1) on a subset of the 1000-step sigmas (sgm turbo ``SubstepSampler``)."""

    def __init__(self, step_indices=(0, 100, 200, 300), steps: int = 4, num_train: int = 1000):
        if not 1 <= steps <= len(step_indices):
            raise ValueError(f"turbo steps must be 1..{len(step_indices)}, got {steps}")
        self.indices = list(step_indices)[:steps]
        super().__init__(num_train)

    def _sigmas(self) -> torch.Tensor:
        full = torch.cat([self.train_sigmas.flip(0), torch.zeros(1, dtype=torch.float64)])
        return full[[*self.indices, len(full) - 1]]

    def update(self, x, denoised, i: int, state: Any, noise_fn) -> tuple[torch.Tensor, Any]:
        s, s_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        up = min(s_next, (s_next**2 * (s * s - s_next**2) / (s * s)) ** 0.5)
        down = (s_next**2 - up**2) ** 0.5
        x = x + (x - denoised) / s * (down - s)
        return (x + noise_fn() * up if s_next > 0 else x), state


def make_sampler(cfg: Mapping[str, Any]):
    kind = cfg.get("sampler")
    if kind == "ddim":
        return DDIM(int(cfg.get("steps", 50)), float(cfg.get("eta", 0.0)))
    if kind == "dpmpp2m":
        return DPMPP2M(int(cfg.get("steps", 50)))
    if kind == "euler_ancestral":
        return EulerAncestral(tuple(cfg.get("step_indices", (0, 100, 200, 300))), int(cfg.get("steps", 4)))
    raise ValueError(f"unknown sampler {kind!r}; use ddim, dpmpp2m or euler_ancestral")


@torch.no_grad()
def denoise_loop(
    sampler,
    model: Guided,
    x: torch.Tensor,
    plan: list[int],
    generator: torch.Generator,
    *,
    init: torch.Tensor | None = None,
    init_mode: str | None = None,
    x0: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    masks: Mapping[tuple[int, int], torch.Tensor] | None = None,
    block_grid: str = "original",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``plan``; returns the edited (and the original) final latents.

    SIGE (``masks`` given, the UNet a SIGEModel): every step first runs the full pass on the original trajectory
    (``init_mode="sdedit"``: its own trajectory from ``init``; ``"inpaint"``: ``x0`` noised to the step, output
    discarded), then the sparse pass on ``x``. Inpainting (``keep`` = 1 where the original is kept) blends
    ``x0`` noised to the step into ``x`` before each step, with the same noise the original pass uses.
    """
    unet = model.unet
    sige = masks is not None
    if sige and not isinstance(unet, SIGEModel):
        raise TypeError("SIGE sampling needs a SIGEModel UNet")
    state = init_state = None

    def noise() -> torch.Tensor:
        return torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)

    for i in plan:
        orig = None
        if keep is not None:
            orig = sampler.noised(x0, i, noise())
            x = orig * keep + x * (1 - keep)
        if sige:
            unet.set_mode("full")
            if init_mode == "sdedit":
                pred = sampler.predict(model, init, i)
                init, init_state = sampler.update(init, pred, i, init_state, noise)
            else:
                sampler.predict(model, orig if orig is not None else sampler.noised(x0, i, noise()), i)
            unet.set_masks(masks, block_grid=block_grid)
            unet.set_mode("sparse")
        pred = sampler.predict(model, x, i)
        x, state = sampler.update(x, pred, i, state, noise)
    if sige:
        unet.set_mode("full")
        unet.clear_cache()
    return x, init
