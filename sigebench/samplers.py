"""The samplers of every diffusion model in the suite, pixel-space and latent alike: pure functions with one
signature (k-diffusion style)::

    x0 = sampler(model_fn, x, seq, schedule, *, generator=None, post=None, final_t=-1, **options)

* ``model_fn(x, t, step) -> output`` evaluates the network on ``x`` at integer timestep ``t`` (``step`` counts
  the evaluations from 0, the cache slot of a cached editing session). Its output is eps for the
  DDPM / DDIM / DPM-Solver++ / Euler samplers and ``x_pred | eps_pred`` (6 channels) for the PD sampler.
  Classifier-free guidance, conditioning and the sparse/full protocol live in ``model_fn``.
* ``x`` is the starting sample at ``t = seq[-1]`` (variance preserving: ``x = alpha_t x0 + sigma_t noise``); the
  walk goes over ``reversed(seq)`` and ends at ``final_t``: ``-1`` is clean data (``alpha_bar(-1) = 1``, the DDPM
  runner and sgm), ``0`` is ldm's DDIM, whose last step lands on ``alpha_bar(0)``.
* ``post(x, t_next, step) -> x`` runs after every update (e.g. the SDEdit mask trick, inpainting blends).
* ``generator`` drives the noise of the stochastic samplers (DDPM, DDIM with ``eta > 0``, Euler ancestral).

:func:`ddim` (eta), :func:`ddpm` (ancestral, fixed-small variance, clipped x0), :func:`dpm_solver_pp`
(DPM-Solver++ multistep, order 1-3, 2M by default; sgm's DPMPP2M is ``order=2, lower_order_final=False,
time_shift=0``), :func:`euler_ancestral` (sgm's turbo sampler) and :func:`pd_sampler` (Progressive
Distillation). :data:`SAMPLERS` maps their names to them. Schedules: :mod:`sigebench.schedules`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from sigebench.schedules import DiscreteSchedule, PDSchedule, Schedule, q_sample

__all__ = [
    "SAMPLERS",
    "ddim",
    "ddpm",
    "dpm_solver_pp",
    "euler_ancestral",
    "pd_sampler",
    "q_sample",
    "sampler_from_config",
]

ModelFn = Callable[[torch.Tensor, int, int], torch.Tensor]
PostFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def _steps(seq: Sequence[int], final_t: int = -1) -> list[tuple[int, int]]:
    seq = list(seq)
    if not seq or sorted(seq) != seq or len(set(seq)) != len(seq):
        raise ValueError(f"seq must be a non-empty increasing list of timesteps, got {seq!r}")
    if final_t >= seq[0]:
        raise ValueError(f"final_t={final_t} must lie below the first timestep {seq[0]}")
    return list(zip(reversed(seq), reversed([final_t, *seq[:-1]])))


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu" if generator is None else
                       generator.device).to(x.device)  # fmt: skip


def _require(schedule: Schedule, kind: type, name: str) -> None:
    if not isinstance(schedule, kind):
        raise TypeError(f"{name} needs a {kind.__name__}, got {type(schedule).__name__}")


def _discrete_steps(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: DiscreteSchedule,
    post: PostFn | None,
    update: Callable[[torch.Tensor, torch.Tensor, int, float, float], torch.Tensor],
    final_t: int = -1,
) -> torch.Tensor:
    """The loop of the one-step samplers: ``x = update(x, eps, t, alpha_bar(t), alpha_bar(t_next))`` per step."""
    for step, (t, t_next) in enumerate(_steps(seq, final_t)):
        eps = model_fn(x, t, step)
        x = update(x, eps, t, schedule.alpha_bar(t), schedule.alpha_bar(t_next))
        if post is not None:
            x = post(x, t_next, step)
    return x


@torch.no_grad()
def ddim(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
    final_t: int = -1,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM: ``x' = sqrt(a') x0 + c1 noise + c2 eps`` with ``c1 = eta sqrt((1 - a/a')(1 - a')/(1 - a))``."""
    _require(schedule, DiscreteSchedule, "ddim")

    def update(x: torch.Tensor, eps: torch.Tensor, t: int, at: float, an: float) -> torch.Tensor:
        x0 = (x - eps * math.sqrt(1 - at)) / math.sqrt(at)
        c1 = eta * math.sqrt((1 - at / an) * (1 - an) / (1 - at))
        c2 = math.sqrt(max(1 - an - c1**2, 0.0))
        x = math.sqrt(an) * x0 + c2 * eps
        return x + c1 * _noise(x, generator) if c1 else x

    return _discrete_steps(model_fn, x, seq, schedule, post, update, final_t)


