"""Noise schedules and the four samplers of the SIGE diffusion benchmarks, each one function with one signature:

    x0 = sampler(model_fn, x, seq, schedule, *, generator=None, post=None, **options)

* ``model_fn(x, t, step) -> output`` evaluates the network on ``x`` at integer timestep ``t`` (``step`` counts
  the evaluations from 0, the cache slot of a cached editing session). Its output is eps for the
  DDPM/DDIM/DPM-Solver samplers and ``x_pred | eps_pred`` (6 channels) for the PD sampler.
* ``x`` is the starting sample at ``t = seq[-1]``; the walk goes over ``reversed(seq)`` down to ``t = -1``
  (clean data, where ``alpha_bar(-1) = 1``), as in the original runner.
* ``post(x, t_next, step) -> x`` runs after every update (the SDEdit mask trick: outside the edit mask the
  sample is reset to ``q(x_{t_next} | x0_original)``).
* ``generator`` drives the noise of the stochastic samplers (DDPM, DDIM with ``eta > 0``).

:func:`ddim` (eta), :func:`ddpm` (ancestral, fixed-small variance, clipped x0), :func:`dpm_solver_pp`
(DPM-Solver++ multistep, order 1-3, 2M by default) and :func:`pd_sampler` (Progressive Distillation).
:data:`SAMPLERS` maps their names to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

ModelFn = Callable[[torch.Tensor, int, int], torch.Tensor]
PostFn = Callable[[torch.Tensor, int, int], torch.Tensor]


def sampling_sequence(noise_level: int, sample_steps: int, skip_type: str = "uniform") -> list[int]:
    """The timesteps a sampler visits (in increasing order): ``range(0, noise_level, noise_level // steps)``
    for ``uniform`` (the start is ``seq[-1]``, e.g. 490 for 50 DDIM steps from level 500)."""
    if sample_steps < 1 or noise_level < 1:
        raise ValueError(f"need noise_level >= 1 and sample_steps >= 1, got {noise_level}, {sample_steps}")
    if skip_type == "uniform":
        skip = noise_level // sample_steps
        if skip < 1:
            raise ValueError(f"{sample_steps} steps do not fit into noise level {noise_level}")
        return list(range(0, noise_level, skip))
    if skip_type == "quad":
        seq = [int(s) for s in torch.linspace(0, math.sqrt(noise_level * 0.8), sample_steps - 1).pow(2).tolist()]
        return [*seq, noise_level]
    raise ValueError(f"unknown skip_type {skip_type!r}; use 'uniform' or 'quad'")


@dataclass
class DiscreteSchedule:
    """The DDPM variance-preserving schedule over ``total_steps`` discrete steps (linear betas by default)."""

    beta_start: float = 1e-4
    beta_end: float = 0.02
    total_steps: int = 1000
    beta_schedule: str = "linear"

    def __post_init__(self) -> None:
        n = self.total_steps
        if self.beta_schedule == "linear":
            betas = torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        elif self.beta_schedule == "quad":
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, n, dtype=torch.float64) ** 2
        else:
            raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; use 'linear' or 'quad'")
        self.betas = betas.float()
        # alpha_bar[t + 1] for t = -1 .. total_steps - 1 (alpha_bar(-1) = 1), in float32 like the original
        self._abar = torch.cat([torch.ones(1), (1 - self.betas).cumprod(0)])

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


def _steps(seq: Sequence[int]) -> list[tuple[int, int]]:
    seq = list(seq)
    if not seq or sorted(seq) != seq or len(set(seq)) != len(seq):
        raise ValueError(f"seq must be a non-empty increasing list of timesteps, got {seq!r}")
    return list(zip(reversed(seq), reversed([-1, *seq[:-1]])))


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
) -> torch.Tensor:
    """The loop of the one-step samplers: ``x = update(x, eps, t, alpha_bar(t), alpha_bar(t_next))`` per step."""
    for step, (t, t_next) in enumerate(_steps(seq)):
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

    return _discrete_steps(model_fn, x, seq, schedule, post, update)


@torch.no_grad()
def ddpm(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
) -> torch.Tensor:
    """Ancestral DDPM: posterior mean from the clipped x0 prediction plus ``exp(log(beta_t) / 2) noise``
    (no noise at ``t = 0``), where ``beta_t = 1 - a_t / a_next`` covers skipped steps."""
    _require(schedule, DiscreteSchedule, "ddpm")

    def update(x: torch.Tensor, eps: torch.Tensor, t: int, at: float, an: float) -> torch.Tensor:
        beta = 1 - at / an
        x0 = ((x - eps * math.sqrt(1 - at)) / math.sqrt(at)).clamp(-1, 1)
        mean = (math.sqrt(an) * beta * x0 + math.sqrt(1 - beta) * (1 - an) * x) / (1 - at)
        return mean + math.sqrt(beta) * _noise(x, generator) if t != 0 else mean

    return _discrete_steps(model_fn, x, seq, schedule, post, update)


@torch.no_grad()
def dpm_solver_pp(
    model_fn: ModelFn,
    x: torch.Tensor,
    seq: Sequence[int],
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    post: PostFn | None = None,
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

    ts = list(reversed(list(seq)))
    steps = len(ts)
    for t in ts:
        if not -1 <= t < schedule.total_steps:
            raise ValueError(f"timestep {t} outside [-1, {schedule.total_steps - 1}]")
    targets = [*ts[1:], -1]
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
) -> torch.Tensor:
    """Progressive Distillation (DDIM-like on the cosine log-SNR schedule). The network predicts x and eps;
    ``x_hat = sigmoid(-logsnr) x_pred + (1 - sigmoid(-logsnr)) x(eps)`` clipped to [-1, 1], eps is re-derived
    from it, ``z_s = alpha_s x_hat + sigma_s eps``; the last step returns ``x_hat``."""
    _require(schedule, PDSchedule, "pd_sampler")
    for step, (t, t_next) in enumerate(_steps(seq)):
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


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "ddim": ddim,
    "ddpm": ddpm,
    "dpm_solver_pp": dpm_solver_pp,
    "pd": pd_sampler,
}


def make_schedule(cfg: dict) -> Schedule:
    """A schedule from a sampler config: ``{schedule: discrete|pd, ...}`` (see configs/sampler/*.yaml)."""
    kind = cfg.get("schedule", "discrete")
    if kind == "discrete":
        return DiscreteSchedule(
            float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02)), int(cfg.get("total_steps", 1000)),
            str(cfg.get("beta_schedule", "linear")),
        )  # fmt: skip
    if kind == "pd":
        return PDSchedule(int(cfg.get("total_steps", 8)))
    raise ValueError(f"unknown schedule {kind!r}; use 'discrete' or 'pd'")
