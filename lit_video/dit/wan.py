"""Wan 2.1 / 2.2: ``WanTransformer3DModel`` (flow matching), ``AutoencoderKLWan``, UMT5 text encoder.

From a local diffusers folder (``WanPipeline.save_pretrained`` layout: ``transformer/``, optional
``transformer_2/`` and ``boundary_ratio`` in ``model_index.json`` for Wan 2.2 A14B, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), or tiny and random from config (nothing downloaded).

Wan 2.2's two experts: the pipeline runs ``transformer`` (high noise) while t ≥ boundary_ratio·T and
``transformer_2`` below; ``predict`` does the same. The LoRA sits on ``transformer`` (``unet`` here),
so the motion window must lie inside the high-noise expert's range (σ* ≥ boundary_ratio).

Shape legend: B batch, C channels, F frames, H/W height/width, L prompt tokens, D text width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from lit_video.components import tiny_clip_tokenizer
from lit_video.dit.base import DiTComponents
from lit_video.dit.config import TinyDiTConfig
from lit_video.dit.flow import FlowMatchingSchedule
from lit_video.errors import VideoInputError


class WanComponents(DiTComponents):
    """Wan's parts; ``unet`` is the (high-noise) transformer, ``transformer_2`` the Wan 2.2 low-noise expert."""

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module, vae: nn.Module, tokenizer,
                 scheduler: FlowMatchingSchedule, max_prompt_tokens: int, transformer_2: Optional[nn.Module] = None,
                 boundary_ratio: Optional[float] = None) -> None:
        super().__init__(transformer, text_encoder, vae, tokenizer, scheduler, "wan",
                         int(vae.config.scale_factor_spatial), int(vae.config.scale_factor_temporal))
        self.transformer_2 = transformer_2
        self.boundary_ratio = boundary_ratio
        self.max_prompt_tokens = max_prompt_tokens

    def freeze(self) -> None:
        super().freeze()
        if self.transformer_2 is not None:
            self.transformer_2.requires_grad_(False)

    @property
    def expert_boundary(self) -> Optional[float]:
        """Wan 2.2: the timestep boundary_ratio·T where the pipeline switches to the low-noise expert."""
        if self.transformer_2 is None or self.boundary_ratio is None:
            return None
        return self.boundary_ratio * self.num_train_timesteps

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 states (B, L, D), zeroed after each prompt's last token, as ``WanPipeline._get_t5_prompt_embeds``."""
        return self.padding_zeroed_states(prompts)

    def _latent_stats(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        channels = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean).view(1, channels, 1, 1, 1).to(device, dtype)
        std = torch.tensor(self.vae.config.latents_std).view(1, channels, 1, 1, 1).to(device, dtype)
        return mean, std

    @torch.no_grad()
    def encode_video(self, video_BCFHW: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, F, H, W), F = 4k + 1 → normalised latents (B, 16, k + 1, H/8, W/8)."""
        self.check_frames(video_BCFHW.shape[2])
        latents = self.vae.encode(video_BCFHW.to(self.vae.dtype)).latent_dist.mode()
        mean, std = self._latent_stats(latents.device, latents.dtype)
        return (latents - mean) / std

    @torch.no_grad()
    def decode_latents(self, latents_BCFHW: torch.Tensor) -> torch.Tensor:
        """Normalised latents → pixels in [-1, 1] (B, 3, F, H, W) (``WanPipeline``'s de-normalisation)."""
        mean, std = self._latent_stats(latents_BCFHW.device, self.vae.dtype)
        video = self.vae.decode(latents_BCFHW.to(self.vae.dtype) * std + mean).sample
        return video.clamp(-1, 1)

    def predict(self, latents_BCFHW: torch.Tensor, timesteps_B: torch.Tensor, text_BLD: torch.Tensor) -> torch.Tensor:
        """The velocity ε − x0 at t = σ·T; Wan 2.2 picks the expert by t[0] (one noise level per batch)."""
        model = self.unet
        boundary = self.expert_boundary
        if boundary is not None and float(timesteps_B.flatten()[0]) < boundary:
            model = self.transformer_2
        dtype = next(model.parameters()).dtype
        return model(hidden_states=latents_BCFHW.to(dtype), timestep=timesteps_B,
                     encoder_hidden_states=text_BLD.to(dtype), return_dict=False)[0]


def tiny_wan_transformer(config: TinyDiTConfig) -> nn.Module:
    from diffusers import WanTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim, in_channels=config.latent_channels,
        out_channels=config.latent_channels, text_dim=config.text_width, freq_dim=256, ffn_dim=config.ffn_dim,
        num_layers=config.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=config.rope_max_seq_len)