@torch.no_grad()
def ddpm(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
    final_t: int = -1,
) -> torch.Tensor:
    """Ancestral DDPM: posterior mean from the clipped x0 prediction plus ``exp(log(beta_t) / 2) noise``
    (no noise at ``t = 0``), where ``beta_t = 1 - a_t / a_next`` covers skipped steps."""
    _require(schedule, DiscreteSchedule, "ddpm")

    def update(x: torch.Tensor, eps: torch.Tensor, t: int, at: float, an: float) -> torch.Tensor:
        beta = 1 - at / an
        x0 = ((x - eps * math.sqrt(1 - at)) / math.sqrt(at)).clamp(-1, 1)
        mean = (math.sqrt(an) * beta * x0 + math.sqrt(1 - beta) * (1 - an) * x) / (1 - at)
        return mean + math.sqrt(beta) * _noise(x, generator) if t != 0 else mean

    return _discrete_steps(model_fn, x, seq, schedule, post, update, final_t)


@torch.no_grad()
def dpm_solver_pp(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
    final_t: int = -1,
    order: int = 2,
    lower_order_final: bool = True,
    time_shift: int = 1,
) -> torch.Tensor:
    """DPM-Solver++ multistep (data prediction; ``order=2`` is 2M), "dpmsolver" second-order form.

    The solver reads the schedule at ``t + time_shift``: the original port maps discrete ``t`` to the
    continuous time ``(t + 1)/1000 + 1/N``, i.e. ``alpha_bar`` one step later (``time_shift=1``), which also
    keeps the final ``t = -1`` finite. The network is conditioned on ``t`` itself. ``generator`` is unused
    (deterministic).
    """
    _require(schedule, DiscreteSchedule, "dpm_solver_pp")
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order}")

    def coeffs(t: int) -> tuple[float, float, float]:
        a = schedule.alpha_bar(min(t + time_shift, schedule.total_steps - 1))
        alpha, sigma = math.sqrt(a), math.sqrt(1 - a)
        return alpha, sigma, (math.log(alpha) - math.log(sigma)) if sigma > 0 else math.inf  # t = -1: clean data

    def data_pred(x: torch.Tensor, t: int, step: int) -> torch.Tensor:
        eps = model_fn(x, t, step)
        at = schedule.alpha_bar(t)
        return (x - eps * math.sqrt(1 - at)) / math.sqrt(at)

    ts = [t for t, _ in _steps(seq, final_t)]
    steps = len(ts)
    for t in ts:
        if not -1 <= t < schedule.total_steps:
            raise ValueError(f"timestep {t} outside [-1, {schedule.total_steps - 1}]")
    targets = [*ts[1:], final_t]
    models, times = [data_pred(x, ts[0], 0)], [ts[0]]
    for k, t in enumerate(targets, start=1):
        if k < order:
            step_order = k
        elif lower_order_final and steps < 10:
            step_order = min(order, steps + 1 - k)
        else:
            step_order = order
        alpha_t, sigma_t, lam_t = coeffs(t)
        _, sigma_0, lam_0 = coeffs(times[-1])
        h = lam_t - lam_0
        if math.isinf(h):  # a step onto clean data (sigma_t = 0): the first-order update is exact there
            step_order = 1
        phi = math.expm1(-h)
        x = (sigma_t / sigma_0) * x - (alpha_t * phi) * models[-1]
        if step_order >= 2:
            lam_1 = coeffs(times[-2])[2]
            r0 = (lam_0 - lam_1) / h
            d1_0 = (models[-1] - models[-2]) / r0
            if step_order == 2:
                x = x - 0.5 * (alpha_t * phi) * d1_0
            else:
                lam_2 = coeffs(times[-3])[2]
                r1 = (lam_1 - lam_2) / h
                d1_1 = (models[-2] - models[-3]) / r1
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi2 = phi / h + 1.0
                phi3 = phi2 / h - 0.5
                x = x + (alpha_t * phi2) * d1 - (alpha_t * phi3) * d2
        if post is not None:
            x = post(x, t, k - 1)
        times.append(t)
        if k < steps:
            models.append(data_pred(x, t, k))
        models, times = models[-order:], times[-order:]
    return x


