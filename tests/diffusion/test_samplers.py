"""Samplers (oracle denoisers recover the data; determinism) and the SDEdit protocols (per-step == cached session)."""

import math

import pytest
import torch

from diffusion.sdedit import EditSession, sdedit
from sigebench.samplers import ddim, ddpm, dpm_solver_pp, euler_ancestral, pd_sampler
from sigebench.schedules import DiscreteSchedule, PDSchedule, q_sample, timesteps

from .reference import tiny_ddpm, tiny_pd


def sampling_sequence(noise_level, steps):
    return timesteps("uniform", steps, noise_level=noise_level)


def oracle_eps(x0, schedule):
    def fn(x, t, step):
        a, s = schedule.alpha_sigma(t)
        return (x - a * x0) / s

    return fn


def test_sampling_sequences_follow_the_reference():
    assert sampling_sequence(500, 50) == list(range(0, 500, 10))
    assert sampling_sequence(500, 5) == [0, 100, 200, 300, 400]
    assert sampling_sequence(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="do not fit"):
        sampling_sequence(3, 5)


@pytest.mark.parametrize(
    "sampler,kwargs",
    [
        (ddim, {}),
        (ddim, {"eta": 1.0}),
        (ddpm, {}),
        (dpm_solver_pp, {"time_shift": 0}),
        (dpm_solver_pp, {"order": 3, "time_shift": 0}),
        (euler_ancestral, {}),
        (euler_ancestral, {"eta": 0.0}),
    ],
)
def test_an_exact_denoiser_recovers_the_data(sampler, kwargs):
    sch = DiscreteSchedule()
    g = torch.Generator().manual_seed(0)
    x0, e = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, torch.randn(2, 3, 8, 8, generator=g)
    seq = sampling_sequence(500, 10)
    x = q_sample(x0, seq[-1], e, sch)
    out = sampler(oracle_eps(x0, sch), x, seq, sch, generator=torch.Generator().manual_seed(1), **kwargs)
    torch.testing.assert_close(out, x0, atol=2e-4, rtol=1e-4)


def test_latent_timesteps_follow_ldm_and_sgm():
    assert timesteps("ldm", 50)[:3] == [1, 21, 41] and timesteps("ldm", 50)[-1] == 981
    sgm = timesteps("sgm", 50)
    assert len(sgm) == 50 and sgm[-1] == 999 and sgm == sorted(sgm)
    assert timesteps("indices", 4, indices=[0, 100, 200, 300]) == [699, 799, 899, 999]
    assert timesteps("indices", 2, indices=[0, 100, 200, 300]) == [899, 999]


def test_ddim_to_alpha_bar_of_zero_recovers_the_data_there():
    """ldm's DDIM ends on alpha_bar(0) (final_t=0): an oracle lands on q(x_0 | x0) with the same noise."""
    sch = DiscreteSchedule(0.00085, 0.012, beta_schedule="scaled_linear", dtype="float64")
    g = torch.Generator().manual_seed(0)
    x0, e = torch.rand(1, 4, 8, 8, generator=g) * 2 - 1, torch.randn(1, 4, 8, 8, generator=g)
    seq = timesteps("ldm", 10)
    out = ddim(oracle_eps(x0, sch), q_sample(x0, seq[-1], e, sch), seq, sch, final_t=0)
    torch.testing.assert_close(out, q_sample(x0, 0, e, sch), atol=1e-4, rtol=1e-4)


def test_pd_sampler_with_an_exact_denoiser_recovers_the_data():
    sch = PDSchedule()
    g = torch.Generator().manual_seed(0)
    x0, e = torch.rand(1, 3, 8, 8, generator=g) * 2 - 1, torch.randn(1, 3, 8, 8, generator=g)
    seq = sampling_sequence(5, 5)
    eps = oracle_eps(x0, sch)
    out = pd_sampler(lambda x, t, s: torch.cat([x0, eps(x, t, s)], 1), q_sample(x0, 4, e, sch), seq, sch)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    assert math.isclose(sch.logsnr(-1), 20.0, rel_tol=1e-4) and sch.logsnr(7) == pytest.approx(-20.0, rel=1e-3)


