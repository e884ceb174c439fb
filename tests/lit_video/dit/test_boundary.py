import math

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler

from lit_video.dit.boundary import (
    boundary_sigma,
    ddpm_boundary_timestep,
    modelscope_timestep_to_sigma,
    sigma_from_alpha_cumprod,
)
from lit_video.dit.flow import unshift_sigma


def modelscope_alpha_bar(t: int) -> float:
    """float64 reference: ∏ (1 − β_i), β scaled-linear from 0.00085 to 0.012 over 1000 steps."""
    product = 1.0
    for i in range(t + 1):
        beta = (math.sqrt(0.00085) + i * (math.sqrt(0.012) - math.sqrt(0.00085)) / 999) ** 2
        product *= 1 - beta
    return product


def test_modelscope_600_maps_to_sigma_070_at_equal_snr():
    alpha = modelscope_alpha_bar(600)
    assert alpha == pytest.approx(0.161, abs=0.002)
    sigma = modelscope_timestep_to_sigma(600)
    assert sigma == pytest.approx(math.sqrt(1 - alpha) / (math.sqrt(alpha) + math.sqrt(1 - alpha)), rel=1e-9)
    assert sigma == pytest.approx(0.70, abs=0.01)
    assert alpha / (1 - alpha) == pytest.approx(((1 - sigma) / sigma) ** 2, rel=1e-9)  # equal SNR
    # with Wan's shift 3 the window σ ≥ 0.70 covers the first ≈ 57% of the sampling steps
    assert 1 - unshift_sigma(sigma, 3.0) == pytest.approx(0.57, abs=0.015)


def test_boundary_units():
    assert boundary_sigma(0.7, "sigma") == 0.7
    assert boundary_sigma(875, "timestep") == 0.875  # Wan: t = σ·1000 (boundary_ratio 0.875 ↔ t 875)
    assert boundary_sigma(600, "modelscope_timestep") == pytest.approx(modelscope_timestep_to_sigma(600))


def test_ddpm_boundary_on_cogvideox_schedule_is_the_first_step_at_or_below_the_snr():
    scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, snr_shift_scale=3.0)
    alphas = scheduler.alphas_cumprod.double()
    t_star = ddpm_boundary_timestep(0.7, "sigma", alphas)
    sigmas = sigma_from_alpha_cumprod(alphas)
    assert sigmas[t_star] >= 0.7 - 1e-9 > sigmas[t_star - 1]  # σ grows with t: t ≥ t* ⇔ σ_t ≥ 0.7
    assert ddpm_boundary_timestep(600, "timestep", alphas) == 600
    via_modelscope = ddpm_boundary_timestep(600, "modelscope_timestep", alphas)
    assert sigmas[via_modelscope] >= modelscope_timestep_to_sigma(600) - 1e-9 > sigmas[via_modelscope - 1]
    assert torch.all(sigmas[1:] >= sigmas[:-1])