@torch.no_grad()
def pd_sampler(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
    final_t: int = -1,
) -> torch.Tensor:
    """Progressive Distillation (DDIM-like on the cosine log-SNR schedule). The network predicts x and eps;
    ``x_hat = sigmoid(-logsnr) x_pred + (1 - sigmoid(-logsnr)) x(eps)`` clipped to [-1, 1], eps is re-derived
    from it, ``z_s = alpha_s x_hat + sigma_s eps``; the last step returns ``x_hat``."""
    _require(schedule, PDSchedule, "pd_sampler")
    for step, (t, t_next) in enumerate(_steps(seq, final_t)):
        out = model_fn(x, t, step)
        if out.shape[1] != 2 * x.shape[1]:
            raise ValueError(f"the PD sampler needs x|eps predictions ({2 * x.shape[1]} channels), got {out.shape[1]}")
        lam = schedule.logsnr(t)
        c = x.shape[1]
        x_out, eps_out = out[:, :c], out[:, c:]
        x_eps = math.sqrt(1.0 + math.exp(-lam)) * (x - eps_out / math.sqrt(1.0 + math.exp(lam)))
        wx = 1.0 / (1.0 + math.exp(lam))  # sigmoid(-lam)
        x_hat = (wx * x_out + (1.0 - wx) * x_eps).clamp(-1.0, 1.0)
        eps = math.sqrt(1.0 + math.exp(lam)) * (x - x_hat / math.sqrt(1.0 + math.exp(-lam)))
        alpha_s, sigma_s = schedule.alpha_sigma(t_next)
        x = x_hat if t == 0 else alpha_s * x_hat + sigma_s * eps
        if post is not None:
            x = post(x, t_next, step)
    return x


@torch.no_grad()
def euler_ancestral(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
    final_t: int = -1,
    eta: float = 1.0,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion / sgm's turbo sampler) in the variance-exploding view ``z = x / alpha``,
    ``sigma = sqrt((1 - a) / a)``: step to ``sigma_down`` along ``(z - x0) / sigma``, add ``sigma_up`` noise."""
    _require(schedule, DiscreteSchedule, "euler_ancestral")

    def ve(t: int) -> tuple[float, float]:
        a = schedule.alpha_bar(t)
        return math.sqrt(a), math.sqrt((1 - a) / a)

    for step, (t, t_next) in enumerate(_steps(seq, final_t)):
        eps = model_fn(x, t, step)
        alpha, s = ve(t)
        alpha_n, s_n = ve(t_next)
        z = x / alpha
        denoised = z - s * eps
        up = min(s_n, eta * math.sqrt(max(s_n**2 * (s * s - s_n**2) / (s * s), 0.0)))
        down = math.sqrt(max(s_n**2 - up**2, 0.0))
        z = z + (z - denoised) / s * (down - s)
        if s_n > 0 and up > 0:
            z = z + _noise(z, generator) * up
        x = z * alpha_n
        if post is not None:
            x = post(x, t_next, step)
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddim": ddim,
    "ddpm": ddpm,
    "dpm_solver_pp": dpm_solver_pp,
    "euler_ancestral": euler_ancestral,
    "pd": pd_sampler,
}
SAMPLER_OPTIONS = {
    "ddim": ("eta", "final_t"),
    "ddpm": ("final_t",),
    "dpm_solver_pp": ("order", "lower_order_final", "time_shift", "final_t"),
    "euler_ancestral": ("eta", "final_t"),
    "pd": ("final_t",),
}


def sampler_from_config(cfg: Mapping[str, Any]) -> tuple[Callable[..., torch.Tensor], dict[str, Any]]:
    """The sampler function named by ``cfg["name"]`` (configs/sampler/*.yaml) and its options from the config."""
    name = cfg.get("name")
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name], {k: cfg[k] for k in SAMPLER_OPTIONS[name] if cfg.get(k) is not None}
