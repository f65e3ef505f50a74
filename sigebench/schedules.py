"""Noise schedules and timestep sequences of the pixel-space and latent diffusion models (one module for all).

* :class:`DiscreteSchedule`: the variance-preserving DDPM schedule over ``total_steps`` discrete steps, with
  ``linear`` betas (DDPM church) or ``scaled_linear`` ones (Stable Diffusion, SDXL: betas linear in sqrt).
  ``alpha_bar(-1) = 1`` (clean data). ``dtype`` is the precision of the cumulative product (the DDPM port used
  float32, ldm / sgm float64).
* :class:`PDSchedule`: the cosine log-SNR schedule of Progressive Distillation.
* :func:`timesteps`: the timesteps a sampler visits, in increasing order, for the discretisations of the
  original codebases (``uniform`` / ``quad`` of the DDPM runner, ``ldm`` DDIM, ``sgm`` LegacyDDPM, ``indices``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BETA_SCHEDULES = ("linear", "scaled_linear", "quad")  # "quad" is the DDPM runner's name for scaled_linear


@dataclass
class DiscreteSchedule:
    """The DDPM variance-preserving schedule over ``total_steps`` discrete steps."""

    beta_start: float = 1e-4
    beta_end: float = 0.02
    total_steps: int = 1000
    beta_schedule: str = "linear"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        n = self.total_steps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        elif self.beta_schedule in ("scaled_linear", "quad"):
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, n, dtype=torch.float64) ** 2
        else:
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; use {', '.join(BETA_SCHEDULES)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"schedule dtype must be float32 or float64, got {self.dtype!r}")
        betas = betas.to(getattr(torch, self.dtype))
        self.betas = betas
        # alpha_bar[t + 1] for t = -1 .. total_steps - 1 (alpha_bar(-1) = 1)
        self._abar = torch.cat([torch.ones(1, dtype=betas.dtype), (1 - betas).cumprod(0)])

    def alpha_bar(self, t: int) -> float:
        if not -1 <= t < self.total_steps:
            raise ValueError(f"timestep {t} outside [-1, {self.total_steps - 1}]")
        return float(self._abar[t + 1])

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        a = self.alpha_bar(t)
        return math.sqrt(a), math.sqrt(1 - a)

    def model_input(self, t: int) -> float:
        """What the network is conditioned on: the timestep itself."""
        return float(t)


@dataclass
class PDSchedule:
    """The cosine log-SNR schedule of Progressive Distillation: ``u = (t + 1) / total_steps``,
    ``logsnr(u) = -2 log tan(a u + b)`` clipped to [logsnr_min, logsnr_max]."""

    total_steps: int = 8
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0

    def logsnr(self, t: int) -> float:
        if not -1 <= t < self.total_steps:
            raise ValueError(f"timestep {t} outside [-1, {self.total_steps - 1}]")
        b = math.atan(math.exp(-0.5 * self.logsnr_max))
        a = math.atan(math.exp(-0.5 * self.logsnr_min)) - b
        u = (t + 1) / self.total_steps
        return float(-2.0 * torch.log(torch.tan(torch.tensor(a * u + b, dtype=torch.float32))))

    def alpha_sigma(self, t: int) -> tuple[float, float]:
        lam = torch.tensor(self.logsnr(t))
        return float(torch.sigmoid(lam).sqrt()), float(torch.sigmoid(-lam).sqrt())

    def model_input(self, t: int) -> float:
        """What the network is conditioned on: the log-SNR."""
        return self.logsnr(t)


Schedule = DiscreteSchedule | PDSchedule


def q_sample(x0: torch.Tensor, t: int, noise: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """``x_t = alpha_t x0 + sigma_t noise`` (``q(x_t | x0)`` with the given noise)."""
    a, s = schedule.alpha_sigma(t)
    return x0 * a + noise * s


def timesteps(kind: str, steps: int, total_steps: int = 1000, noise_level: int | None = None,
              indices: Sequence[int] | None = None) -> list[int]:  # fmt: skip
    """The timesteps a sampler visits, increasing (the sampler walks them from the last down).

    * ``uniform``: ``range(0, noise_level, noise_level // steps)`` (the DDPM runner; ``noise_level`` defaults to
      ``total_steps``), e.g. 0, 10, ..., 490 for 50 steps from level 500;
    * ``quad``: the DDPM runner's quadratic spacing up to ``noise_level``;
    * ``ldm``: ``range(0, T, T // steps) + 1`` (ldm's DDIM: 1, 21, ..., 981 for 50 steps);
    * ``sgm``: ``linspace(T - 1, 0, steps, endpoint=False)`` as integers (sgm's LegacyDDPMDiscretization);
    * ``indices``: ``T - 1 - i`` for sigma indices ``i`` of the descending schedule (sgm's turbo SubstepSampler:
      indices 0, 100, 200, 300 are timesteps 999, 899, 799, 699), the first ``steps`` of them.
    """
    if steps < 1:
        raise ValueError(f"need at least one sampling step, got {steps}")
    level = total_steps if noise_level is None else int(noise_level)
    if kind == "uniform":
        skip = level // steps
        if skip < 1:
            raise ValueError(f"{steps} steps do not fit into noise level {level}")
        return list(range(0, level, skip))
    if kind == "quad":
        seq = [int(s) for s in torch.linspace(0, math.sqrt(level * 0.8), steps - 1).pow(2).tolist()]
        return [*seq, level]
    if kind == "ldm":
        if steps > total_steps:
            raise ValueError(f"DDIM steps must be in [1, {total_steps}], got {steps}")
        return [int(t) for t in np.arange(steps) * (total_steps // steps) + 1]
    if kind == "sgm":
        if steps >= total_steps:
            return list(range(total_steps))
        return sorted(int(t) for t in np.linspace(total_steps - 1, 0, steps, endpoint=False).astype(int))
    if kind == "indices":
        chosen = list(indices or [])[:steps]
        if len(chosen) < steps:
            raise ValueError(f"{steps} steps need {steps} sigma indices, got {list(indices or [])}")
        return sorted(total_steps - 1 - int(i) for i in chosen)
    raise ValueError(f"unknown timestep spacing {kind!r}; use uniform, quad, ldm, sgm or indices")


def make_schedule(cfg: Mapping[str, Any]) -> Schedule:
    """The schedule of a sampler config: ``{schedule: discrete|pd, ...}`` (see configs/sampler/*.yaml)."""
    kind = cfg.get("schedule", "discrete")
    if kind == "discrete":
        return DiscreteSchedule(
            float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02)), int(cfg.get("total_steps", 1000)),
            str(cfg.get("beta_schedule", "linear")), str(cfg.get("dtype", "float32")),
        )  # fmt: skip
    if kind == "pd":
        return PDSchedule(int(cfg.get("total_steps", 8)))
    raise ValueError(f"unknown schedule {kind!r}; use 'discrete' or 'pd'")


def sampler_timesteps(cfg: Mapping[str, Any]) -> list[int]:
    """The timesteps of a sampler config (``spacing``, ``sample_steps``, ``noise_level``, ``indices``)."""
    return timesteps(
        str(cfg.get("spacing", "uniform")), int(cfg["sample_steps"]), int(cfg.get("total_steps", 1000)),
        cfg.get("noise_level"), cfg.get("indices"),
    )  # fmt: skip
