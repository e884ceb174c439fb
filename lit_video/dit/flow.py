"""Flow matching (rectified flow) as Wan trains and samples it: noising, target, window, ODE sampling and inversion.

Conventions (spec §DiT): x_σ = σ·ε + (1−σ)·x0, target velocity v = ε − x0, the model's timestep is
t = σ·T (T = 1000), and the static shift maps a uniform u to σ = s·u / (1 + (s−1)·u), as
``diffusers.FlowMatchEulerDiscreteScheduler`` does for its training sigmas.

Shape legend: B batch; latents may have any trailing shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

import torch

from lit_video.errors import VideoInputError

# denoise(latents, timestep) -> the model's velocity at that timestep (σ·T)
VelocityModel = Callable[[torch.Tensor, float], torch.Tensor]


def shift_sigma(u: torch.Tensor | float, shift: float):
    """σ = s·u / (1 + (s−1)·u): the scheduler's static shift of a uniform level u ∈ [0, 1]."""
    return shift * u / (1 + (shift - 1) * u)


def unshift_sigma(sigma: torch.Tensor | float, shift: float):
    """The inverse of ``shift_sigma``: u = σ / (s − (s−1)·σ)."""
    return sigma / (shift - (shift - 1) * sigma)


class FlowMatchingSchedule:
    """The training-side scheduler of a flow-matching model (what ``components.scheduler`` is for Wan).

    Mirrors the diffusers scheduler API the module uses (``config.num_train_timesteps``,
    ``config.prediction_type``, ``add_noise``), with timesteps in the model's own units σ·T.

    Args:
        num_train_timesteps: T; the model sees t = σ·T.
        shift: Static shift s (Wan: 3.0 at 480p, 5.0 at 720p).
    """

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 3.0) -> None:
        if shift <= 0:
            raise VideoInputError(f"flow shift must be > 0, got {shift}")
        self.config = SimpleNamespace(num_train_timesteps=num_train_timesteps, prediction_type="flow_prediction",
                                      shift=shift)

    @property
    def shift(self) -> float:
        return float(self.config.shift)

    def sigma(self, timesteps: torch.Tensor) -> torch.Tensor:
        return timesteps.float() / self.config.num_train_timesteps

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_σ = σ·ε + (1−σ)·x0 with σ = t / T per batch element (``FlowMatchEulerDiscreteScheduler.scale_noise``)."""
        sigma = self.sigma(timesteps).to(latents.device).view(-1, *([1] * (latents.dim() - 1)))
        return (sigma * noise.float() + (1 - sigma) * latents.float()).to(latents.dtype)

    def velocity(self, latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The regression target ε − x0 (independent of σ)."""
        return noise - latents


class FlowWindowSampler:
    """Training timesteps of a flow model restricted to the motion window σ ≥ σ*.

    u ~ U[u*, 1] with u* = unshift(σ*) (or U[1/T, 1] with the window off), σ = shift(u), t = σ·T: the
    scheduler's own shifted distribution, truncated to the window, so inside the window the draw is
    uniform in u (the scheduler's parametrisation) and every σ is ≥ σ*.

    Args:
        num_train_timesteps: T.
        shift: The scheduler's static shift s.
        boundary_sigma: σ*, the lowest noise level of the motion regime (inclusive), in (0, 1].
        restrict_to_window: False draws from the scheduler's full range (for comparisons).
    """

    def __init__(self, num_train_timesteps: int, shift: float, boundary_sigma: float,
                 restrict_to_window: bool = True) -> None:
        if not 0.0 <= boundary_sigma <= 1.0:
            raise VideoInputError(f"the flow motion boundary must be a sigma in [0, 1], got {boundary_sigma}")
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift
        self.boundary_sigma = float(boundary_sigma)
        self.restrict_to_window = restrict_to_window

    @property
    def motion_boundary(self) -> float:
        """t* = σ*·T in the model's timestep units (what sampling compares the step's t against)."""
        return self.boundary_sigma * self.num_train_timesteps

    @property
    def low_u(self) -> float:
        floor = 1.0 / self.num_train_timesteps
        return max(floor, float(unshift_sigma(self.boundary_sigma, self.shift))) if self.restrict_to_window else floor

    def sample_sigmas(self, batch_size: int, device: torch.device | str = "cpu",
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
        u = self.low_u + (1.0 - self.low_u) * torch.rand(batch_size, generator=generator, dtype=torch.float64)
        return shift_sigma(u, self.shift).clamp(max=1.0).to(device=device, dtype=torch.float32)

    def sample(self, batch_size: int, device: torch.device | str = "cpu",
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """(batch_size,) float timesteps σ·T, all ≥ σ*·T when the window is on."""
        return self.sample_sigmas(batch_size, device, generator) * self.num_train_timesteps

    def in_motion_window(self, timestep: float) -> bool:
        return float(timestep) >= self.motion_boundary


@dataclass
class FlowSchedule:
    """Inference noise levels: ``sigmas`` descending from ≈ 1 to 0 (n + 1 values), timesteps σ·T (n values)."""

    sigmas: list[float]
    timesteps: list[float]
    num_train_timesteps: int

    @classmethod
    def from_shift(cls, num_inference_steps: int, shift: float, num_train_timesteps: int = 1000) -> "FlowSchedule":
        """The sigmas ``FlowMatchEulerDiscreteScheduler(shift=s).set_timesteps(n)`` places (so WanPipeline with
        that scheduler takes the same steps)."""
        from diffusers import FlowMatchEulerDiscreteScheduler  # noqa: PLC0415 (diffusers, heavy and optional at import)

        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
        scheduler.set_timesteps(num_inference_steps)
        return cls(sigmas=[float(s) for s in scheduler.sigmas], timesteps=[float(t) for t in scheduler.timesteps],
                   num_train_timesteps=num_train_timesteps)


@torch.no_grad()
def flow_sample(velocity: VelocityModel, latents: torch.Tensor, schedule: FlowSchedule) -> torch.Tensor:
    """Euler ODE from σ_0 ≈ 1 to 0: x ← x + (σ_{i+1} − σ_i)·v(x, t_i) (``FlowMatchEulerDiscreteScheduler.step``)."""
    for index, timestep in enumerate(schedule.timesteps):
        dt = schedule.sigmas[index + 1] - schedule.sigmas[index]
        latents = (latents.float() + dt * velocity(latents, timestep).float()).to(latents.dtype)
    return latents


@torch.no_grad()
def flow_invert(velocity: VelocityModel, latents: torch.Tensor, schedule: FlowSchedule) -> torch.Tensor:
    """The reverse ODE from σ = 0 up to σ_0: each sampling step undone in reverse order, the model queried at
    the lower level's latents with the step's timestep t_i (as DDIM inversion does), so for a velocity
    that does not depend on x the round trip is exact."""
    for index in reversed(range(len(schedule.timesteps))):
        dt = schedule.sigmas[index] - schedule.sigmas[index + 1]
        latents = (latents.float() + dt * velocity(latents, schedule.timesteps[index]).float()).to(latents.dtype)
    return latents
