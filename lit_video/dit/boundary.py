"""The motion boundary in each model's own noise units, and the equal-SNR mapping between them.

A boundary may be given as

- ``timestep``: the model's own timestep axis (DDPM/DDIM: integer t in [0, T−1]; flow: t = σ·T);
- ``sigma``: a flow noise level σ in [0, 1] (for a DDPM model: the t of equal SNR);
- ``modelscope_timestep``: a t* measured on ModelScope/ZeroScope (scaled-linear betas 0.00085→0.012,
  T = 1000), carried over at equal signal-to-noise ratio.

Equal SNR: DDPM SNR = ᾱ/(1−ᾱ), flow SNR = ((1−σ)/σ)², so σ = √(1−ᾱ) / (√ᾱ + √(1−ᾱ)); e.g. ModelScope
t* = 600 ↔ ᾱ ≈ 0.161 ↔ σ ≈ 0.70. On a DDPM model the boundary is the smallest t whose SNR is at most the
boundary's SNR (noise levels at or above it), so t ≥ t_b ⇔ SNR_t ≤ SNR_b.
"""

from __future__ import annotations

from typing import Literal

import torch

from lit_video.errors import VideoInputError

BoundaryUnits = Literal["timestep", "sigma", "modelscope_timestep"]


def modelscope_alphas_cumprod(num_train_timesteps: int = 1000) -> torch.Tensor:
    """ᾱ_t of ModelScope's scheduler (scaled_linear, 0.00085 → 0.012), float64."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, dim=0)


def sigma_from_alpha_cumprod(alpha_cumprod: float | torch.Tensor):
    """Equal-SNR flow σ of a DDPM level ᾱ: √(1−ᾱ) / (√ᾱ + √(1−ᾱ))."""
    alpha = torch.as_tensor(alpha_cumprod, dtype=torch.float64)
    return (1 - alpha).sqrt() / (alpha.sqrt() + (1 - alpha).sqrt())


def alpha_cumprod_from_sigma(sigma: float | torch.Tensor):
    """The inverse: ᾱ = (1−σ)² / ((1−σ)² + σ²)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma ** 2)


def modelscope_timestep_to_sigma(timestep: int) -> float:
    """σ at equal SNR with ModelScope's t (t = 600 → ≈ 0.70)."""
    alphas = modelscope_alphas_cumprod()
    if not 0 <= int(timestep) < len(alphas):
        raise VideoInputError(f"a ModelScope t* lies in [0, {len(alphas) - 1}], got {timestep}")
    return float(sigma_from_alpha_cumprod(alphas[int(timestep)]))


def boundary_sigma(value: float, units: BoundaryUnits, num_train_timesteps: int = 1000) -> float:
    """A boundary given in any units as a flow σ* (for flow models, whose timestep is σ·T)."""
    if units == "sigma":
        sigma = float(value)
    elif units == "timestep":
        sigma = float(value) / num_train_timesteps
    elif units == "modelscope_timestep":
        sigma = modelscope_timestep_to_sigma(int(round(value)))
    else:
        raise VideoInputError(f"unknown motion_boundary_units {units!r}: use timestep, sigma or modelscope_timestep")
    if not 0.0 <= sigma <= 1.0:
        raise VideoInputError(f"motion boundary {value} ({units}) is σ = {sigma:.4f}, outside [0, 1]: a σ lies in "
                              f"[0, 1] and a flow timestep in [0, {num_train_timesteps}]")
    return sigma


def ddpm_boundary_timestep(value: float, units: BoundaryUnits, alphas_cumprod: torch.Tensor) -> int:
    """A boundary given in any units as an integer t* on a DDPM model with cumulative alphas ``alphas_cumprod``:
    the smallest t with SNR_t ≤ the boundary's SNR (t is used as given for ``timestep``)."""
    T = len(alphas_cumprod)
    if units == "timestep":
        if not 0 <= value < T:
            raise VideoInputError(f"motion_boundary must lie in [0, {T - 1}] (timestep units), got {value}")
        return int(round(value))
    sigma = boundary_sigma(value, units)
    alpha = alpha_cumprod_from_sigma(sigma)
    snr_b = alpha / (1 - alpha).clamp(min=1e-300)
    alphas = alphas_cumprod.double()
    snr = alphas / (1 - alphas).clamp(min=1e-300)
    inside = torch.nonzero(snr <= snr_b * (1 + 1e-12)).flatten()
    return int(inside[0]) if len(inside) else T - 1
