"""Shared helpers of the DiT tests: a tiny Wan recipe module and a fixed batch."""

from __future__ import annotations

import torch

from lit_video.components import ComponentsSpec
from lit_video.dit.config import TinyDiTConfig

FRAMES, SIZE = 5, 16  # Wan VAE: 4k + 1 frames, 8× spatial → latents (16, 2, 2, 2)


def wan_spec(seed: int = 0) -> ComponentsSpec:
    return ComponentsSpec(family="wan", tiny_dit=TinyDiTConfig(seed=seed))


def wan_module(preset: str = "self_attn", rank: int = 4, **kwargs):
    from lit_video.dit.module import DiTMotionCustomizationModule

    return DiTMotionCustomizationModule(components=wan_spec(), lora_preset=preset, lora_rank=rank, **kwargs)


def batch(seed: int = 0) -> dict:
    video = torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return {"video": video, "prompt": ["a red square moving right"]}
