"""Text-to-video sampling: classifier-free guidance, per-step prompt choice, per-step LoRA switch.

The recipe's inference (spec §2) is ``lora_active = lambda t: t >= t*``; the probe (spec §1) uses
``text_for_step = lambda t: new if t in window else source``. Both are plain functions of the
training-axis timestep, so they do not depend on the number of inference steps.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Literal, Optional

import torch

from lit_video.components import VideoDiffusionComponents
from lit_video.ddim import DDIMSchedule, Denoiser, ddim_invert, ddim_sample
from lit_video.dit.flow import FlowSchedule, flow_invert, flow_sample
from lit_video.lora import lora_enabled

LoraMode = Literal["off", "all", "windowed"]


def lora_schedule(mode: LoraMode, motion_boundary: int) -> Callable[[int], bool]:
    """timestep → LoRA on? ``off``: never (the base model); ``all``: every step; ``windowed``: t ≥ t*."""
    if mode == "off":
        return lambda t: False
    if mode == "all":
        return lambda t: True
    if mode == "windowed":  # float compare: flow models' timesteps σ·T are not integers
        return lambda t: float(t) >= motion_boundary
    raise ValueError(f"unknown LoRA mode {mode!r}: use 'off', 'all' or 'windowed'")


def guided_denoiser(components: VideoDiffusionComponents, text_for_step: Callable[[int], torch.Tensor],
                    negative_text: Optional[torch.Tensor], guidance_scale: float,
                    lora_active: Optional[Callable[[int], bool]] = None) -> Denoiser:
    """A DDIM denoiser: ε_u + g·(ε_c − ε_u) with the conditional text chosen per timestep.

    Args:
        components: The model.
        text_for_step: timestep → conditional text embeddings (B, L, D).
        negative_text: Unconditional/negative embeddings (B, L, D); unused when ``guidance_scale`` is 1.
        guidance_scale: CFG scale g; 1 runs only the conditional branch.
        lora_active: timestep → whether the LoRA adapters apply at that step; ``None`` leaves them as
            they are.
    """

    def denoise(latents: torch.Tensor, timestep: int) -> torch.Tensor:
        text = text_for_step(timestep)
        switch = lora_enabled(components.unet, lora_active(timestep)) if lora_active else contextlib.nullcontext()
        with switch:
            if guidance_scale == 1.0:
                t = torch.full((latents.shape[0],), timestep, device=latents.device)
                return components.predict(latents, t, text)
            t = torch.full((2 * latents.shape[0],), timestep, device=latents.device)
            output = components.predict(torch.cat([latents, latents]), t, torch.cat([negative_text, text]))
            unconditional, conditional = output.chunk(2)
            return unconditional + guidance_scale * (conditional - unconditional)

    return denoise


def initial_noise(components: VideoDiffusionComponents, batch_size: int, num_frames: int, height: int, width: int,
                  seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """z_T ~ N(0, I) of shape (B, c, F, H/s, W/s) (a DiT's ``latent_shape``: its VAE also compresses frames),
    reproducible from ``seed`` on any device."""
    if hasattr(components, "latent_shape"):
        shape = components.latent_shape(batch_size, num_frames, height, width)
    else:
        scale = components.vae_scale_factor
        shape = (batch_size, components.unet.config.in_channels, num_frames, height // scale, width // scale)
    generator = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device)


def inference_schedule(components: VideoDiffusionComponents, num_inference_steps: int):
    """The sampler's steps: a ``FlowSchedule`` (Euler flow ODE, the model's shift) for flow models, else DDIM."""
    if getattr(components, "is_flow", False):

        return FlowSchedule.from_shift(num_inference_steps, components.scheduler.shift, components.num_train_timesteps)
    return DDIMSchedule.from_scheduler(components.scheduler, num_inference_steps)


def sample_latents(denoise: Denoiser, latents: torch.Tensor, schedule) -> torch.Tensor:
    """Noise → clean latents with the schedule's sampler (flow Euler ODE or DDIM, eta = 0)."""
    if isinstance(schedule, DDIMSchedule):
        return ddim_sample(denoise, latents, schedule)

    return flow_sample(denoise, latents, schedule)


def invert_latents(denoise: Denoiser, latents: torch.Tensor, schedule) -> torch.Tensor:
    """Clean latents → noise: DDIM inversion, or the reverse flow ODE for flow models."""
    if isinstance(schedule, DDIMSchedule):
        return ddim_invert(denoise, latents, schedule)

    return flow_invert(denoise, latents, schedule)


@torch.no_grad()
def generate_video(components: VideoDiffusionComponents, prompts: list[str], num_frames: int, height: int,
                   width: int, num_inference_steps: int = 30, guidance_scale: float = 12.0,
                   negative_prompt: str = "", lora_active: Optional[Callable[[int], bool]] = None,
                   seed: int = 0) -> torch.Tensor:
    """DDIM (or, for flow models, Euler flow ODE) + CFG text-to-video; pixels in [-1, 1] (B, 3, F, H, W)."""
    device = next(components.unet.parameters()).device
    text = components.encode_prompts(prompts).to(device)
    negative = components.encode_prompts([negative_prompt] * len(prompts)).to(device)
    schedule = inference_schedule(components, num_inference_steps)
    denoise = guided_denoiser(components, lambda t: text, negative, guidance_scale, lora_active)
    latents = initial_noise(components, len(prompts), num_frames, height, width, seed, device)
    latents = sample_latents(denoise, latents.to(text.dtype), schedule)
    return components.decode_latents(latents)
