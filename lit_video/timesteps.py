"""The motion timestep window: training timesteps drawn uniformly from [t*, T−1] (spec §2).

``motion_boundary`` t* lives on the training-timestep axis (0..T−1), never as a step count, so one
value serves any number of inference steps. Targets follow the scheduler's prediction type.
"""

from __future__ import annotations

from typing import Optional

import torch

from lit_video.errors import VideoInputError


class MotionWindowSampler:
    """Draws integer training timesteps: uniform in [t*, T−1], or in [0, T−1] when the window is off.

    Args:
        num_train_timesteps: T, the scheduler's training-timestep count.
        motion_boundary: t*, the lowest timestep of the motion regime (inclusive).
        restrict_to_window: False samples the full range [0, T−1] (for comparisons).
    """

    def __init__(self, num_train_timesteps: int, motion_boundary: int, restrict_to_window: bool = True) -> None:
        if not 0 <= motion_boundary < num_train_timesteps:
            raise VideoInputError(f"motion_boundary must lie in [0, {num_train_timesteps - 1}] (timestep units), "
                             f"got {motion_boundary}")
        self.num_train_timesteps = num_train_timesteps
        self.motion_boundary = motion_boundary
        self.restrict_to_window = restrict_to_window

    @property
    def low(self) -> int:
        return self.motion_boundary if self.restrict_to_window else 0

    def sample(self, batch_size: int, device: torch.device | str = "cpu",
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(batch_size,) int64 timesteps, drawn inside the window (never rejected)."""
        return torch.randint(self.low, self.num_train_timesteps, (batch_size,), device=device, generator=generator)

    def in_motion_window(self, timestep: int) -> bool:
        """Whether an inference timestep belongs to the motion regime (t ≥ t*)."""
        return int(timestep) >= self.motion_boundary


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the model should output for x_t = add_noise(latents, noise, t): ε or v."""
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if prediction_type == "flow_prediction":  # flow matching (lit_video.dit.flow): velocity ε − x0
        return noise - latents
    raise ValueError(f"unsupported prediction_type {prediction_type!r}: use epsilon, v_prediction or flow_prediction")
