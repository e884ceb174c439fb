"""What every DiT family's components share: the 3-D VAE's latent shape and the flow / DDPM switch.

Shape legend: B batch, C channels, F frames, H/W height/width, L prompt tokens, D text width.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_video.components import VideoDiffusionComponents
from lit_video.dit.flow import FlowMatchingSchedule
from lit_video.errors import VideoInputError


class DiTComponents(VideoDiffusionComponents):
    """A DiT text-to-video model: ``unet`` is the transformer (the name the module and the LoRA code use).

    Args (beyond the parent's): ``family`` names the model family (``wan``, ``cogvideox``, ``latte``);
    ``temporal_compression`` is the VAE's frame compression (clips need k·c + 1 frames when > 1).
    """

    lora_prefix = "transformer"  # diffusers' key prefix for a DiT pipeline's LoRA

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module, vae: nn.Module, tokenizer, scheduler,
                 family: str, spatial_compression: int, temporal_compression: int) -> None:
        super().__init__(transformer, text_encoder, vae, tokenizer, scheduler, family)
        self.family = family
        self.spatial_compression = spatial_compression
        self.temporal_compression = temporal_compression

    @property
    def transformer(self) -> nn.Module:
        return self.unet

    @property
    def is_flow(self) -> bool:
        return isinstance(self.scheduler, FlowMatchingSchedule)

    @property
    def vae_scale_factor(self) -> int:
        return self.spatial_compression

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def check_frames(self, num_frames: int) -> None:
        c = self.temporal_compression
        if c > 1 and (num_frames - 1) % c:
            raise VideoInputError(f"{self.family} compresses frames {c}×: clips need k·{c} + 1 frames "
                                  f"(e.g. {c + 1}, {2 * c + 1}, {4 * c + 1}), got {num_frames}")

    def latent_shape(self, batch_size: int, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """(B, c, f, h, w) of the latents of a (B, 3, F, H, W) clip."""
        self.check_frames(num_frames)
        s = self.spatial_compression
        frames = (num_frames - 1) // self.temporal_compression + 1 if self.temporal_compression > 1 else num_frames
        return (batch_size, self.latent_channels, frames, height // s, width // s)

    @torch.no_grad()
    def padding_zeroed_states(self, prompts: list[str]) -> torch.Tensor:
        """T5-family encoder states (B, L, D) at ``max_prompt_tokens``, zeroed after each prompt's last
        token (what Wan's and Latte's pipelines feed their transformers)."""
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_prompt_tokens, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device)
        states = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask).last_hidden_state
        return states * mask.unsqueeze(-1).to(states.dtype)

    def predict(self, latents_BCFHW: torch.Tensor, timesteps_B: torch.Tensor, text_BLD: torch.Tensor) -> torch.Tensor:
        """The model's prediction (noise, v or velocity); every DiT family overrides this."""
        raise NotImplementedError(f"{type(self).__name__} must implement predict()")
