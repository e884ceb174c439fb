"""Sizes of the tiny random DiT components (tests and the CPU demo); one config for every family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DiTFamily = Literal["wan", "cogvideox", "latte"]


@dataclass
class TinyDiTConfig:
    """Tiny random DiT sizes (spec §DiT: the shapes of diffusers' own tests).

    Args:
        num_layers: Transformer blocks.
        num_attention_heads: Attention heads.
        attention_head_dim: Width per head (model width = heads × head width).
        ffn_dim: Feed-forward width (Wan).
        text_width: Text-encoder hidden size (T5 / UMT5 ``d_model``) = the DiT's text width.
        text_layers: Text-encoder layers.
        max_prompt_tokens: Tokenizer / text-encoder context length.
        latent_channels: VAE latent channels (Wan: 16; CogVideoX / Latte tiny: 4).
        vae_base_dim: Wan VAE base width.
        vae_dim_mult: Wan VAE width multipliers per level (real Wan 2.1: 1, 2, 4, 4).
        vae_res_blocks: Wan VAE residual blocks per level (real: 2).
        rope_max_seq_len: Wan RoPE table length (real: 1024).
        flow_shift: Flow models: static shift s of the noise schedule.
        num_train_timesteps: T.
        seed: Seed of the random initialisation (the same seed rebuilds the same base model).
    """

    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 12
    ffn_dim: int = 32
    text_width: int = 32
    text_layers: int = 2
    max_prompt_tokens: int = 32
    latent_channels: int = 16
    vae_base_dim: int = 3
    vae_dim_mult: tuple[int, ...] = (1, 1, 1, 1)
    vae_res_blocks: int = 1
    rope_max_seq_len: int = 32
    flow_shift: float = 3.0
    num_train_timesteps: int = 1000
    seed: int = 0
