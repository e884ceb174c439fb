import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from lit_video.dit.flow import (
    FlowMatchingSchedule,
    FlowSchedule,
    FlowWindowSampler,
    flow_invert,
    flow_sample,
    shift_sigma,
    unshift_sigma,
)
from lit_video.errors import VideoInputError


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
def test_window_sampler_stays_at_or_above_sigma_star_and_is_uniform_in_the_schedulers_parametrisation(shift):
    sampler = FlowWindowSampler(1000, shift, boundary_sigma=0.7)
    sigmas = sampler.sample_sigmas(20000, generator=torch.Generator().manual_seed(0)).double()
    assert sigmas.min() >= 0.7 - 1e-6 and sigmas.max() <= 1.0
    timesteps = sampler.sample(64, generator=torch.Generator().manual_seed(1))
    assert timesteps.min() >= 700 - 1e-3 and all(sampler.in_motion_window(t) for t in timesteps)
    # inside the window u = unshift(σ) is uniform on [u*, 1]: compare quantiles with the exact ones
    u = unshift_sigma(sigmas, shift)
    u_star = 0.7 / (shift - (shift - 1) * 0.7)  # written out: σ = s·u / (1 + (s−1)·u) solved for u
    levels = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    assert torch.quantile(u, levels) == pytest.approx((u_star + levels * (1 - u_star)).tolist(), abs=0.01)
    full = FlowWindowSampler(1000, shift, 0.7, restrict_to_window=False).sample_sigmas(4000)
    assert full.min() < 0.3  # the window off: the scheduler's whole range


def test_shift_matches_the_diffusers_training_sigmas():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    u = torch.linspace(1, 1000, 1000).flip(0) / 1000
    assert torch.allclose(shift_sigma(u, 3.0), scheduler.sigmas, atol=1e-6)
    assert torch.allclose(unshift_sigma(shift_sigma(u, 3.0), 3.0), u, atol=1e-6)


def test_add_noise_and_target_follow_the_flow_matching_convention():
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([250.0, 900.0])
    schedule = FlowMatchingSchedule(1000, 3.0)
    noisy = schedule.add_noise(x0, noise, t)
    assert torch.allclose(noisy[0], 0.25 * noise[0] + 0.75 * x0[0], atol=1e-6)
    assert torch.allclose(noisy[1], 0.9 * noise[1] + 0.1 * x0[1], atol=1e-6)
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    assert torch.allclose(noisy[1:], reference.scale_noise(x0[1:], torch.tensor([900.0]), noise[1:]), atol=1e-6)
    assert torch.equal(schedule.velocity(x0, noise), noise - x0)


def test_flow_sample_matches_diffusers_euler_steps():
    schedule = FlowSchedule.from_shift(7, 3.0)
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(7)
    assert schedule.timesteps == pytest.approx(reference.timesteps.tolist())

    def velocity(x, t):  # depends on x and t
        return torch.sin(x) * (t / 1000) + 0.1

    start = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    ours = flow_sample(velocity, start.clone(), schedule)
    theirs = start.clone()
    for t in reference.timesteps:
        theirs = reference.step(velocity(theirs, float(t)), t, theirs).prev_sample
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_reverse_ode_round_trip_is_exact_for_a_constant_velocity_model():
    schedule = FlowSchedule.from_shift(10, 3.0)
    field = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def velocity(x, t):  # constant in x, varying with t
        return field * (1 + t / 1000)

    x0 = torch.randn(1, 4, 2, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inverted = flow_invert(velocity, x0, schedule)
    assert not torch.allclose(inverted, x0)
    assert torch.allclose(flow_sample(velocity, inverted, schedule), x0, atol=1e-12)


def test_reverse_ode_recovers_the_noise_of_a_straight_path():
    # the exact velocity of x_σ = σ·ε + (1−σ)·x0 for one known pair is ε − x0: inversion lands on ε
    x0, noise = torch.randn(1, 4, 2, 2, 2, dtype=torch.float64), torch.randn(1, 4, 2, 2, 2, dtype=torch.float64)
    schedule = FlowSchedule.from_shift(5, 3.0)
    assert schedule.sigmas[0] == pytest.approx(1.0)
    assert torch.allclose(flow_invert(lambda x, t: noise - x0, x0, schedule), noise, atol=1e-6)


def test_bad_boundary_is_one_clear_error():
    with pytest.raises(VideoInputError, match="sigma in"):
        FlowWindowSampler(1000, 3.0, 700)