def tiny_umt5(config: TinyDiTConfig, vocab_size: int, pad_token_id: int, eos_token_id: int) -> nn.Module:
    from transformers import UMT5Config, UMT5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=config.text_width, d_kv=max(4, config.text_width // 4),
        d_ff=2 * config.text_width, num_layers=config.text_layers, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
        decoder_start_token_id=pad_token_id))


def build_tiny_wan(config: TinyDiTConfig, flow_shift: Optional[float] = None) -> WanComponents:
    """Random Wan components from config (≈ 0.1 M transformer parameters at the defaults)."""
    from diffusers import AutoencoderKLWan  # noqa: PLC0415 (diffusers, heavy and optional at import)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        transformer = tiny_wan_transformer(config)
        tokenizer = tiny_clip_tokenizer(config.max_prompt_tokens)
        text_encoder = tiny_umt5(config, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
        vae = AutoencoderKLWan(base_dim=config.vae_base_dim, z_dim=config.latent_channels,
                               dim_mult=list(config.vae_dim_mult), num_res_blocks=config.vae_res_blocks,
                               temperal_downsample=[False, True, True])
    schedule = FlowMatchingSchedule(config.num_train_timesteps, flow_shift or config.flow_shift)
    return WanComponents(transformer, text_encoder, vae, tokenizer, schedule, config.max_prompt_tokens)


def folder_flow_shift(folder: Path) -> Optional[float]:
    """The shift of a saved Wan scheduler: UniPC's ``flow_shift`` or FlowMatchEuler's ``shift``."""
    config_file = folder / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    value = config.get("flow_shift", config.get("shift"))
    return float(value) if value is not None else None


def load_wan(folder: Path, flow_shift: Optional[float] = None, max_prompt_tokens: int = 512) -> WanComponents:
    """Wan from a local folder; the scheduler's shift is kept, sampling is our Euler flow ODE."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import AutoTokenizer, UMT5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    index = json.loads((folder / "model_index.json").read_text()) if (folder / "model_index.json").is_file() else {}
    shift = flow_shift or folder_flow_shift(folder)
    if shift is None:
        raise VideoInputError(f"{folder}/scheduler has no flow_shift / shift: set components.flow_shift "
                              "(Wan: 3.0 at 480p, 5.0 at 720p)")
    transformer = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer")
    transformer_2 = None
    if (folder / "transformer_2" / "config.json").is_file():
        transformer_2 = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer_2")
    boundary_ratio = index.get("boundary_ratio")
    if transformer_2 is not None and boundary_ratio is None:
        raise VideoInputError(f"{folder} has transformer_2 but model_index.json has no boundary_ratio (Wan 2.2 A14B "
                              "uses 0.875): add it")
    tokenizer = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder")
    return WanComponents(transformer, text_encoder, AutoencoderKLWan.from_pretrained(folder, subfolder="vae"),
                         tokenizer, FlowMatchingSchedule(1000, shift),
                         min(max_prompt_tokens, int(getattr(tokenizer, "model_max_length", max_prompt_tokens))),
                         transformer_2, boundary_ratio)
