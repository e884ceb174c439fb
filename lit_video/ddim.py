"""Deterministic DDIM (eta = 0): sampling, inversion, and the one step both share.

Sampling goes t → t_prev along the inference timesteps; inversion walks the same pairs backwards
(t_prev → t), so with a UNet whose output does not depend on its input the round trip is exact
(spec §4) for ε-prediction (for v-prediction it is the usual approximate inversion). The step
mirrors ``diffusers.DDIMScheduler.step`` (tested for parity) and supports epsilon and v prediction.
Shape-agnostic: latents may be (B, C, F, H, W) or anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# denoise(latents, timestep) -> the model output (ε or v) at that timestep
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class DDIMSchedule:
    """The inference timesteps and cumulative alphas of a DDIM-compatible diffusers scheduler."""

    timesteps: list[int]  # descending, e.g. [961, 921, ..., 1] for 25 steps of T = 1000
    alphas_cumprod: torch.Tensor  # (T,)
    final_alpha_cumprod: torch.Tensor  # ᾱ used below t = 0
    num_train_timesteps: int
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler, num_inference_steps: int) -> "DDIMSchedule":
        """Uses a copy of ``scheduler`` to place the timesteps (spacing, steps_offset as configured);
        CogVideoX's scheduler is kept as it is (its ``snr_shift_scale`` changes ᾱ, the step is DDIM's)."""
        from diffusers import CogVideoXDDIMScheduler, DDIMScheduler  # noqa: PLC0415 (diffusers, heavy and optional at import)

        kind = CogVideoXDDIMScheduler if "snr_shift_scale" in scheduler.config else DDIMScheduler
        ddim = kind.from_config(scheduler.config)
        ddim.set_timesteps(num_inference_steps)
        return cls(timesteps=[int(t) for t in ddim.timesteps], alphas_cumprod=ddim.alphas_cumprod,
                   final_alpha_cumprod=ddim.final_alpha_cumprod,
                   num_train_timesteps=int(ddim.config.num_train_timesteps),
                   prediction_type=str(ddim.config.prediction_type))

    @property
    def stride(self) -> int:
        return self.num_train_timesteps // len(self.timesteps)

    def alpha(self, timestep: int) -> torch.Tensor:
        return self.alphas_cumprod[timestep] if timestep >= 0 else self.final_alpha_cumprod

    def previous(self, timestep: int) -> int:
        return timestep - self.stride


def ddim_transfer(latents: torch.Tensor, model_output: torch.Tensor, alpha_from: torch.Tensor,
                  alpha_to: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Moves latents from noise level ᾱ_from to ᾱ_to along the model's predicted (x0, ε)."""
    beta_from = 1 - alpha_from
    if prediction_type == "epsilon":
        pred_original = (latents - beta_from ** 0.5 * model_output) / alpha_from ** 0.5
        pred_epsilon = model_output
    elif prediction_type == "v_prediction":
        pred_original = alpha_from ** 0.5 * latents - beta_from ** 0.5 * model_output
        pred_epsilon = alpha_from ** 0.5 * model_output + beta_from ** 0.5 * latents
    else:
        raise ValueError(f"unsupported prediction_type {prediction_type!r}: use epsilon or v_prediction")
    return alpha_to ** 0.5 * pred_original + (1 - alpha_to) ** 0.5 * pred_epsilon


def ddim_step(model_output: torch.Tensor, timestep: int, latents: torch.Tensor, schedule: DDIMSchedule) -> torch.Tensor:
    """One sampling step t → t_prev (``diffusers.DDIMScheduler.step`` with eta = 0)."""
    return ddim_transfer(latents, model_output, schedule.alpha(timestep),
                         schedule.alpha(schedule.previous(timestep)), schedule.prediction_type)


def ddim_inverse_step(model_output: torch.Tensor, timestep: int, latents: torch.Tensor,
                      schedule: DDIMSchedule) -> torch.Tensor:
    """One inversion step t_prev → t, the exact reverse of ``ddim_step`` for the same model output."""
    return ddim_transfer(latents, model_output, schedule.alpha(schedule.previous(timestep)),
                         schedule.alpha(timestep), schedule.prediction_type)


@torch.no_grad()
def ddim_sample(denoise: Denoiser, latents: torch.Tensor, schedule: DDIMSchedule) -> torch.Tensor:
    """z_T → z_0 over ``schedule.timesteps`` (descending)."""
    for timestep in schedule.timesteps:
        latents = ddim_step(denoise(latents, timestep), timestep, latents, schedule)
    return latents


@torch.no_grad()
def ddim_invert(denoise: Denoiser, latents: torch.Tensor, schedule: DDIMSchedule) -> torch.Tensor:
    """z_0 → z_T: the model is queried at (z_{t_prev}, t), as in diffusers' DDIMInverseScheduler."""
    for timestep in reversed(schedule.timesteps):
        latents = ddim_inverse_step(denoise(latents, timestep), timestep, latents, schedule)
    return latents