def test_stochastic_samplers_are_deterministic_given_a_generator():
    sch = DiscreteSchedule()
    x = torch.randn(1, 3, 8, 8)
    model = lambda x, t, s: 0.1 * x  # noqa: E731
    seq = sampling_sequence(100, 10)
    for sampler, kw in ((ddpm, {}), (ddim, {"eta": 0.5})):
        a = sampler(model, x, seq, sch, generator=torch.Generator().manual_seed(3), **kw)
        b = sampler(model, x, seq, sch, generator=torch.Generator().manual_seed(3), **kw)
        c = sampler(model, x, seq, sch, generator=torch.Generator().manual_seed(4), **kw)
        assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(ddim(model, x, seq, sch), ddim(model, x, seq, sch))


def test_samplers_reject_the_wrong_schedule():
    with pytest.raises(TypeError, match="DiscreteSchedule"):
        ddim(lambda x, t, s: x, torch.zeros(1, 3, 4, 4), [0, 1], PDSchedule())
    with pytest.raises(TypeError, match="PDSchedule"):
        pd_sampler(lambda x, t, s: x, torch.zeros(1, 3, 4, 4), [0, 1], DiscreteSchedule())


SAMPLER_CFGS = {
    "ddim": ({"name": "ddim", "eta": 0.0}, DiscreteSchedule(), [0, 10, 20, 30], tiny_ddpm),
    "ddpm": ({"name": "ddpm"}, DiscreteSchedule(), [0, 10, 20], tiny_ddpm),
    "dpm_solver_pp": ({"name": "dpm_solver_pp", "order": 2}, DiscreteSchedule(), [0, 10, 20, 30], tiny_ddpm),
    "pd": ({"name": "pd"}, PDSchedule(), [0, 1, 2], tiny_pd),
}


def _edit_case(batch=1):
    g = torch.Generator().manual_seed(5)
    orig = torch.rand(batch, 3, 32, 32, generator=g) * 2 - 1
    edit = orig.clone()
    edit[:, :, 8:16, 10:20] = 0.7
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[6:18, 8:22] = True
    return orig, edit, mask, torch.randn(orig.shape, generator=g)


@pytest.mark.parametrize("name", list(SAMPLER_CFGS))
def test_cached_session_equals_the_per_step_protocol(name):
    cfg, sch, seq, make = SAMPLER_CFGS[name]
    model = make()
    orig, edit, mask, noise = _edit_case()
    per_step = sdedit(model, cfg, sch, seq, orig, edit, mask, noise, generator=torch.Generator().manual_seed(9))
    session = EditSession(model, cfg, sch, seq, orig, noise)
    cached = session.edit(edit, mask, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(cached, per_step, atol=1e-5, rtol=1e-5)
    assert session.cache_nbytes() > 0
    again = session.edit(edit, mask, generator=torch.Generator().manual_seed(9))  # the session is reusable
    torch.testing.assert_close(again, cached, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", ["sige", "dense"])
def test_sdedit_keeps_the_original_outside_the_mask(mode):
    cfg, sch, seq, make = SAMPLER_CFGS["ddim"]
    model = make()
    orig, edit, mask, noise = _edit_case(batch=2)
    out = sdedit(model, cfg, sch, seq, orig, edit, mask, noise, mode=mode)
    assert out.shape == orig.shape
    torch.testing.assert_close(out[:, :, ~mask], orig[:, :, ~mask], atol=1e-6, rtol=0)
    assert not torch.allclose(out[:, :, mask], orig[:, :, mask])


def test_session_cache_grows_with_the_steps():
    cfg, sch, _, make = SAMPLER_CFGS["ddim"]
    model = make()
    orig, edit, mask, noise = _edit_case()
    sizes = []
    for seq in ([0, 10], [0, 10, 20, 30]):
        s = EditSession(model, cfg, sch, seq, orig, noise)
        s.edit(edit, mask)
        sizes.append(s.cache_nbytes())
    assert sizes[1] == 2 * sizes[0]
