"""CogVideoX: ``CogVideoXTransformer3DModel`` (joint text + video 3-D attention, v-prediction),
``AutoencoderKLCogVideoX``, T5 text encoder, ``CogVideoXDDIMScheduler`` (zero-terminal-SNR betas,
``snr_shift_scale``, trailing spacing): a DDPM-type model, so the window is t ≥ t* on its integer axis
and the probe uses DDIM inversion.

From a local diffusers folder (``CogVideoXPipeline.save_pretrained`` layout, e.g. ``THUDM/CogVideoX-2b``)
or tiny and random from config. The transformer takes latents frames-first (B, F, C, H, W); ``predict``
keeps the package's (B, C, F, H, W) outside.

Shape legend: B batch, C channels, F frames, H/W height/width, L prompt tokens, D text width.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from lit_video.components import tiny_clip_tokenizer
from lit_video.dit.base import DiTComponents
from lit_video.dit.config import TinyDiTConfig
from lit_video.errors import VideoInputError


class CogVideoXComponents(DiTComponents):
    """CogVideoX's parts; prompts are padded to the transformer's ``max_text_seq_length``."""

    def __init__(self, transformer: nn.Module, text_encoder: nn.Module, vae: nn.Module, tokenizer, scheduler) -> None:
        super().__init__(transformer, text_encoder, vae, tokenizer, scheduler, "cogvideox",
                         2 ** (len(vae.config.block_out_channels) - 1), int(vae.config.temporal_compression_ratio))

    def check_frames(self, num_frames: int) -> None:
        """8k + 1 frames: 4× temporal compression to an odd latent count, which the decoder (first frame kept,
        the rest doubled twice) maps back to the same frame count (49 frames ↔ 13 latents)."""
        if (num_frames - 1) % 8:
            raise VideoInputError(f"CogVideoX clips need 8k + 1 frames (9, 17, …, 49) so that decoding returns "
                                  f"the same count, got {num_frames}")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """T5 states (B, L, D), L = ``max_text_seq_length`` (``CogVideoXPipeline._get_t5_prompt_embeds``)."""
        length = int(self.unet.config.max_text_seq_length)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                                add_special_tokens=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tokens.input_ids.to(device))[0]

    @torch.no_grad()
    def encode_video(self, video_BCFHW: torch.Tensor) -> torch.Tensor:
        """Pixels in [-1, 1] (B, 3, F, H, W), F = 4k + 1 → scaled latents (B, c, k + 1, H/8, W/8) (posterior mean)."""
        self.check_frames(video_BCFHW.shape[2])
        return self.vae.encode(video_BCFHW.to(self.vae.dtype)).latent_dist.mode() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents_BCFHW: torch.Tensor) -> torch.Tensor:
        video = self.vae.decode(latents_BCFHW.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return video.clamp(-1, 1)

    def rotary_embedding(self, latents_BCFHW: torch.Tensor):
        """The 3-D RoPE of CogVideoX 5B / 1.5 (``use_rotary_positional_embeddings``), as the pipeline builds it."""
        if not self.unet.config.use_rotary_positional_embeddings:
            return None
        from diffusers import CogVideoXPipeline  # noqa: PLC0415 (diffusers, heavy and optional at import)

        _, _, frames, h, w = latents_BCFHW.shape
        shim = SimpleNamespace(vae_scale_factor_spatial=self.spatial_compression, transformer=self.unet)
        return CogVideoXPipeline._prepare_rotary_positional_embeddings(
            shim, h * self.spatial_compression, w * self.spatial_compression, frames, latents_BCFHW.device)

    def predict(self, latents_BCFHW: torch.Tensor, timesteps_B: torch.Tensor, text_BLD: torch.Tensor) -> torch.Tensor:
        """The transformer's v-prediction, (B, C, F, H, W) in and out."""
        dtype = next(self.unet.parameters()).dtype
        frames_first = latents_BCFHW.permute(0, 2, 1, 3, 4).to(dtype)
        output = self.unet(hidden_states=frames_first, encoder_hidden_states=text_BLD.to(dtype),
                           timestep=timesteps_B.long(), image_rotary_emb=self.rotary_embedding(latents_BCFHW),
                           return_dict=False)[0]
        return output.permute(0, 2, 1, 3, 4)


def cogvideox_scheduler(num_train_timesteps: int = 1000, snr_shift_scale: float = 3.0):
    """CogVideoX-2b's scheduler config (spec §DiT)."""
    from diffusers import CogVideoXDDIMScheduler  # noqa: PLC0415 (diffusers, heavy and optional at import)

    return CogVideoXDDIMScheduler(num_train_timesteps=num_train_timesteps, beta_start=0.00085, beta_end=0.012,
                                  beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=True,
                                  steps_offset=0, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                  timestep_spacing="trailing", snr_shift_scale=snr_shift_scale)


def build_tiny_cogvideox(config: TinyDiTConfig) -> CogVideoXComponents:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import T5Config, T5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    inner = config.num_attention_heads * config.attention_head_dim
    if inner % 16:
        raise VideoInputError(f"tiny CogVideoX needs heads × head width divisible by 16 (its 3-D sin-cos position "
                              f"embedding splits the width 3:1 and in halves), got {inner}: e.g. tiny_dit "
                              "num_attention_heads 4, attention_head_dim 8")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        tokenizer = tiny_clip_tokenizer(config.max_prompt_tokens)
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=config.num_attention_heads, attention_head_dim=config.attention_head_dim,
            in_channels=4, out_channels=4, time_embed_dim=2, text_embed_dim=config.text_width,
            num_layers=config.num_layers, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
            temporal_compression_ratio=4, max_text_seq_length=config.max_prompt_tokens)
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer), d_model=config.text_width, d_kv=max(4, config.text_width // 4),
            d_ff=2 * config.text_width, num_layers=config.text_layers, num_heads=4, relative_attention_num_buckets=8,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id))
        vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                     up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                     latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                     temporal_compression_ratio=4)
    return CogVideoXComponents(transformer, text_encoder, vae, tokenizer,
                               cogvideox_scheduler(config.num_train_timesteps))


def load_cogvideox(folder: Path) -> CogVideoXComponents:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel  # noqa: PLC0415 (diffusers, heavy and optional at import)
    from transformers import AutoTokenizer, T5EncoderModel  # noqa: PLC0415 (transformers, heavy)

    return CogVideoXComponents(
        CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer"),
        T5EncoderModel.from_pretrained(folder, subfolder="text_encoder"),
        AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae"),
        AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        CogVideoXDDIMScheduler.from_pretrained(folder, subfolder="scheduler"))
