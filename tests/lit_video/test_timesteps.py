import pytest
import torch
from diffusers import DDIMScheduler

from lit_video.components import ddim_scheduler
from lit_video.timesteps import MotionWindowSampler, diffusion_target


def test_window_sampler_stays_in_window_and_is_uniform():
    sampler = MotionWindowSampler(num_train_timesteps=1000, motion_boundary=600)
    draws = sampler.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert draws.dtype == torch.int64
    assert int(draws.min()) == 600 and int(draws.max()) == 999  # reaches both ends, never leaves
    counts = torch.bincount(draws - 600, minlength=400).double()
    expected = draws.numel() / 400
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    # 399 degrees of freedom: mean 399, sd ≈ 28; 520 is ≈ 4.3 sd (p < 1e-4) for a uniform sampler
    assert chi_square < 520, chi_square
    # and a sampler biased toward low t (e.g. rejection from a skewed draw) would fail the same test
    skewed = (torch.rand(200_000, generator=torch.Generator().manual_seed(1)) ** 1.2 * 400).long()
    skewed_counts = torch.bincount(skewed, minlength=400).double()
    assert float(((skewed_counts - expected) ** 2 / expected).sum()) > 520


def test_window_off_samples_full_range_and_inference_rule():
    sampler = MotionWindowSampler(1000, 600, restrict_to_window=False)
    draws = sampler.sample(50_000, generator=torch.Generator().manual_seed(0))
    assert int(draws.min()) == 0 and int(draws.max()) == 999
    assert sampler.in_motion_window(600) and sampler.in_motion_window(999) and not sampler.in_motion_window(599)


def test_bad_boundary_is_rejected():
    with pytest.raises(ValueError, match="motion_boundary"):
        MotionWindowSampler(1000, 1000)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_targets_follow_prediction_type(prediction_type):
    scheduler = ddim_scheduler(prediction_type=prediction_type)
    latents, noise = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 3, 8, 8)
    timesteps = torch.tensor([650, 999])
    target = diffusion_target(scheduler, latents, noise, timesteps)
    if prediction_type == "epsilon":
        assert torch.equal(target, noise)
    else:  # v = √ᾱ ε − √(1−ᾱ) x0
        alpha = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        torch.testing.assert_close(target, alpha.sqrt() * noise - (1 - alpha).sqrt() * latents)
    assert isinstance(scheduler, DDIMScheduler)
